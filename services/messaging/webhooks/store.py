"""Webhook endpoints and their delivery queue, in the messaging database.

The delivery queue is persisted here (not one RabbitMQ message per
delivery): each delivery is one document with its attempts, so the log an
integrator reads (``GET /webhooks/{id}/deliveries``) is the queue itself,
a replay is one insert, and a disabled endpoint's pending deliveries are
cancelled by one update. Replicas share the work safely: a dispatcher
claims a due delivery with one atomic ``find_one_and_update`` that sets a
lease; a replica that dies mid-attempt lets the lease lapse and another
takes it over.
"""
from datetime import datetime, timezone

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from services.messaging.webhooks.domain import (ACTIVE, CANCELLED, DELETED,
                                                DISABLED, PENDING)
from shared.storage import SiteScopedRepository

WEBHOOKS, DELIVERIES = "webhooks", "webhook_deliveries"
NO_LEASE = datetime(1970, 1, 1, tzinfo=timezone.utc)


def ensure_indexes(database):
    database[WEBHOOKS].create_index([("site_id", 1), ("status", 1)])
    database[DELIVERIES].create_index([("status", 1), ("next_attempt_at", 1)])
    database[DELIVERIES].create_index([("site_id", 1), ("webhook_id", 1),
                                       ("created_at", -1)])


class Webhooks(SiteScopedRepository):
    collection_name = WEBHOOKS

    def add(self, webhook):
        return self.insert(webhook)

    def get(self, webhook_id):
        webhook = self.find_one({"_id": webhook_id})
        return None if webhook is None or webhook["status"] == DELETED else webhook

    def listing(self):
        return self.find({"status": {"$in": [ACTIVE, DISABLED]}},
                         sort=[("created_at", 1)])

    def subscribed(self, event_type):
        return self.find({"status": ACTIVE, "event_types": event_type})

    def set_status(self, webhook_id, status, reason, now):
        return self.update({"_id": webhook_id, "status": {"$in": [ACTIVE, DISABLED]}},
                           {"$set": {"status": status, "disabled_reason": reason,
                                     "updated_at": now}})


class Deliveries(SiteScopedRepository):
    collection_name = DELIVERIES

    def add(self, delivery):
        """Queue a delivery; False if one with its id is queued already."""
        try:
            self.insert(dict(delivery, lease_until=NO_LEASE))
        except DuplicateKeyError:
            return False
        return True

    def get(self, webhook_id, delivery_id):
        return self.find_one({"_id": delivery_id, "webhook_id": webhook_id})

    def of_webhook(self, webhook_id, status=None, limit=50):
        query = {"webhook_id": webhook_id}
        if status:
            query["status"] = status
        return self.find(query, sort=[("created_at", -1)], limit=limit)

    def in_range(self, webhook_id, since, until, limit):
        return self.find({"webhook_id": webhook_id,
                          "created_at": {"$gte": since, "$lt": until}},
                         sort=[("created_at", 1)], limit=limit)

    def cancel_pending(self, webhook_id, now):
        self.collection.update_many(
            self.scoped({"webhook_id": webhook_id, "status": PENDING}),
            {"$set": {"status": CANCELLED, "completed_at": now,
                      "lease_until": NO_LEASE}})


class DeliveryQueue:
    """The dispatcher's view: due deliveries of every site (a system worker,
    not a caller: each delivery carries its own site, and everything it
    writes after the claim goes through the site-scoped stores above)."""

    def __init__(self, database):
        self.collection = database[DELIVERIES]

    def claim(self, now, lease_until, token, limit):
        """Lease up to ``limit`` due deliveries (oldest due first) with one
        write; returns those this ``token`` holds (another replica may have
        taken some between the read and the write)."""
        due = {"status": PENDING, "next_attempt_at": {"$lte": now},
               "lease_until": {"$lte": now}}
        ids = [row["_id"] for row in self.collection.find(due, {"_id": 1})
               .sort([("next_attempt_at", 1)]).limit(limit)]
        if not ids:
            return []
        self.collection.update_many(
            dict(due, _id={"$in": ids}),
            {"$set": {"lease_until": lease_until, "lease_token": token}})
        return sorted(self.collection.find({"_id": {"$in": ids}, "lease_token": token,
                                            "status": PENDING}),
                      key=lambda row: row["next_attempt_at"])

    def record_attempt(self, delivery, changes):
        """Write an attempt's outcome, if the lease is still ours."""
        changes = {"$set": dict(changes["$set"]), "$push": changes["$push"]}
        if changes["$set"].get("lease_until", NO_LEASE) is None:
            changes["$set"]["lease_until"] = NO_LEASE
        changes["$set"]["lease_token"] = None
        return self.collection.find_one_and_update(
            {"_id": delivery["_id"], "site_id": delivery["site_id"],
             "status": PENDING, "lease_token": delivery["lease_token"]},
            changes, return_document=ReturnDocument.AFTER)

    def next_due(self):
        row = self.collection.find_one({"status": PENDING},
                                       sort=[("next_attempt_at", 1)])
        return row["next_attempt_at"] if row else None
