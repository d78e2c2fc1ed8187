"""Reporting over the real broker and datastore: a made-up quarter published
as real events on each owning service's exchange, read back through the
gateway in every format; the projections rebuilt from scratch give the same
report; a second delivery of every event changes nothing; the business
gauges on reporting's /metrics."""
import csv
import io
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from kombu import Connection, Producer
from openpyxl import load_workbook

from services.reporting import rebuild, store
from services.reporting.service import ReportingService
from services.reporting.tests.worked_example import assert_matches_expected, build
from shared.events import CATALOGUE, new_event
from shared.messaging import declare_event_topology, event_exchange
from shared.storage import connect
from tests.support import ADMIN, assert_problem, metric_value, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVICES = ("referrals", "training", "matching", "journeys", "messaging")


class Publisher:
    """Publishes events as their owning services' relays do."""

    def __init__(self, amqp_uri):
        self.connection = Connection(amqp_uri, transport_options={"confirm_publish": True})
        for service in SERVICES:
            declare_event_topology(self.connection.default_channel, service)

    def publish(self, event):
        source = CATALOGUE[event["type"]].source_service
        Producer(self.connection.default_channel).publish(
            json.dumps(event), exchange=event_exchange(source), routing_key=event["type"],
            content_type="application/json", content_encoding="utf-8", delivery_mode=2)

    def close(self):
        self.connection.release()


@pytest.fixture
def publisher(rabbit_config):
    publisher = Publisher(rabbit_config["AMQP_URI"])
    yield publisher
    publisher.close()


@pytest.fixture
def reporting(start_service, start_gateway, publisher):
    """Reporting, the gateway, two sites with a coordinator each, and the
    worked example's quarter published for the first site."""
    container, config = start_service(ReportingService,
                                      REPORTING={"METRICS_MAX_AGE_SECONDS": 0})
    api, _ = start_gateway()
    admin = api.login(*ADMIN)
    sites, coordinators = {}, {}
    for code in ("essex", "derby"):
        answer = api.call("POST", "/api/v1/sites", admin, json={
            "name": code.title(), "code": code, "catchment": ["CM1"], "languages": ["en"]})
        assert answer.status_code == 201, answer.text
        sites[code] = answer.json()["id"]
        email = f"coord@{code}.test"
        answer = api.call("POST", "/api/v1/users", admin, json={
            "email": email, "name": f"{code} coordinator", "password": "a long enough pw",
            "role": "site_coordinator", "site_id": sites[code]})
        assert answer.status_code == 201, answer.text
        coordinators[code] = api.login(email, "a long enough pw")
    events, ids = build(sites["essex"])
    for event in events:
        publisher.publish(event)
    wait_until(lambda: handled(config) == len(events), timeout=30,
               what="every event to be archived and projected")
    return api, admin, sites, coordinators, config, events, ids


def handled(config):
    _, text = _metrics(config)
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("alongside_event_handling_duration_seconds_count"))


def _metrics(config):
    from tests.support import http_get
    return http_get(config, "/metrics")


def quarterly(api, token, **params):
    params.setdefault("quarter", "2026Q3")
    return api.call("GET", "/api/v1/reports/quarterly", token, params=params)


