"""The MongoDB features Alongside relies on, and nothing more.

Production runs MongoDB; this machine runs secantusdb, a MongoDB
wire-protocol server. Both must serve every operation below: code that
needs another feature adds it here first, so the two never drift apart.
"""
import pytest
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError


def test_single_document_atomic_outbox_operations(database):
    things = database.things
    things.create_index("_outbox.id", sparse=True)
    things.insert_one({"_id": "a", "site_id": "s", "_outbox": [
        {"id": "e1", "attempts": 0}, {"id": "e2", "attempts": 0}]})
    things.insert_one({"_id": "b", "site_id": "s"})
    assert [d["_id"] for d in things.find({"_outbox.id": {"$exists": True}})] == ["a"]
    things.update_one({"_id": "a", "_outbox.id": "e1"},
                      {"$inc": {"_outbox.$.attempts": 1},
                       "$set": {"_outbox.$.last_error": "down"}})
    assert things.find_one({"_id": "a"})["_outbox"][0] == {
        "id": "e1", "attempts": 1, "last_error": "down"}
    things.update_one({"_id": "a"}, {"$pull": {"_outbox": {"id": "e1"}}})
    assert [e["id"] for e in things.find_one({"_id": "a"})["_outbox"]] == ["e2"]
    backlog = list(things.aggregate([
        {"$match": {"_outbox.id": {"$exists": True}}},
        {"$project": {"n": {"$size": "$_outbox"}}},
        {"$group": {"_id": None, "n": {"$sum": "$n"}}}]))
    assert backlog[0]["n"] == 1
    things.update_one({"_id": "b"}, {"$push": {"_outbox": {"$each": [{"id": "e3"}]}}})
    assert things.count_documents({"_outbox.id": {"$exists": True}}) == 2


def test_unique_indexes_upserts_and_find_one_and_update(database):
    counts = database.counts
    counts.create_index([("site_id", 1), ("source", 1)], unique=True)
    for _ in range(2):
        counts.find_one_and_update({"site_id": "s", "source": "gp"},
                                   {"$inc": {"count": 1}}, upsert=True,
                                   return_document=ReturnDocument.AFTER)
    assert counts.find_one({"source": "gp"}, {"_id": 0}) == {
        "site_id": "s", "source": "gp", "count": 2}
    with pytest.raises(DuplicateKeyError):
        counts.insert_one({"site_id": "s", "source": "gp"})


def test_transactions_commit_together_or_not_at_all(database):
    client = database.client
    hello = client.admin.command("hello")
    assert hello.get("setName"), "the inbox relies on a replica set's transactions"
    database.inbox.insert_one({"_id": "seed"})

    def apply(session):
        database.inbox.insert_one({"_id": "h:e1"}, session=session)
        database.counts.update_one({"_id": "s"}, {"$inc": {"n": 1}},
                                   upsert=True, session=session)

    with client.start_session() as session:
        session.with_transaction(apply)
    with pytest.raises(DuplicateKeyError):
        with client.start_session() as session:
            session.with_transaction(apply)
    assert database.counts.find_one({"_id": "s"})["n"] == 1


def test_sorted_limited_scoped_reads(database):
    database.events.insert_many([{"_id": i, "site_id": "s", "time": i} for i in range(5)])
    assert [d["_id"] for d in database.events.find({"site_id": "s"}).sort(
        [("time", -1)]).limit(2)] == [4, 3]
    assert database.events.count_documents({"site_id": "s", "time": {"$gte": 3}}) == 2


def test_group_counts_by_a_nested_field(database):
    database.archive.insert_many([
        {"site_id": "s", "type": "referral.received", "data": {"source": src}}
        for src in ("gp", "gp", "midwife")] + [
        {"site_id": "t", "type": "referral.received", "data": {"source": "gp"}}])
    rows = database.archive.aggregate([
        {"$match": {"site_id": "s", "type": "referral.received"}},
        {"$group": {"_id": "$data.source", "count": {"$sum": 1}}}])
    assert {r["_id"]: r["count"] for r in rows} == {"gp": 2, "midwife": 1}


