"""The reporting service's own database: the append-only event archive.

Counts are read from the archive rather than kept in counter documents:
concurrent handlers incrementing one counter per site and source collide
in their transactions, and the archive already holds every fact.
"""
from shared.storage import SiteScopedRepository

EVENT_ARCHIVE = "event_archive"


def ensure_indexes(database):
    database[EVENT_ARCHIVE].create_index([("site_id", 1), ("time", 1)])
    database[EVENT_ARCHIVE].create_index([("site_id", 1), ("type", 1)])


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
