"""The matching service's own database, scoped by site.

- ``profiles``: one document per volunteer (``_id`` = the volunteer's id):
  the coordinator's profile, training's eligibility verdict, and ``active``,
  the number of proposed and open matches. A place is taken by one
  conditional update (``active < capacity``): capacity cannot be exceeded
  however many coordinators confirm at once, with no transaction.
- ``matches``: a unique partial index keeps one open match per referral.
- ``demand``: accepted referrals (``_id`` = the referral's id), with only the
  facts matching scores; waiting, matched or closed. A match first claims
  its referral (one conditional update, waiting -> matched): one match per
  referral, however many coordinators confirm at once. ``declined_by``: the
  volunteers who declined it, never put forward for it again.
- ``settings``: one document per site (``_id`` = the site), its weights.
- ``pool_versions``: one document per site, ``version`` raised (with the
  volunteer's id in ``changed``, the last 500 kept) after every change to
  a profile that scoring reads; suggestions keep the site's pool in memory
  and reload only what changed since (services/matching/pool.py).
"""
from pymongo.errors import DuplicateKeyError

from services.matching import domain
from shared.errors import NotFound
from shared.inbox import run_in_transaction
from shared.storage import SiteScopedRepository, supports_transactions

PROFILES = "profiles"
MATCHES = "matches"
DEMAND = "demand"
SETTINGS = "settings"
POOL_VERSIONS = "pool_versions"
CHANGES_KEPT = 500

MATCHABLE = {"has_profile": True, "eligible": True, "left": False,
             "$expr": {"$lt": ["$active", "$capacity"]}}
SCORING_FIELDS = {"site_id": 1, "languages": 1, "districts": 1, "lived_experience": 1,
                  "support_modes": 1, "capacity": 1, "active": 1, "birth_buddy": 1,
                  "available_days": 1, "eligible": 1, "has_profile": 1, "left": 1}


def ensure_indexes(database):
    database[PROFILES].create_index([("site_id", 1), ("eligible", 1),
                                     ("has_profile", 1), ("left", 1)])
    database[PROFILES].create_index([("site_id", 1), ("user_id", 1)])
    database[MATCHES].create_index(
        [("site_id", 1), ("referral_id", 1)], unique=True,
        partialFilterExpression={"status": domain.OPEN},
        name="one_open_match_per_referral")
    database[MATCHES].create_index([("site_id", 1), ("volunteer_id", 1), ("status", 1)])
    database[MATCHES].create_index([("site_id", 1), ("confirmed_at", -1)])
    database[DEMAND].create_index([("site_id", 1), ("status", 1), ("accepted_at", 1)])


def atomically(database, write):
    """Run ``write(session)`` in a transaction (a replica set, as in
    production and on the local wire server); on a standalone server,
    ``write(None)``, whose writes are ordered so a failure leaves nothing
    that matters and compensates the rest."""
    client = database.client
    transactions = getattr(client, "_alongside_transactions", None)
    if transactions is None:
        transactions = supports_transactions(client)
        client._alongside_transactions = transactions
    if transactions:
        run_in_transaction(client, write)
    else:
        write(None)


class Profiles(SiteScopedRepository):
    collection_name = PROFILES

    def get(self, volunteer_id):
        return self.find_one({"_id": volunteer_id})

    def by_user(self, user_id):
        return self.find_one({"user_id": user_id})

    def _upsert(self, volunteer_id, setting):
        """Set fields on a volunteer's document, creating it if need be; a
        volunteer of another site is not found (volunteer ids are unique)."""
        update = {"$set": setting,
                  "$setOnInsert": domain.insert_defaults(volunteer_id, setting)}
        for _ in range(2):
            try:
                return self.update({"_id": volunteer_id}, update, upsert=True)
            except DuplicateKeyError:
                if self.get(volunteer_id) is None:
                    raise NotFound(f"No volunteer {volunteer_id}.")
                # else a concurrent first write of this site: update it now
        raise NotFound(f"No volunteer {volunteer_id}.")

    def set_profile(self, volunteer_id, fields):
        return self._upsert(volunteer_id, fields)

    def record_eligibility(self, volunteer_id, eligible, reasons, as_of):
        """Training's verdict, unless a newer one is already recorded;
        returns True if it was applied."""
        current = self.get(volunteer_id)
        if not domain.eligibility_is_newer(current, as_of):
            return False
        self._upsert(volunteer_id, {"eligible": eligible, "eligibility_reasons": reasons,
                                    "eligibility_as_of": as_of})
        return True

    def record_left(self, volunteer_id, when):
        self._upsert(volunteer_id, {"left": True, "left_at": when})

    def candidates(self, referral=None):
        """Volunteers of the site who can take one more parent (and, for a
        referral, speak the parent's language when that is a hard rule)."""
        filter = dict(MATCHABLE)
        if referral is not None and not referral["interpreter_needed"]:
            filter["language_keys"] = domain.primary_language(referral["preferred_language"])
        return list(self.collection.find(self.scoped(filter), SCORING_FIELDS,
                                         session=self.session))

    def scoring_facts(self, volunteer_ids):
        """What scoring reads of these volunteers, whatever their state."""
        return list(self.collection.find(
            self.scoped({"_id": {"$in": list(volunteer_ids)}}), SCORING_FIELDS,
            session=self.session))

    def take_place(self, volunteer_id, events=()):
        """One more live match, only if a place is left: the capacity check
        and the write are one atomic update."""
        return self.update(dict(MATCHABLE, _id=volunteer_id),
                           {"$inc": {"active": 1}}, events)

    def free_place(self, volunteer_id):
        return self.update({"_id": volunteer_id, "active": {"$gt": 0}},
                           {"$inc": {"active": -1}})