def test_the_quarter_through_the_gateway_in_every_format(reporting):
    api, _, sites, coordinators, *_ = reporting
    essex = coordinators["essex"]

    answer = quarterly(api, essex)
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["site_id"] == sites["essex"] and report["quarter"] == "2026Q3"
    assert_matches_expected(report)
    [wemwbs] = [o for o in report["outcomes"] if o["instrument"] == "wemwbs"]
    assert wemwbs["test"].startswith("paired t-test") and wemwbs["p_value"] is not None
    assert "Cohen" in wemwbs["effect_size"]["name"]

    answer = quarterly(api, essex, format="csv")
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    figures = {(r["section"], r["figure"]): r["value"] for r in rows}
    assert figures[("referrals by source", "midwife")] == "2"
    assert figures[("volunteers", "hours")] == "3.8"
    assert figures[("outcome: wemwbs total", "mean change")] == "5.5"
    by_accept = api.call("GET", "/api/v1/reports/quarterly", essex,
                         params={"quarter": "2026Q3"}, headers={"Accept": "text/csv"})
    assert by_accept.text == answer.text

    answer = quarterly(api, essex, format="xlsx")
    assert answer.status_code == 200
    assert "spreadsheetml" in answer.headers["Content-Type"]
    book = load_workbook(io.BytesIO(answer.content))
    sheet = book["Report"]
    cells = {(row[0], row[1]): row[2] for row in sheet.iter_rows(min_row=3, values_only=True)}
    assert cells[("referrals", "received")] == 5
    assert cells[("time to first contact (days)", "median")] == 14
    assert cells[("volunteer retention", "rate")] == pytest.approx(0.667)
    assert cells[("outcome: wemwbs total", "share improved")] == 0.5
    assert "Definitions" in book.sheetnames

    answer = quarterly(api, essex, format="html")
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/html")
    assert answer.text.count("<svg") >= 4 and "<script" not in answer.text
    assert "Referrals by source" in answer.text


def test_who_may_read_which_report(reporting):
    api, admin, sites, coordinators, *_ = reporting
    derby = coordinators["derby"]
    assert_problem(quarterly(api, derby, site=sites["essex"]), 404)
    assert quarterly(api, derby).json()["referrals"]["received"] == 0
    problem = assert_problem(quarterly(api, derby, quarter="2026Q5"), 422)
    assert "quarter" in str(problem)
    assert_problem(quarterly(api, derby, format="pdf"), 422)
    assert_problem(quarterly(api, admin), 422)                      # which site?
    assert_problem(quarterly(api, admin, site="no-such-site"), 404)
    assert_problem(quarterly(api, None), 401)

    # A national admin sees a site's quarter with small numbers suppressed.
    seen = quarterly(api, admin, site=sites["essex"]).json()
    assert seen["referrals"]["received"] == 5
    assert seen["referrals"]["by_source"]["midwife"] is None
    assert seen["suppressed"]["referrals_by_source.midwife"] == "<5"
    assert seen["referrals"]["accepted"] is None and "suppression" in seen

    # The national view: admins only, every site a row, small counts hidden.
    assert_problem(api.call("GET", "/api/v1/reports/national",
                            coordinators["essex"], params={"quarter": "2026Q3"}), 403)
    national = api.call("GET", "/api/v1/reports/national", admin,
                        params={"quarter": "2026Q3"})
    assert national.status_code == 200, national.text
    body = national.json()
    by_source = body["tables"]["referrals_by_source"]
    assert set(by_source["rows"]) == set(sites.values())
    assert by_source["grand_total"] == 5
    # Derby's 0 is hidden; left alone it would follow from 5 - essex's 5, so
    # essex's total is hidden with it, under the same flag.
    assert by_source["row_totals"] == {sites["essex"]: None, sites["derby"]: None}
    assert by_source["flags"][sites["essex"]]["total"] == "<5"
    assert all(value is None for value in by_source["rows"][sites["essex"]].values())
    assert body["tables"]["pathway"]["totals"]["accepted"] is None
    as_csv = api.call("GET", "/api/v1/reports/national", admin,
                      params={"quarter": "2026Q3", "format": "csv"})
    assert as_csv.status_code == 200 and "pathway" in as_csv.text
    assert_problem(api.call("GET", "/api/v1/reports/national", admin,
                            params={"quarter": "2026"}), 422)


