"""The gateway's own database: sites, users, API keys, the audit log and
rate-limit counters.

Identity is where site scope comes from, so sites, users and API keys are
read by id or email here, before any scope exists; everything a caller then
reads is scoped by the site of their credentials. The audit log is append
only: this module has no way to change or delete an entry.
"""
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from shared.errors import Conflict
from shared.storage import SiteScopedRepository, read_back_upsert

SITES, USERS, API_KEYS, AUDIT, RATE_LIMITS, INTEGRATION_QUEUES = (
    "sites", "users", "api_keys", "audit_log", "rate_limits", "integration_queues")


def ensure_indexes(database):
    database[SITES].create_index("code", unique=True)
    database[USERS].create_index("email", unique=True)
    database[USERS].create_index([("site_id", 1), ("role", 1)])
    database[API_KEYS].create_index("site_id")
    database[AUDIT].create_index([("site_id", 1), ("at", -1)])
    database[AUDIT].create_index([("at", -1)])


class Sites:
    def __init__(self, database):
        self.collection = database[SITES]

    def add(self, site):
        try:
            self.collection.insert_one(site)
        except DuplicateKeyError:
            raise Conflict(f"A site with code {site['code']!r} exists already.")
        return site

    def get(self, site_id):
        return self.collection.find_one({"_id": site_id})

    def all(self):
        return list(self.collection.find().sort("code", 1))

    def update(self, site_id, changes):
        return self.collection.find_one_and_update(
            {"_id": site_id}, {"$set": changes}, return_document=ReturnDocument.AFTER)


class Users:
    def __init__(self, database):
        self.collection = database[USERS]

    def add(self, user):
        try:
            self.collection.insert_one(user)
        except DuplicateKeyError:
            raise Conflict("A user with that email exists already.")
        return user

    def by_email(self, email):
        return self.collection.find_one({"email": email.lower()})

    def get(self, user_id):
        return self.collection.find_one({"_id": user_id})

    def any_with_role(self, role):
        return self.collection.find_one({"role": role}) is not None

    def list(self, site_id=None):
        query = {} if site_id is None else {"site_id": site_id}
        return list(self.collection.find(query, {"password_hash": 0}).sort("email", 1))


class ApiKeys:
    def __init__(self, database):
        self.collection = database[API_KEYS]

    def add(self, key):
        self.collection.insert_one(key)
        return key

    def get(self, key_id):
        return self.collection.find_one({"_id": key_id})

    def list(self, site_id=None):
        query = {} if site_id is None else {"site_id": site_id}
        return list(self.collection.find(query, {"secret_hash": 0}).sort("created_at", 1))

    def revoke(self, key_id, site_id, when):
        query = {"_id": key_id, "revoked_at": None}
        if site_id is not None:
            query["site_id"] = site_id
        return self.collection.find_one_and_update(
            query, {"$set": {"revoked_at": when}}, projection={"secret_hash": 0},
            return_document=ReturnDocument.AFTER)


class SiteAuditLog(SiteScopedRepository):
    collection_name = AUDIT

    def recent(self, limit, action=None):
        query = {"action": action} if action else {}
        return self.find(query, sort=[("at", -1)], limit=limit)


class AuditLog:
    """Appends entries (with or without a site) and reads them nationally."""

    def __init__(self, database):
        self.collection = database[AUDIT]

    def append(self, entry):
        self.collection.insert_one(entry)

    def recent(self, limit, action=None):
        query = {"action": action} if action else {}
        return list(self.collection.find(query).sort("at", -1).limit(limit))


class RateLimits:
    """Fixed-window counters, shared by every gateway replica."""

    def __init__(self, database):
        self.collection = database[RATE_LIMITS]

    def hit(self, bucket, window_start):
        key = {"_id": f"{bucket}:{window_start}"}
        counter = self.collection.find_one_and_update(
            key, {"$inc": {"count": 1}, "$setOnInsert": {"window_start": window_start}},
            upsert=True, return_document=ReturnDocument.AFTER)
        if counter is None:   # the first hits of a window racing
            counter = read_back_upsert(self.collection, key)
        return counter["count"]

    def forget_before(self, window_start):
        self.collection.delete_many({"window_start": {"$lt": window_start}})


class IntegrationQueues(SiteScopedRepository):
    collection_name = INTEGRATION_QUEUES

    def get(self, queue_name):
        return self.find_one({"_id": queue_name})

    def save(self, record, existed):
        if not existed:
            return self.insert(record)
        return self.update({"_id": record["_id"]}, {"$set": {
            k: v for k, v in record.items() if k not in ("_id", "site_id", "created_at")}})

    def of_key(self, key_id):
        return self.find({"key_id": key_id})
