from datetime import datetime, timezone

from services.reporting import domain
from shared.events import load_event, new_event

NOW = datetime(2026, 11, 2, 10, 0, tzinfo=timezone.utc)


def received(source="gp"):
    return load_event(new_event("referral.received", {
        "referral_id": "r1", "source": source, "preferred_language": "en",
        "area": "DE22", "received_at": NOW.isoformat()},
        site_id="derby", subject="r1", now=NOW, correlation_id="c1"))


def test_archive_record_keeps_the_event_whole_under_its_id():
    envelope, data = received()
    record = domain.archive_record(envelope, data, archived_at=NOW)
    assert record["_id"] == envelope["id"]
    assert record["site_id"] == "derby" and record["type"] == "referral.received"
    assert record["data"] == envelope["data"] and record["correlationid"] == "c1"

