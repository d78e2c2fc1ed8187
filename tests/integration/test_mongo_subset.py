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