def test_conflicting_transactions_all_commit_after_backing_off(database):
    """Handlers writing one document at once: every one lands, once."""
    import eventlet
    from shared.inbox import run_in_transaction
    database.counters.insert_one({"_id": "hot", "n": 0})

    def bump(session):
        database.counters.update_one({"_id": "hot"}, {"$inc": {"n": 1}},
                                     session=session)
        eventlet.sleep(0.001)   # widen the window for a conflict

    pool = eventlet.GreenPool(8)
    for _ in range(40):
        pool.spawn(run_in_transaction, database.client, bump)
    pool.waitall()
    assert database.counters.find_one({"_id": "hot"})["n"] == 40


def test_conditional_increment_and_one_open_record_per_key(database):
    """Matching: a place is taken only while ``active < capacity`` (one
    atomic update), and a partial unique index allows one open match per
    referral while closed ones pile up."""
    profiles = database.profiles
    profiles.insert_one({"_id": "v", "site_id": "s", "active": 0, "capacity": 2})
    taken = [profiles.find_one_and_update(
        {"_id": "v", "site_id": "s", "$expr": {"$lt": ["$active", "$capacity"]}},
        {"$inc": {"active": 1}}, return_document=ReturnDocument.AFTER) for _ in range(3)]
    assert [t and t["active"] for t in taken] == [1, 2, None]
    matches = database.matches
    matches.create_index([("site_id", 1), ("referral_id", 1)], unique=True,
                         partialFilterExpression={"status": "open"})
    matches.insert_one({"site_id": "s", "referral_id": "r", "status": "open"})
    with pytest.raises(DuplicateKeyError):
        matches.insert_one({"site_id": "s", "referral_id": "r", "status": "open"})
    matches.update_one({"referral_id": "r"}, {"$set": {"status": "declined"}})
    matches.insert_one({"site_id": "s", "referral_id": "r", "status": "declined"})
    matches.insert_one({"site_id": "s", "referral_id": "r", "status": "open"})
    assert matches.count_documents({"referral_id": "r"}) == 3


def test_unique_index_only_over_present_string_keys(database):
    """Referrals: a parent's lookup keys (HMACs) are unique per site where
    they are given; parents without a phone (key None) or from before the
    key existed (field absent) do not collide."""
    parents = database.parents_keys
    parents.create_index([("site_id", 1), ("lookup.phone", 1)])
    info = parents.index_information()
    assert not info["site_id_1_lookup.phone_1"].get("unique")
    parents.drop_index("site_id_1_lookup.phone_1")   # made unique below
    parents.create_index([("site_id", 1), ("lookup.phone", 1)], unique=True,
                         partialFilterExpression={"lookup.phone": {"$type": "string"}})
    parents.insert_one({"site_id": "s", "lookup": {"phone": "k1"}})
    with pytest.raises(DuplicateKeyError):
        parents.insert_one({"site_id": "s", "lookup": {"phone": "k1"}})
    parents.insert_one({"site_id": "t", "lookup": {"phone": "k1"}})
    for _ in range(2):
        parents.insert_one({"site_id": "s", "lookup": {"phone": None}})
        parents.insert_one({"site_id": "s", "lookup": {}})
    assert parents.count_documents({"site_id": "s"}) == 5
    assert parents.index_information()["site_id_1_lookup.phone_1"]["unique"]


def test_projection_documents_set_nested_paths_by_id(database):
    """Reporting: projections change only by $set at dotted paths keyed by
    ids (creating the parents), upserted; the rebuild deletes and inserts in
    batches that may meet a document a live handler wrote meanwhile."""
    from pymongo.errors import BulkWriteError
    facts = database.facts
    facts.create_index("live")
    for _ in range(2):
        facts.find_one_and_update(
            {"_id": "r1", "site_id": "s"},
            {"$set": {"contacts.c-1": {"mode": "phone", "minutes": 30},
                      "matches.m-1.confirmed_at": "2026-07-01"}},
            upsert=True, return_document=ReturnDocument.AFTER)
    after = facts.find_one_and_update(
        {"_id": "r1", "site_id": "s"}, {"$set": {"matches.m-1.ended_at": "2026-08-01",
                                                 "live": True}},
        upsert=True, return_document=ReturnDocument.AFTER)
    assert after["contacts"] == {"c-1": {"mode": "phone", "minutes": 30}}
    assert after["matches"] == {"m-1": {"confirmed_at": "2026-07-01",
                                        "ended_at": "2026-08-01"}}
    assert [d["_id"] for d in facts.find({"live": True})] == ["r1"]
    assert [r["_id"] for r in facts.aggregate([{"$group": {"_id": "$site_id"}}])] == ["s"]
    facts.delete_many({"site_id": "s"})
    assert facts.count_documents({}) == 0
    facts.insert_one({"_id": "r2", "site_id": "s"})
    with pytest.raises(BulkWriteError) as clash:
        facts.insert_many([{"_id": "r1", "site_id": "s"}, {"_id": "r2", "site_id": "s"},
                           {"_id": "r3", "site_id": "s"}], ordered=False)
    assert [e["index"] for e in clash.value.details["writeErrors"]] == [1]
    assert facts.count_documents({}) == 3


