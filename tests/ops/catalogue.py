"""The metric names Alongside exports, and the names a PromQL expression reads.

Used by the dashboard and alert tests: every metric a panel or a rule reads
must be one the services export. Three sources:

- ``declared_metric_names()``: the ``alongside_*`` names the code declares
  (shared/ and services/, tests left out), read from the source: fast, for
  ``make test``.
- the live scrape of every service started in-process
  (tests/ops/test_live_metrics.py, integration).
- ``CONTRACT``: the business metrics the brief's contract promises from
  reporting and messaging, which other work is adding. Marked so that they
  can be told apart: once the services export them the live test sees them
  and this list can shrink to nothing.
"""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Contract (issue 5): reporting's gauges (label site) and messaging's counters.
CONTRACT = frozenset({
    "alongside_referrals_awaiting_triage",
    "alongside_referrals_awaiting_triage_oldest_seconds",
    "alongside_referrals_over_triage_target",
    "alongside_safeguarding_concerns_unacknowledged",
    "alongside_safeguarding_concern_oldest_unacknowledged_seconds",
    "alongside_parents_waiting_for_match",
    "alongside_matches_confirmed_this_week",
    "alongside_contacts_logged_this_week",
    "alongside_messages_failed_last_24h",
    "alongside_messages_sent_total",
    "alongside_messages_failed_total",
    "alongside_webhook_deliveries_total",
})

# Series Prometheus makes itself for every target.
PROMETHEUS_SERIES = frozenset({"up", "scrape_duration_seconds",
                               "scrape_samples_scraped"})

SAMPLE_SUFFIXES = ("", "_total", "_created", "_bucket", "_count", "_sum")

KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "by", "without",
                      "on", "ignoring", "group_left", "group_right", "inf",
                      "nan", "atan2"})


def metric_names(expression):
    """The metric names a PromQL expression selects (no functions,
    keywords, labels, strings or durations)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"' + r"|'(?:[^'\\]|\\.)*'", '""', expression)
    text = re.sub(r"\{[^}]*\}", " ", text)          # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)         # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)",
                  " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        name, call = match.groups()
        if call or name in KEYWORDS:
            continue
        names.add(name)
    return names


def declared_metric_names():
    """``alongside_*`` names in the code's source (not its tests)."""
    names = set()
    for folder in ("shared", "services"):
        for path in (ROOT / folder).rglob("*.py"):
            if "tests" in path.relative_to(ROOT).parts:
                continue
            names |= set(re.findall(r"[\"'](alongside_[a-z0-9_]+)[\"']",
                                    path.read_text()))
    return names


def exported(name, families):
    """Whether a sample name belongs to one of the metric families
    (histograms: _bucket/_count/_sum; counters: _total/_created)."""
    return any(name == family + suffix or name + "_total" == family
               for family in families for suffix in SAMPLE_SUFFIXES)


def dashboard_expressions():
    """(dashboard file, panel title, expr) of every panel target."""
    import json
    found = []
    for path in sorted((ROOT / "infra/grafana/dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets") or []:
                found.append((path.name, panel["title"], target["expr"]))
    return found


def rule_expressions():
    """(group, alert, expr) of every alert rule."""
    import yaml
    found = []
    for path in sorted((ROOT / "infra/prometheus/rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                found.append((group["name"], rule.get("alert") or rule.get("record"),
                              rule["expr"]))
    return found