def test_rebuilt_from_scratch_and_delivered_twice_the_report_is_the_same(
        reporting, publisher, mongo_uri):
    api, _, sites, coordinators, config, events, _ = reporting
    essex = coordinators["essex"]
    before = quarterly(api, essex).json()
    client = connect(mongo_uri)
    try:
        database = client[config["MONGODB_DATABASE"]]
        snapshot = {name: sorted(database[name].find(), key=lambda d: d["_id"])
                    for name in store.PROJECTIONS}
        for name in store.PROJECTIONS:
            database[name].delete_many({})
        assert quarterly(api, essex).json()["referrals"]["received"] == 0
        result = rebuild.rebuild(database)
        assert result["events"] == len(events) and result["events_per_second"] > 0
        assert quarterly(api, essex).json() == before
        for name in store.PROJECTIONS:
            database[name].delete_many({})
        command = subprocess.run(
            [sys.executable, "-m", "services.reporting.rebuild"], capture_output=True,
            text=True, timeout=60, cwd=ROOT, env=dict(
                os.environ, MONGODB_URI=mongo_uri,
                REPORTING_DATABASE=config["MONGODB_DATABASE"]))
        assert command.returncode == 0, command.stderr[-2000:]
        assert f"from {len(events)} archived events" in command.stdout
        assert "events/s" in command.stdout
        assert quarterly(api, essex).json() == before
        assert {name: sorted(database[name].find(), key=lambda d: d["_id"])
                for name in store.PROJECTIONS} == snapshot

        for event in events:             # every event delivered a second time
            publisher.publish(event)
        wait_until(lambda: handled(config) == 2 * len(events), timeout=30,
                   what="the second deliveries to be handled")
        assert quarterly(api, essex).json() == before
        assert database[store.EVENT_ARCHIVE].count_documents({}) == len(events)
    finally:
        client.close()


def test_business_gauges_per_site(reporting, publisher):
    api, _, sites, _, config, events, ids = reporting
    essex = sites["essex"]
    now = datetime.now(timezone.utc)
    publisher.publish(new_event("message.failed", {
        "message_id": "m-1", "kind": "referral_received", "channel": "sms",
        "recipient_kind": "parent", "error_code": "temporary-failure", "attempts": 5,
        "failed_at": (now - timedelta(hours=1)).isoformat()}, site_id=essex, now=now))
    publisher.publish(new_event("match.confirmed", {
        "match_id": "m-now", "referral_id": ids["r5"], "volunteer_id": ids["v1"],
        "score": 0.7, "confirmed_at": now.isoformat()}, site_id=essex, now=now))
    wait_until(lambda: handled(config) == len(events) + 2, what="the two events")

    def gauge(name):
        return metric_value(config, name, site=essex)
    assert gauge("alongside_referrals_awaiting_triage") == 1                # R6
    assert gauge("alongside_referrals_awaiting_triage_oldest_seconds") > 40 * 86400
    assert gauge("alongside_safeguarding_concerns_unacknowledged") == 1     # on R6
    assert gauge("alongside_safeguarding_concern_oldest_unacknowledged_seconds") > 0
    assert gauge("alongside_parents_waiting_for_match") == 0     # R5 matched just now
    assert gauge("alongside_matches_confirmed_this_week") == 1
    assert gauge("alongside_contacts_logged_this_week") == 0
    assert gauge("alongside_messages_failed_last_24h") == 1

    publisher.publish(new_event("safeguarding.concern_acknowledged", {
        "concern_id": ids["s2"], "referral_id": ids["r6"], "severity": "high",
        "acknowledged_at": now.isoformat()}, site_id=essex, now=now))
    wait_until(lambda: gauge("alongside_safeguarding_concerns_unacknowledged") == 0,
               what="the acknowledgement to clear the concern")
    assert gauge("alongside_safeguarding_concern_oldest_unacknowledged_seconds") == 0

    publisher.publish(new_event("match.ended", {
        "match_id": "m-now", "referral_id": ids["r5"], "volunteer_id": ids["v1"],
        "reason": "volunteer_unavailable", "rematch": True,
        "ended_at": now.isoformat()}, site_id=essex, now=now))
    wait_until(lambda: gauge("alongside_parents_waiting_for_match") == 1,
               what="the rematch to put the parent back on the list")
