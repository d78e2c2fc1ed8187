"""Rebuild reporting's projections from scratch, from the event archive.

    python -m services.reporting.rebuild [--site SITE] [--batch N]

Reads ``MONGODB_URI`` and ``REPORTING_DATABASE`` as the service does (its
config.yaml). Folds every archived event into fresh documents in memory with
the same rules the live handlers use (``domain.changes_for``), replaces the
projections with them, then re-applies, through the live path, any event
archived since the rebuild began (less two minutes, for a handler's slow
transaction): the rules are idempotent, so an event the running service
applied meanwhile is applied again harmlessly rather than lost. For a
rebuild that is exact beyond doubt, run it with reporting stopped. Prints
the events folded per second.
"""
import argparse
import sys
import time
from datetime import timedelta

from pymongo.errors import BulkWriteError

from services.reporting import domain, store
from shared.events.envelope import utcnow


CATCH_UP_MARGIN_SECONDS = 120


def _envelope(record):
    return {"id": record["_id"], "type": record["type"], "time": record["time"],
            "siteid": record["site_id"]}


def fold(records):
    """{(collection, site, id): document} from archived events, in memory."""
    documents = {}
    count = 0
    for record in records:
        count += 1
        for change in domain.changes_for(_envelope(record), record["data"]):
            key = (store.COLLECTIONS[change.kind], record["site_id"], change.key)
            document = documents.get(key)
            if document is None:
                document = documents[key] = {"_id": change.key,
                                             "site_id": record["site_id"]}
            domain.apply_sets(document, change.sets)
    for (collection, _, _), document in documents.items():
        if collection == store.REFERRAL_FACTS:
            document.update(domain.derived_fields(document))
    return documents, count


def rebuild(database, site_id=None, batch=1000):
    """Replace the projections (of one site, or all) from the archive.
    Returns {"events", "documents", "seconds", "events_per_second"}."""
    # Events a live handler archived since (with a margin for a transaction
    # that took its time to commit) are re-applied at the end.
    began = utcnow() - timedelta(seconds=CATCH_UP_MARGIN_SECONDS)
    started = time.perf_counter()
    scope = {"site_id": site_id} if site_id else {}
    records = database[store.EVENT_ARCHIVE].find(
        scope, {"_id": 1, "type": 1, "time": 1, "site_id": 1, "data": 1},
        batch_size=batch)
    documents, count = fold(records)
    for name in store.PROJECTIONS:
        database[name].delete_many(scope)
    by_collection = {}
    for (collection, _, _), document in documents.items():
        by_collection.setdefault(collection, []).append(document)
    for collection, docs in by_collection.items():
        for start in range(0, len(docs), batch):
            _insert(database[collection], docs[start:start + batch])
    caught_up = _catch_up(database, began, scope)
    seconds = time.perf_counter() - started
    return {"events": count, "documents": len(documents), "caught_up": caught_up,
            "seconds": round(seconds, 3),
            "events_per_second": round(count / seconds, 1) if seconds else None}


def _insert(collection, docs):
    try:
        collection.insert_many(docs, ordered=False)
    except BulkWriteError as error:
        # A live handler wrote one of these since the delete: merge ours in;
        # the catch-up below re-applies what it had.
        failed = {e["index"] for e in error.details.get("writeErrors", [])
                  if e.get("code") == 11000}
        unexpected = [e for e in error.details.get("writeErrors", [])
                      if e.get("code") != 11000]
        if unexpected:
            raise
        for index in failed:
            document = docs[index]
            fields = {k: v for k, v in document.items() if k not in ("_id", "site_id")}
            collection.update_one({"_id": document["_id"],
                                   "site_id": document["site_id"]}, {"$set": fields})


def _catch_up(database, since, scope):
    records = list(database[store.EVENT_ARCHIVE].find(
        dict(scope, archived_at={"$gte": since})))
    for record in records:
        changes = domain.changes_for(_envelope(record), record["data"])
        store.Projections(database, record["site_id"]).apply(changes)
    return len(records)


def main(argv=None):
    from shared.config import load_service_config
    from shared.storage import connect

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", help="rebuild one site only")
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args(argv)
    config = load_service_config("reporting")
    client = connect(config["MONGODB_URI"])
    try:
        database = client[config["MONGODB_DATABASE"]]
        result = rebuild(database, args.site, args.batch)
    finally:
        client.close()
    print(f"[reporting] rebuilt {result['documents']} projection documents from "
          f"{result['events']} archived events in {result['seconds']:.2f} s: "
          f"{result['events_per_second']} events/s"
          + (f" ({result['caught_up']} re-applied after the rebuild began)"
             if result["caught_up"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
