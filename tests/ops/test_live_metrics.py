"""Against running services (integration: the real broker and secantusdb).

- Every service, started in-process as the integration tests start them,
  serves /metrics with every metric the dashboards and alert rules read.
- A real Prometheus (Debian's binary, started here on a free port with a
  generated config) scrapes running services: `up` is 1 for each, their
  series are queryable, and the repository's alert rules load and evaluate
  against the real series (a service not started is reported missing).
"""
import importlib
import shutil
import signal
import socket
import subprocess

import pytest
import requests
import yaml

from services.matching.service import MatchingService
from services.referrals.service import ReferralsService
from tests.ops.catalogue import (PROMETHEUS_SERIES, ROOT, dashboard_expressions,
                                 exported, metric_names, rule_expressions)
from tests.support import (encryption_settings, gateway_settings, http_get,
                           wait_until)

pytestmark = pytest.mark.integration

SERVICES = sorted(p.parent.name for p in ROOT.glob("services/*/config.yaml"))


def service_class(name):
    module = importlib.import_module(f"services.{name}.service")
    for value in vars(module).values():
        if isinstance(value, type) and getattr(value, "name", None) == name \
                and value.__module__ == module.__name__:
            return value
    raise AssertionError(f"services/{name}/service.py has no class named {name!r}")


def start(start_service, name):
    overrides = {"ENCRYPTION": encryption_settings()}
    if name == "gateway":
        overrides["GATEWAY"] = gateway_settings()
    return start_service(service_class(name), **overrides)


def live_names(text):
    """Family names (# TYPE lines) and sample names of a /metrics page."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(line.split("{")[0].split(" ")[0])
    return names


def test_every_metric_the_dashboards_and_alerts_read_is_served(start_service):
    live = set()
    for name in SERVICES:
        _, config = start(start_service, name)
        status, text = wait_until(
            lambda: (lambda answer: answer if answer[0] == 200 else None)(
                http_get(config, "/metrics")),
            timeout=30, what=f"{name} /metrics")
        names = live_names(text)
        # Every service: the shared metrics, labelled with its name.
        assert f'alongside_dead_letters{{service="{name}"}}' in text, name
        live |= names
    read = {(where, name) for where, _, expr in dashboard_expressions()
            for name in metric_names(expr)}
    read |= {(alert, name) for _, alert, expr in rule_expressions()
             for name in metric_names(expr)}
    missing = sorted(f"{where}: {name}" for where, name in read
                     if name not in PROMETHEUS_SERIES and not exported(name, live))
    assert not missing, "read but served by no service:\n" + "\n".join(missing)


# --- a real Prometheus ------------------------------------------------------

def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent():
    import ctypes
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass


@pytest.fixture
def prometheus(tmp_path):
    """start(targets) -> the base URL of a Prometheus scraping
    {job: "host:port"} every second, with the repository's alert rules."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed: run `sh infra/tools/install.sh`"
                    " (Debian's prometheus package)")
    processes = []

    def start(targets):
        port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ROOT / "infra/prometheus/rules/*.yml")],
            "scrape_configs": [
                {"job_name": job, "metrics_path": "/metrics",
                 "static_configs": [{"targets": [address]}],
                 "relabel_configs": [{"target_label": "tier",
                                      "replacement": "alongside"}]}
                for job, address in targets.items()],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        log = open(tmp_path / "prometheus.log", "wb")
        process = subprocess.Popen(
            [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        processes.append(process)
        base = f"http://127.0.0.1:{port}"

        def ready():
            assert process.poll() is None, (tmp_path / "prometheus.log").read_text()
            try:
                return requests.get(f"{base}/-/ready", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False
        wait_until(ready, timeout=30, interval=0.2, what="Prometheus ready")
        return base

    yield start
    for process in processes:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def query(base, expression):
    answer = requests.get(f"{base}/api/v1/query", params={"query": expression},
                          timeout=5).json()
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def test_a_real_prometheus_scrapes_the_running_services(start_service, prometheus):
    _, referrals = start_service(ReferralsService, ENCRYPTION=encryption_settings())
    _, matching = start_service(MatchingService)
    base = prometheus({"referrals": referrals["WEB_SERVER_ADDRESS"],
                       "matching": matching["WEB_SERVER_ADDRESS"]})

    def both_up():
        values = {r["metric"]["job"]: r["value"][1]
                  for r in query(base, 'up{tier="alongside"}')}
        return values if values == {"referrals": "1", "matching": "1"} else None
    wait_until(both_up, timeout=30, interval=0.5, what="up == 1 for both services")

    # Their own series, as the dashboards read them.
    backlog = query(base, "max by (service) (alongside_outbox_backlog)")
    assert {r["metric"]["service"] for r in backlog} == {"referrals", "matching"}
    targets = requests.get(f"{base}/api/v1/targets", timeout=5).json()["data"]
    assert {t["health"] for t in targets["activeTargets"]} == {"up"}

    # The repository's rules load and evaluate against the real series: a
    # service that is not running is missing (pending: `for: 5m`), the two
    # that are running are not.
    def missing_alerts():
        alerts = requests.get(f"{base}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
        names = {a["labels"].get("service") for a in alerts
                 if a["labels"]["alertname"] == "AlongsideServiceMissing"}
        # (An evaluation before the first scrape may have found them all
        # missing: wait for one after it.)
        running = {"referrals", "matching"}
        return names if "gateway" in names and not running & names else None
    missing = wait_until(missing_alerts, timeout=20, interval=0.5,
                         what="AlongsideServiceMissing for the services not started"
                              " only")
    assert missing == set(SERVICES) - {"referrals", "matching"}
    groups = requests.get(f"{base}/api/v1/rules", timeout=5).json()["data"]["groups"]
    assert groups
    for group in groups:
        for rule in group["rules"]:
            assert rule["health"] in ("ok", "unknown"), rule


def test_prometheus_reports_a_stopped_service_down(start_service, prometheus):
    container, referrals = start_service(ReferralsService, ENCRYPTION=encryption_settings())
    base = prometheus({"referrals": referrals["WEB_SERVER_ADDRESS"]})
    wait_until(lambda: [r for r in query(base, 'up{job="referrals"} == 1')],
               timeout=30, interval=0.5, what="referrals up")
    container.stop()
    wait_until(lambda: [r for r in query(base, 'up{job="referrals"} == 0')],
               timeout=30, interval=0.5, what="referrals down once stopped")
