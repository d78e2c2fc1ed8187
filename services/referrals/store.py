"""The referrals service's own database: parents, referrals and
safeguarding concerns, each scoped by site. Personal values arrive here
already encrypted; parents are found by their lookup keys (HMACs)."""
import logging

from pymongo.errors import OperationFailure

from shared.errors import Conflict, NotFound
from shared.storage import SiteScopedRepository

log = logging.getLogger(__name__)

REFERRALS = "referrals"
PARENTS = "parents"
CONCERNS = "safeguarding_concerns"
INTAKE_KEYS = "intake_keys"

# A lookup key is unique per site where it is given (a string); parents
# without a phone (None) do not collide.
UNIQUE_LOOKUPS = ("phone", "exact")


def ensure_indexes(database):
    database[REFERRALS].create_index([("site_id", 1), ("status", 1),
                                      ("received_at", 1)])
    database[REFERRALS].create_index([("site_id", 1), ("source", 1),
                                      ("received_at", 1)])
    database[REFERRALS].create_index([("site_id", 1), ("parent_id", 1)])
    indexes = database[PARENTS].index_information()
    for name in UNIQUE_LOOKUPS:
        keys = [("site_id", 1), (f"lookup.{name}", 1)]
        index = f"site_id_1_lookup.{name}_1"
        if index in indexes and indexes[index].get("unique"):
            continue
        if index in indexes:
            database[PARENTS].drop_index(index)   # made before it was unique
        try:
            database[PARENTS].create_index(
                keys, unique=True,
                partialFilterExpression={f"lookup.{name}": {"$type": "string"}})
        except OperationFailure as error:
            # Parents doubled before the index existed: still find them
            # (not unique) until someone merges them, and say so loudly.
            log.error("parents share a lookup key: the unique index waits until "
                      "they are merged", extra={"fields": {
                          "lookup": name, "error": str(error)[:300]}})
            database[PARENTS].create_index(keys)
    database[PARENTS].create_index([("site_id", 1), ("lookup.dob_postcode", 1)])
    database[INTAKE_KEYS].create_index([("site_id", 1), ("key", 1)], unique=True)
    database[CONCERNS].create_index([("site_id", 1), ("status", 1), ("raised_at", 1)])
    database[CONCERNS].create_index([("site_id", 1), ("referral_id", 1)])


class ParentStore(SiteScopedRepository):
    collection_name = PARENTS

    def add(self, parent):
        return self.insert(parent)

    def remove(self, parent_id):
        self.collection.delete_one(self.scoped({"_id": parent_id}), session=self.session)

    def by_lookup(self, name, key):
        if key is None:
            return []
        return self.find({f"lookup.{name}": key}, sort=[("created_at", 1)])

    def holder_of(self, keys):
        """The parent holding one of the unique lookup keys, if any."""
        for name in UNIQUE_LOOKUPS:
            found = self.by_lookup(name, keys.get(name))
            if found:
                return found[0]
        return None


class IntakeKeys(SiteScopedRepository):
    """Idempotency keys of intakes: which referral a key made, and a
    fingerprint of the request that made it."""
    collection_name = INTAKE_KEYS

    def get(self, key):
        return self.find_one({"key": key})

    def claim(self, key, fingerprint, referral_id, now):
        """Raises DuplicateKeyError if the key is taken (perhaps just now)."""
        return self.insert({"key": key, "fingerprint": fingerprint,
                            "referral_id": referral_id, "created_at": now})

    def release(self, key):
        self.collection.delete_one(self.scoped({"key": key}), session=self.session)


class ReferralStore(SiteScopedRepository):
    collection_name = REFERRALS

    def add(self, referral, events):
        return self.insert(referral, events)

    def get(self, referral_id):
        return self.find_one({"_id": referral_id})

    def queue(self, status=None, source=None, received_before=None, limit=200):
        query = {}
        if status:
            query["status"] = status
        if source:
            query["source"] = source
        if received_before is not None:
            query["received_at"] = {"$lte": received_before}
        return self.find(query, sort=[("received_at", 1)], limit=limit)

    def apply(self, referral, update, events):
        """Write what an event does to a referral, if it is still as read
        (else None: the caller's transaction starts again)."""
        return self.update({"_id": referral["_id"], "version": referral["version"],
                            "status": referral["status"]}, update, events)

    def move(self, referral_id, version, status, update, events):
        """Apply one triage move if nobody moved the referral since it was
        read (optimistic version), with its events in the same write."""
        moved = self.update({"_id": referral_id, "version": version, "status": status},
                            update, events)
        if moved is None:
            if self.get(referral_id) is None:
                raise NotFound(f"No referral {referral_id}.")
            raise Conflict("The referral was changed by someone else: read it "
                           "again and retry.")
        return moved


class ConcernStore(SiteScopedRepository):
    collection_name = CONCERNS

    def add(self, concern, events):
        return self.insert(concern, events)

    def get(self, concern_id):
        return self.find_one({"_id": concern_id})

    def change(self, concern, update, events):
        """Change a concern if its status is still what was read."""
        changed = self.update({"_id": concern["_id"], "status": concern["status"]},
                              update, events)
        if changed is None:
            raise Conflict("The concern was changed by someone else: read it again.")
        return changed

    def listing(self, query, limit=500):
        return self.find(query, sort=[("raised_at", 1)], limit=limit)
