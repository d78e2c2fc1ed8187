"""Prometheus config and alert rules, checked by promtool (Debian's
`prometheus` package; `sh infra/tools/install.sh` installs it).

Fast: promtool checks the config and the rules and runs the rule unit tests
in infra/prometheus/tests/ (each alert: when it fires, with what labels and
text, and when it must not). The alerts the operations brief asks for exist,
read metrics the services export, and each names its section of
infra/RUNBOOK.md.
"""
import re
import shutil
import subprocess

import pytest
import yaml

from tests.ops.catalogue import (CONTRACT, PROMETHEUS_SERIES, ROOT,
                                 declared_metric_names, exported,
                                 metric_names, rule_expressions)

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed: run `sh infra/tools/install.sh` (Debian's"
           " prometheus package) to check the config and rules")

RULES = ROOT / "infra/prometheus/rules/alongside.yml"
RULE_TESTS = ROOT / "infra/prometheus/tests/alongside.test.yml"

# What the operations brief asks alerts for, and a piece of each expression.
REQUIRED_ALERTS = {
    "AlongsideServiceDown": 'up{tier="alongside"} == 0',
    "AlongsideServiceMissing": "absent(up{",
    "AlongsideDeadLetters": "alongside_dead_letters",
    "AlongsideOutboxBacklogGrowing": "deriv(alongside_outbox_backlog",
    "AlongsideReferralsOverTriageTarget": "alongside_referrals_over_triage_target) > 0",
    "AlongsideSafeguardingConcernUnacknowledged":
        "alongside_safeguarding_concern_oldest_unacknowledged_seconds) > 3600",
    "AlongsideMessagesFailing": "increase(alongside_messages_failed_total[15m])) > 0",
}


def promtool(*args):
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


@needs_promtool
def test_promtool_accepts_the_config():
    result = promtool("check", "config", "infra/prometheus/prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


@needs_promtool
def test_promtool_accepts_the_rules():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_alert_rule_unit_tests_pass():
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_a_wrong_expectation_fails_the_rule_tests(tmp_path):
    """promtool's rule tests can fail: a changed threshold in the rules is
    caught by the test file."""
    rules = RULES.read_text().replace(
        "alongside_safeguarding_concern_oldest_unacknowledged_seconds) > 3600",
        "alongside_safeguarding_concern_oldest_unacknowledged_seconds) > 7200")
    (tmp_path / "rules.yml").write_text(rules)
    tests = RULE_TESTS.read_text().replace("../rules/alongside.yml",
                                           str(tmp_path / "rules.yml"))
    (tmp_path / "tests.yml").write_text(tests)
    result = promtool("test", "rules", str(tmp_path / "tests.yml"))
    assert result.returncode != 0
    assert "AlongsideSafeguardingConcernUnacknowledged" in result.stdout + result.stderr


def alerts():
    found = {}
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            found.setdefault(rule["alert"], []).append(rule)
    return found


def test_the_required_alerts_exist():
    defined = alerts()
    for name, piece in REQUIRED_ALERTS.items():
        assert name in defined, f"no alert {name}"
        assert any(piece in " ".join(r["expr"].split()) for r in defined[name]), \
            f"{name} does not read {piece}"


def test_every_service_has_a_missing_alert():
    services = sorted(p.parent.name for p in ROOT.glob("services/*/config.yaml"))
    covered = {r["labels"]["service"] for r in alerts()["AlongsideServiceMissing"]}
    assert covered == set(services)
    config = yaml.safe_load((ROOT / "infra/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for service in services:
        relabel = jobs[service].get("relabel_configs") or []
        assert {"target_label": "tier", "replacement": "alongside"} in relabel, \
            f"job {service} lacks tier=alongside, which the rules select on"


def test_every_alert_is_tested_by_promtool_cases():
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert set(alerts()) <= tested


def runbook_anchors():
    """GitHub's anchors of the RUNBOOK's headings."""
    anchors = set()
    for line in (ROOT / "infra/RUNBOOK.md").read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^a-z0-9 _-]", "", title).replace(" ", "-"))
    return anchors


def test_every_alert_has_severity_text_and_a_runbook_section():
    anchors = runbook_anchors()
    for name, rules in alerts().items():
        for rule in rules:
            assert rule["labels"]["severity"] in ("critical", "warning", "info")
            annotations = rule["annotations"]
            assert annotations["summary"] and annotations["description"]
            path, _, anchor = annotations["runbook"].partition("#")
            assert path == "infra/RUNBOOK.md"
            assert anchor == name.lower() and anchor in anchors, \
                f"{name}: infra/RUNBOOK.md has no section {name}"


def test_rules_read_only_metrics_the_services_export():
    known = declared_metric_names() | CONTRACT
    for group, alert, expression in rule_expressions():
        for name in metric_names(expression) - PROMETHEUS_SERIES:
            assert exported(name, known), f"{alert} reads {name}, which nothing exports"