def test_totals_per_parent_record_and_one_flagged_record_per_key(database):
    """Journeys: contact totals grouped per journey for a page of journeys
    ($match with $in, $sum of a field); one baseline per journey and
    instrument (a partial unique index on a flag) while reviews pile up; a
    goal's review pushed and its status set in one update."""
    contacts = database.contacts
    contacts.insert_many([
        {"site_id": "s", "journey_id": "j1", "duration_minutes": 90, "volunteer_minutes": 90},
        {"site_id": "s", "journey_id": "j1", "duration_minutes": 20, "volunteer_minutes": 0},
        {"site_id": "s", "journey_id": "j2", "duration_minutes": 15, "volunteer_minutes": 15},
        {"site_id": "s", "journey_id": "j3", "duration_minutes": 60, "volunteer_minutes": 60}])
    rows = contacts.aggregate([
        {"$match": {"site_id": "s", "journey_id": {"$in": ["j1", "j2"]}}},
        {"$group": {"_id": "$journey_id", "contacts": {"$sum": 1},
                    "minutes": {"$sum": "$duration_minutes"},
                    "volunteer_minutes": {"$sum": "$volunteer_minutes"}}}])
    assert {r["_id"]: (r["contacts"], r["minutes"], r["volunteer_minutes"])
            for r in rows} == {"j1": (2, 110, 90), "j2": (1, 15, 15)}
    outcomes = database.outcomes
    outcomes.create_index([("site_id", 1), ("journey_id", 1), ("instrument", 1),
                           ("time_point", 1)], unique=True,
                          partialFilterExpression={"once": True})
    outcomes.insert_one({"site_id": "s", "journey_id": "j1", "instrument": "epds",
                         "time_point": "baseline", "once": True})
    with pytest.raises(DuplicateKeyError):
        outcomes.insert_one({"site_id": "s", "journey_id": "j1", "instrument": "epds",
                             "time_point": "baseline", "once": True})
    for _ in range(2):
        outcomes.insert_one({"site_id": "s", "journey_id": "j1", "instrument": "epds",
                             "time_point": "review"})
    assert outcomes.count_documents({"journey_id": "j1"}) == 3
    database.goals.insert_one({"_id": "g", "site_id": "s", "status": "set", "reviews": []})
    goal = database.goals.find_one_and_update(
        {"_id": "g", "site_id": "s"},
        {"$set": {"status": "achieved"}, "$push": {"reviews": {"id": "r1"}}},
        return_document=ReturnDocument.AFTER)
    assert goal["status"] == "achieved" and goal["reviews"] == [{"id": "r1"}]