class Matches(SiteScopedRepository):
    collection_name = MATCHES

    def get(self, match_id):
        return self.find_one({"_id": match_id})

    def close(self, match_id, changes, events):
        """Close a proposed or open match; None if it is no longer either."""
        return self.update({"_id": match_id, "status": {"$in": list(domain.LIVE)}},
                           {"$set": changes}, events)

    def accept(self, match_id, changes, events):
        """A proposed match becomes open; None if it is no longer proposed."""
        return self.update({"_id": match_id, "status": domain.PROPOSED},
                           {"$set": changes}, events)

    def live_for_referral(self, referral_id):
        """The referral's proposed or open match, if any."""
        return self.find_one({"referral_id": referral_id,
                              "status": {"$in": list(domain.LIVE)}})

    def flag_for_rematch(self, volunteer_id, reason, when):
        result = self.collection.update_many(
            self.scoped({"volunteer_id": volunteer_id, "status": {"$in": list(domain.LIVE)},
                         "needs_rematch": False}),
            {"$set": {"needs_rematch": True, "rematch_reason": reason,
                      "flagged_at": when}}, session=self.session)
        return result.modified_count

    def unflag(self, volunteer_id, reason):
        self.collection.update_many(
            self.scoped({"volunteer_id": volunteer_id, "status": {"$in": list(domain.LIVE)},
                         "rematch_reason": reason}),
            {"$set": {"needs_rematch": False, "rematch_reason": None}},
            session=self.session)

    def search(self, query):
        filter = {name: query[name] for name in
                  ("status", "volunteer_id", "referral_id", "needs_rematch")
                  if query.get(name) is not None}
        return self.find(filter, sort=[("confirmed_at", -1)], limit=query["limit"])


class Demand(SiteScopedRepository):
    collection_name = DEMAND

    def get(self, referral_id):
        return self.find_one({"_id": referral_id})

    def accepted(self, referral_id, facts):
        """A referral accepted (again): its facts; waiting unless matched."""
        return self.update({"_id": referral_id},
                           {"$set": facts, "$setOnInsert": {"status": domain.WAITING,
                                                            "match_id": None}},
                           upsert=True)

    def waiting(self, referral_ids=None):
        filter = {"status": domain.WAITING}
        if referral_ids is not None:
            filter["_id"] = {"$in": list(referral_ids)}
        return self.find(filter, sort=[("accepted_at", 1), ("_id", 1)])

    def claim(self, referral_id, match_id):
        """Waiting -> matched for this match, in one conditional update; None
        if the referral is not waiting (another match claimed it first)."""
        return self.update({"_id": referral_id, "status": domain.WAITING},
                           {"$set": {"status": domain.MATCHED, "match_id": match_id}})

    def release(self, referral_id, match_id):
        """Undo :meth:`claim` (the match could not be made)."""
        return self.update({"_id": referral_id, "match_id": match_id},
                           {"$set": {"status": domain.WAITING, "match_id": None}})

    def after_match(self, referral_id, match_id, rematch, declined_by=None):
        """The referral's match closed: it waits again, or its support is
        over; a volunteer who declined it is remembered."""
        update = {"$set": {"status": domain.WAITING if rematch else domain.CLOSED,
                           "match_id": None}}
        if declined_by is not None:
            update["$push"] = {"declined_by": declined_by}
        return self.update({"_id": referral_id, "match_id": match_id}, update)

    def left_service(self, referral_id, event_type, when, keep_record):
        """The referral left the waiting list (withdrawn, declined,
        signposted or closed). ``keep_record``: remember it even if its
        acceptance has not arrived yet (events may come out of order)."""
        return self.update({"_id": referral_id},
                           {"$set": {"status": domain.CLOSED, "closed_by_event": event_type,
                                     "closed_at": when}},
                           upsert=keep_record)


class PoolVersions(SiteScopedRepository):
    """The site's pool version: raised after each change that scoring reads."""
    collection_name = POOL_VERSIONS

    def get(self):
        return self.find_one({"_id": self.site_id}) or {"version": 0, "changed": []}

    def touch(self, volunteer_ids):
        """Raise the version once per volunteer changed, in one atomic
        update (after the change is written: a reader that saw the old
        version reads them again)."""
        volunteer_ids = list(volunteer_ids)
        if volunteer_ids:
            self.collection.update_one(
                self.scoped({"_id": self.site_id}),
                {"$inc": {"version": len(volunteer_ids)},
                 "$push": {"changed": {"$each": volunteer_ids, "$slice": -CHANGES_KEPT}}},
                upsert=True, session=self.session)


class Settings(SiteScopedRepository):
    collection_name = SETTINGS

    def get(self):
        return self.find_one({"_id": self.site_id})

    def weights(self):
        settings = self.get()
        # Weights saved before a component existed take its default.
        return dict(domain.DEFAULT_WEIGHTS, **((settings or {}).get("weights") or {}))

    def set_weights(self, weights, when, by):
        return self.update({"_id": self.site_id},
                           {"$set": {"weights": weights, "updated_at": when,
                                     "updated_by": by}}, upsert=True)
