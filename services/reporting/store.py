"""The reporting service's own database: the event archive and projections."""
from shared.storage import SiteScopedRepository

EVENT_ARCHIVE = "event_archive"
REFERRAL_COUNTS = "referral_counts"


def ensure_indexes(database):
    database[EVENT_ARCHIVE].create_index([("site_id", 1), ("time", 1)])
    database[REFERRAL_COUNTS].create_index([("site_id", 1), ("source", 1)],
                                           unique=True)


class EventArchive(SiteScopedRepository):
    collection_name = EVENT_ARCHIVE

    def append(self, record):
        self.insert(record)

    def latest(self, limit):
        return self.find(sort=[("time", -1)], limit=limit)


class ReferralCounts(SiteScopedRepository):
    collection_name = REFERRAL_COUNTS

    def increment(self, source):
        self.update({"source": source}, {"$inc": {"count": 1}}, upsert=True)

    def by_source(self):
        return {row["source"]: row["count"] for row in self.find()}
