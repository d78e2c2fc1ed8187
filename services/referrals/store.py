"""The referrals service's own database: referrals, scoped by site."""
from shared.storage import SiteScopedRepository

REFERRALS = "referrals"


def ensure_indexes(database):
    database[REFERRALS].create_index([("site_id", 1), ("status", 1),
                                      ("received_at", 1)])


class ReferralStore(SiteScopedRepository):
    collection_name = REFERRALS

    def add(self, referral, events):
        return self.insert(referral, events)

    def get(self, referral_id):
        return self.find_one({"_id": referral_id})
