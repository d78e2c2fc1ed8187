"""The site-scoped repository, against the real MongoDB wire server."""
from datetime import datetime, timezone

import pytest

from shared.errors import MissingSiteScope
from shared.events import new_event
from shared.outbox import OUTBOX_FIELD
from shared.storage import SiteScopedRepository

NOW = datetime(2026, 11, 2, tzinfo=timezone.utc)


class Things(SiteScopedRepository):
    collection_name = "things"


def event_for(site):
    return new_event("referral.received", {
        "referral_id": "r1", "source": "gp", "preferred_language": "en",
        "area": "M1", "received_at": NOW.isoformat()}, site_id=site, now=NOW)


@pytest.mark.parametrize("site", [None, "", "  ", 42])
def test_refuses_to_open_without_a_site(database, site):
    with pytest.raises(MissingSiteScope):
        Things(database, site)


def test_a_site_cannot_read_another_sites_records(database):
    essex, derby = Things(database, "essex"), Things(database, "derby")
    essex.insert({"_id": "t1", "name": "one"})
    derby.insert({"_id": "t2", "name": "two"})
    assert essex.find_one({"_id": "t2"}) is None
    assert [t["_id"] for t in essex.find()] == ["t1"]
    assert derby.count() == 1 and essex.count({"name": "two"}) == 0
    assert essex.update({"_id": "t2"}, {"$set": {"name": "hijacked"}}) is None
    assert derby.find_one({"_id": "t2"})["name"] == "two"


def test_a_query_or_write_naming_another_site_is_refused(database):
    essex = Things(database, "essex")
    with pytest.raises(MissingSiteScope):
        essex.find({"site_id": "derby"})
    with pytest.raises(MissingSiteScope):
        essex.insert({"_id": "t3", "site_id": "derby"})
    essex.insert({"_id": "t4"})
    with pytest.raises(MissingSiteScope):
        essex.update({"_id": "t4"}, {"$set": {"site_id": "derby"}})
    with pytest.raises(MissingSiteScope):
        essex.insert({"_id": "t5"}, events=[event_for("derby")])
    assert database.things.count_documents({"site_id": "derby"}) == 0


def test_record_and_its_events_are_one_write_and_events_stay_hidden(database):
    essex = Things(database, "essex")
    stored = essex.insert({"_id": "t6"}, events=[event_for("essex")])
    assert OUTBOX_FIELD not in stored
    assert OUTBOX_FIELD not in essex.find_one({"_id": "t6"})
    raw = database.things.find_one({"_id": "t6"})
    assert [entry["event"]["type"] for entry in raw[OUTBOX_FIELD]] == ["referral.received"]
    after = essex.update({"_id": "t6"}, {"$set": {"x": 1}}, events=[event_for("essex")])
    assert after["x"] == 1
    assert len(database.things.find_one({"_id": "t6"})[OUTBOX_FIELD]) == 2
