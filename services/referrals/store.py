"""The referrals service's own database: parents, referrals and
safeguarding concerns, each scoped by site. Personal values arrive here
already encrypted; parents are found by their lookup keys (HMACs)."""
from shared.errors import Conflict, NotFound
from shared.storage import SiteScopedRepository

REFERRALS = "referrals"
PARENTS = "parents"
CONCERNS = "safeguarding_concerns"


def ensure_indexes(database):
    database[REFERRALS].create_index([("site_id", 1), ("status", 1),
                                      ("received_at", 1)])
    database[REFERRALS].create_index([("site_id", 1), ("source", 1),
                                      ("received_at", 1)])
    database[REFERRALS].create_index([("site_id", 1), ("parent_id", 1)])
    database[PARENTS].create_index([("site_id", 1), ("lookup.phone", 1)])
    database[PARENTS].create_index([("site_id", 1), ("lookup.dob_postcode", 1)])
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
