"""Grafana dashboards as code (infra/grafana/dashboards/*.json, provisioned
by infra/grafana/provisioning/): well formed, on the provisioned
datasource, the two the operations brief asks for, and every panel on a
metric the services export (here: declared in their code, or promised by the
contract; tests/ops/test_live_metrics.py checks the live /metrics) in valid
PromQL (promtool parses each expression as a rule)."""
import json
import re
import shutil
import subprocess

import pytest
import yaml

from tests.ops.catalogue import (CONTRACT, PROMETHEUS_SERIES, ROOT,
                                 dashboard_expressions, declared_metric_names,
                                 exported, metric_names)

DASHBOARDS = ROOT / "infra/grafana/dashboards"


def dashboards():
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def datasource_uid():
    provisioning = yaml.safe_load(
        (ROOT / "infra/grafana/provisioning/datasources/prometheus.yml").read_text())
    (datasource,) = provisioning["datasources"]
    assert datasource["type"] == "prometheus"
    return datasource["uid"]


def test_dashboards_are_well_formed_and_on_the_provisioned_datasource():
    uid = datasource_uid()
    found = dashboards()
    assert len(found) >= 2
    uids = [d["uid"] for d in found.values()]
    assert len(uids) == len(set(uids))
    for name, dashboard in found.items():
        assert dashboard["title"] and dashboard["panels"], name
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: panel ids repeat"
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] == uid, f"{name}: {panel['title']}"
            grid = panel["gridPos"]
            assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24
            assert panel["targets"], f"{name}: {panel['title']} has no query"
            ref_ids = [t["refId"] for t in panel["targets"]]
            assert len(ref_ids) == len(set(ref_ids))
        variables = {v["name"] for v in dashboard["templating"]["list"]}
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                for used in re.findall(r"\$(\w+)", target["expr"]):
                    assert used in variables, f"{name}: ${used} is not defined"


def panel_metrics(name):
    metrics = set()
    for panel in dashboards()[name]["panels"]:
        for target in panel["targets"]:
            metrics |= metric_names(target["expr"])
    return metrics


def test_the_ops_dashboard_shows_throughput_latency_errors_dead_letters_backlog():
    metrics = panel_metrics("ops.json")
    for needed in ("alongside_events_published_total",
                   "alongside_event_handling_duration_seconds_count",
                   "alongside_rpc_duration_seconds_bucket",
                   "alongside_http_request_duration_seconds_bucket",
                   "alongside_event_handling_failures_total",
                   "alongside_dead_letters", "alongside_outbox_backlog"):
        assert needed in metrics, f"ops dashboard: nothing on {needed}"


def test_the_programme_dashboard_shows_referrals_triage_matches_contacts_safeguarding():
    metrics = panel_metrics("programme.json")
    for needed in ("alongside_referrals_awaiting_triage",
                   "alongside_referrals_over_triage_target",
                   "alongside_parents_waiting_for_match",
                   "alongside_matches_confirmed_this_week",
                   "alongside_contacts_logged_this_week",
                   "alongside_safeguarding_concerns_unacknowledged",
                   "alongside_safeguarding_concern_oldest_unacknowledged_seconds"):
        assert needed in metrics, f"programme dashboard: nothing on {needed}"


def test_every_panel_reads_metrics_the_services_export():
    known = declared_metric_names() | CONTRACT
    for dashboard, title, expression in dashboard_expressions():
        names = metric_names(expression)
        assert names, f"{dashboard}: {title}: no metric in {expression}"
        for name in names - PROMETHEUS_SERIES:
            assert exported(name, known), \
                f"{dashboard}: {title} reads {name}, which no service exports"


def test_metric_names_finds_what_a_query_reads():
    """The parser the checks above rely on."""
    assert metric_names('sum by (service, le) (rate(a_bucket{x="b{c}"}[5m]))') == {"a_bucket"}
    assert metric_names("max(a) / 3600 and on (site) b offset 1h") == {"a", "b"}
    assert metric_names('histogram_quantile(0.95, c{d=~"$site"})') == {"c"}


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool is not installed: run `sh infra/tools/install.sh`")
def test_every_panel_query_is_valid_promql(tmp_path):
    rules = []
    for index, (dashboard, title, expression) in enumerate(dashboard_expressions()):
        # Grafana replaces the variables before Prometheus sees the query.
        expression = re.sub(r"\$\w+", ".*", expression)
        rules.append({"record": f"panel:check_{index}", "expr": expression})
    (tmp_path / "panels.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = subprocess.run(["promtool", "check", "rules", str(tmp_path / "panels.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
