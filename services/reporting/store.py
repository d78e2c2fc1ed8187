"""The reporting service's own database: the append-only event archive and
the projections built from it.

Counts are read from projections and the archive rather than kept in
counter documents: concurrent handlers incrementing one counter per site
collide in their transactions, and a counter applied twice is wrong.
Projections are documents per referral, volunteer and message, changed
only by ``$set`` at paths keyed by ids (see ``domain``), so applying an
event twice changes nothing.
"""
from datetime import timedelta

from services.reporting import domain
from shared.storage import SiteScopedRepository

EVENT_ARCHIVE = "event_archive"
REFERRAL_FACTS = "referral_facts"
VOLUNTEER_FACTS = "volunteer_facts"
MESSAGE_FACTS = "message_facts"
COLLECTIONS = {domain.REFERRAL: REFERRAL_FACTS, domain.VOLUNTEER: VOLUNTEER_FACTS,
               domain.MESSAGE: MESSAGE_FACTS}
PROJECTIONS = (REFERRAL_FACTS, VOLUNTEER_FACTS, MESSAGE_FACTS)


def ensure_indexes(database):
    database[EVENT_ARCHIVE].create_index([("site_id", 1), ("time", 1)])
    database[EVENT_ARCHIVE].create_index([("site_id", 1), ("type", 1)])
    database[EVENT_ARCHIVE].create_index("archived_at")
    for name in PROJECTIONS:
        database[name].create_index("site_id")
    database[REFERRAL_FACTS].create_index("live")
    database[REFERRAL_FACTS].create_index([("site_id", 1), ("last_activity_at", 1)])
    database[REFERRAL_FACTS].create_index("last_activity_at")
    database[MESSAGE_FACTS].create_index("failed_at")


class EventArchive(SiteScopedRepository):
    collection_name = EVENT_ARCHIVE

    def append(self, record):
        self.insert(record)

    def latest(self, limit):
        return self.find(sort=[("time", -1)], limit=limit)

    def count_by(self, event_type, data_field):
        """{value of data.<field>: number of <event_type> events} for the site."""
        rows = self.collection.aggregate([
            {"$match": self.scoped({"type": event_type})},
            {"$group": {"_id": f"$data.{data_field}", "count": {"$sum": 1}}},
        ], session=self.session)
        return {row["_id"]: row["count"] for row in rows}


def _fact_repository(name):
    class Facts(SiteScopedRepository):
        collection_name = name
    Facts.__name__ = f"Facts_{name}"
    return Facts


FACT_REPOSITORIES = {kind: _fact_repository(name) for kind, name in COLLECTIONS.items()}


class Projections:
    """A site's projections, changed in the caller's transaction."""

    def __init__(self, database, site_id, session=None):
        self.repositories = {kind: cls(database, site_id, session)
                             for kind, cls in FACT_REPOSITORIES.items()}

    def apply(self, changes):
        for change in changes:
            repository = self.repositories[change.kind]
            sets = dict(change.sets)
            if change.kind == domain.REFERRAL:
                # The derived fields from the document as it will be: one read
                # and one write (two find-and-modify cost about four times more).
                document = repository.find_one({"_id": change.key}) or {"_id": change.key}
                domain.apply_sets(document, change.sets)
                sets.update(domain.derived_fields(document))
            repository.set_fields({"_id": change.key}, sets, upsert=True)

    def referrals(self, active_since=None):
        """The site's referrals (those with any fact on or after
        ``active_since``, if given: an indexed read)."""
        query = {"last_activity_at": {"$gte": active_since}} if active_since else None
        return self.repositories[domain.REFERRAL].find(query)

    def volunteers(self):
        return self.repositories[domain.VOLUNTEER].find()


def sites_with_facts(database):
    """Every site any projection holds a document of."""
    sites = set()
    for name in PROJECTIONS:
        sites.update(row["_id"] for row in database[name].aggregate(
            [{"$group": {"_id": "$site_id"}}]) if row["_id"])
    return sites


def metric_inputs(database, now):
    """What the business gauges need, and no more: referrals flagged live or
    active since the start of this week, messages failed in the last day."""
    since = domain.week_start(now)
    seen, referrals = set(), []
    for document in list(database[REFERRAL_FACTS].find({"live": True})) + list(
            database[REFERRAL_FACTS].find({"last_activity_at": {"$gte": since}})):
        key = (document["site_id"], document["_id"])
        if key not in seen:
            seen.add(key)
            referrals.append(document)
    messages = list(database[MESSAGE_FACTS].find(
        {"failed_at": {"$gte": now - timedelta(hours=24)}}))
    return referrals, messages