def test_a_persisted_queue_claimed_by_lease_in_due_order(database):
    """Webhook deliveries: the oldest due, unleased ones are leased in one
    update_many (datetimes compared with $lte, sorted, limited), array
    membership matches an element, and update_many cancels a group."""
    from datetime import datetime, timedelta, timezone
    now = datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc)
    never = datetime(1970, 1, 1, tzinfo=timezone.utc)
    queue = database.deliveries
    queue.create_index([("status", 1), ("next_attempt_at", 1)])
    for n, due in enumerate((5, -5, -10, -1)):
        queue.insert_one({"_id": f"d{n}", "site_id": "s", "webhook_id": "w",
                          "status": "pending", "lease_until": never,
                          "next_attempt_at": now + timedelta(seconds=due)})
    queue.update_one({"_id": "d2"}, {"$set": {"lease_until": now + timedelta(60)}})

    def claim(token, limit):
        due = {"status": "pending", "next_attempt_at": {"$lte": now},
               "lease_until": {"$lte": now}}
        ids = [d["_id"] for d in queue.find(due, {"_id": 1}).sort(
            [("next_attempt_at", 1)]).limit(limit)]
        queue.update_many(dict(due, _id={"$in": ids}), {"$set": {
            "lease_until": now + timedelta(seconds=40), "lease_token": token}})
        return sorted(d["_id"] for d in queue.find({"_id": {"$in": ids},
                                                    "lease_token": token}))
    assert [claim("t1", 1), claim("t2", 5), claim("t3", 5)] == [["d1"], ["d3"], []]
    queue.update_many({"site_id": "s", "webhook_id": "w", "status": "pending"},
                      {"$set": {"status": "cancelled"}})
    assert queue.count_documents({"status": "cancelled"}) == 4
    hooks = database.webhooks
    hooks.insert_one({"_id": "w", "site_id": "s", "status": "active",
                      "event_types": ["match.confirmed", "referral.received"]})
    assert [h["_id"] for h in hooks.find({"site_id": "s", "status": "active",
                                          "event_types": "referral.received"})] == ["w"]
    assert list(hooks.find({"event_types": "referral.closed"})) == []
    assert [h["_id"] for h in hooks.find({"status": {"$in": ["active", "disabled"]}})] \
        == ["w"]


def test_claiming_due_messages_one_by_one(database):
    """Messaging: a due message (status in a set, due_at passed) is taken
    by one atomic update; concurrent claimers never take the same one."""
    import eventlet
    from datetime import datetime, timedelta, timezone
    now = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
    messages = database.messages
    messages.create_index([("status", 1), ("due_at", 1)])
    messages.insert_many(
        [{"_id": f"m{i}", "site_id": "s", "status": "queued", "due_at": now} for i in range(6)]
        + [{"_id": "later", "site_id": "s", "status": "queued",
            "due_at": now + timedelta(hours=1)},
           {"_id": "done", "site_id": "s", "status": "sent", "due_at": None}])

    def claim():
        return messages.find_one_and_update(
            {"status": {"$in": ["queued", "retrying"]}, "due_at": {"$lte": now}},
            {"$set": {"status": "sending", "due_at": now + timedelta(minutes=2)}},
            return_document=ReturnDocument.AFTER)

    pool = eventlet.GreenPool(4)
    claimed = [c for c in pool.imap(lambda _: claim(), range(8)) if c]
    assert sorted(c["_id"] for c in claimed) == [f"m{i}" for i in range(6)]
    assert messages.count_documents({"status": "sending"}) == 6
    messages.update_many({"site_id": "s", "status": {"$in": ["queued"]}},
                         {"$set": {"status": "cancelled", "content": None}})
    assert messages.find_one({"_id": "later"})["status"] == "cancelled"
    assert messages.delete_one({"_id": "done", "site_id": "s"}).deleted_count == 1


def test_a_counter_with_the_last_keys_changed(database):
    """Matching's pool versions: $inc with a capped $push ($each, $slice)
    in one upsert, and a $slice projection."""
    versions = database.pool_versions
    for batch in (["a"], ["b", "c"], ["d"]):
        versions.update_one({"_id": "s", "site_id": "s"},
                            {"$inc": {"version": len(batch)},
                             "$push": {"changed": {"$each": batch, "$slice": -3}}},
                            upsert=True)
    assert versions.find_one({"_id": "s"}, {"_id": 0, "site_id": 0}) == {
        "version": 4, "changed": ["b", "c", "d"]}


def test_racing_upserts_of_one_new_record_both_apply_and_read_back(database):
    """Two upserts creating the same record at once: both changes apply.
    secantusdb may answer one of them with no document (real MongoDB retries
    or raises a duplicate key); the repository then reads the record back."""
    import threading

    from shared.storage import SiteScopedRepository

    class Things(SiteScopedRepository):
        collection_name = "racing"

    answers = []

    def upsert(key, field):
        answers.append(Things(database, "s").update(
            {"_id": key}, {"$set": {field: 1}}, upsert=True))

    for n in range(40):
        threads = [threading.Thread(target=upsert, args=(f"r{n}", f)) for f in ("a", "b")]
        [thread.start() for thread in threads]
        [thread.join() for thread in threads]
    assert all(answer is not None and answer["site_id"] == "s" for answer in answers)
    assert database.racing.count_documents({"a": 1, "b": 1}) == 40
