"""The matching service: entrypoints only."""
import logging
import uuid

from nameko.rpc import rpc
from pymongo.errors import DuplicateKeyError

from services.matching import domain, store
from services.matching.pool import PoolCache
from services.matching.schemas import (AcceptMatchSchema, ConfirmMatchSchema,
                                       DeclineMatchSchema,
                                       EndMatchSchema, MatchesQuerySchema,
                                       MatchSchema, PlanRequestSchema, PlanSchema,
                                       ProfileOutSchema, ProfileSchema,
                                       SuggestionsQuerySchema, SuggestionsSchema,
                                       WeightsOutSchema, WeightsSchema)
from shared.errors import DOMAIN_ERRORS, Conflict, NotFound, ValidationFailed
from shared.events import load_event
from shared.events.envelope import utcnow
from shared.inbox import Inbox
from shared.messaging import event_handler
from shared.observability import log_fields
from shared.outbox import Outbox
from shared.service_base import ServiceBase
from shared.storage import Database
from shared.validation import load_or_fail

log = logging.getLogger(__name__)


def profile_answer(profile):
    return ProfileOutSchema().dump(dict(profile, matchable=domain.is_matchable(profile)))


class MatchingService(ServiceBase):
    name = "matching"

    db = Database(prepare=store.ensure_indexes)
    outbox = Outbox(store.PROFILES, store.MATCHES)
    inbox = Inbox()
    pools = PoolCache()

    def _touch(self, site_id, *volunteer_ids):
        """After a change scoring reads is written: the pools reload them."""
        store.PoolVersions(self.db, site_id).touch(volunteer_ids)

    # -- events in ---------------------------------------------------------

    @event_handler("training", "volunteer.eligibility_changed")
    def on_eligibility_changed(self, body):
        envelope, data = load_event(body, {"volunteer.eligibility_changed"})
        self.inbox.apply_once(envelope, lambda session: self._eligibility(
            envelope["siteid"], data, envelope["time"], session))
        self._touch(envelope["siteid"], data["volunteer_id"])

    def _eligibility(self, site_id, data, as_of, session):
        volunteer_id = data["volunteer_id"]
        applied = store.Profiles(self.db, site_id, session).record_eligibility(
            volunteer_id, data["eligible"], list(data["reasons"]), as_of)
        if not applied:
            return
        matches = store.Matches(self.db, site_id, session)
        if data["eligible"]:
            matches.unflag(volunteer_id, domain.REMATCH_NOT_ELIGIBLE)
        else:
            flagged = matches.flag_for_rematch(volunteer_id, domain.REMATCH_NOT_ELIGIBLE,
                                               utcnow())
            log.info("volunteer not eligible", extra=log_fields(
                volunteer_id=volunteer_id, site_id=site_id, flagged_matches=flagged))

    @event_handler("training", "volunteer.left")
    def on_volunteer_left(self, body):
        envelope, data = load_event(body, {"volunteer.left"})
        self.inbox.apply_once(envelope, lambda session: self._left(
            envelope["siteid"], data["volunteer_id"], envelope["time"], session))
        self._touch(envelope["siteid"], data["volunteer_id"])

    def _left(self, site_id, volunteer_id, when, session):
        store.Profiles(self.db, site_id, session).record_left(volunteer_id, when)
        store.Matches(self.db, site_id, session).flag_for_rematch(
            volunteer_id, domain.REMATCH_LEFT, utcnow())

    @event_handler("referrals", "referral.accepted")
    def on_referral_accepted(self, body):
        envelope, data = load_event(body, {"referral.accepted"})
        self.inbox.apply_once(envelope, lambda session: store.Demand(
            self.db, envelope["siteid"], session).accepted(
                data["referral_id"], domain.demand_from_accepted(data, utcnow())))

    @event_handler("referrals", "referral.withdrawn")
    def on_referral_withdrawn(self, body):
        self._referral_gone(body, "referral.withdrawn")

    @event_handler("referrals", "referral.declined")
    def on_referral_declined(self, body):
        self._referral_gone(body, "referral.declined")

    @event_handler("referrals", "referral.signposted")
    def on_referral_signposted(self, body):
        self._referral_gone(body, "referral.signposted")

    @event_handler("referrals", "referral.closed")
    def on_referral_closed(self, body):
        self._referral_gone(body, "referral.closed")

    def _referral_gone(self, body, event_type):
        """Off the waiting list; a live match of a closed referral ends
        (freeing the volunteer's place). Only a closing is remembered
        before its acceptance arrives: the others come before acceptance."""
        envelope, data = load_event(body, {event_type})
        site_id, referral_id = envelope["siteid"], data["referral_id"]
        freed = []

        def apply(session):
            freed.clear()
            match = store.Matches(self.db, site_id, session).live_for_referral(referral_id)
            if match is not None:
                reason = domain.match_end_reason_for_closed_referral(data.get("reason"))
                changes, event, _ = domain.end_match(match, reason, utcnow())
                self._close_writes(site_id, match, changes, event, False, None, session)
                freed.append(match["volunteer_id"])
            store.Demand(self.db, site_id, session).left_service(
                referral_id, event_type, utcnow(), keep_record=event_type == "referral.closed")
        self.inbox.apply_once(envelope, apply)
        if freed:
            self._touch(site_id, *freed)

    # -- profiles and weights ----------------------------------------------

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def put_profile(self, site_id, volunteer_id, payload):
        form = load_or_fail(ProfileSchema(), payload)
        profile = store.Profiles(self.db, site_id).set_profile(
            volunteer_id, domain.profile_fields(form, utcnow()))
        self._touch(site_id, volunteer_id)
        return profile_answer(profile)

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def get_profile(self, site_id, volunteer_id):
        profile = store.Profiles(self.db, site_id).get(volunteer_id)
        if profile is None:
            raise NotFound(f"No matching profile for volunteer {volunteer_id}.")
        return profile_answer(profile)

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def get_weights(self, site_id):
        settings = store.Settings(self.db, site_id)
        return WeightsOutSchema().dump({"site_id": site_id, "weights": settings.weights(),
                                        "updated_at": (settings.get() or {}).get("updated_at")})

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def set_weights(self, site_id, payload, updated_by=None):
        weights = load_or_fail(WeightsSchema(), payload)
        saved = store.Settings(self.db, site_id).set_weights(weights, utcnow(), updated_by)
        return WeightsOutSchema().dump(dict(saved, site_id=site_id))

    # -- suggestions, matches, plans ---------------------------------------

    def _waiting_referral(self, site_id, referral_id):
        """The referral as matching knows it, scored as of today."""
        demand = store.Demand(self.db, site_id).get(referral_id)
        if demand is None or "accepted_at" not in demand:
            raise NotFound(f"No accepted referral {referral_id}.")
        return domain.with_pregnancy(demand, utcnow().date())

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def suggestions(self, site_id, referral_id, query=None):
        query = load_or_fail(SuggestionsQuerySchema(), query or {})
        demand = self._waiting_referral(site_id, referral_id)
        weights = store.Settings(self.db, site_id).weights()
        pool = self.pools.get(self.db, site_id)
        count, ranked = domain.suggest(demand, pool, weights, query["limit"])
        return SuggestionsSchema().dump({
            "referral_id": referral_id, "status": demand["status"], "candidates": count,
            "weights": weights, "suggestions": ranked})

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def confirm_match(self, site_id, payload, confirmed_by=None):
        """A coordinator confirms a volunteer for a referral (or, with
        ``propose``, asks the volunteer first). No transaction: three
        conditional single-document writes, each guarding one thing, in an
        order where a refusal undoes what came before and the event is
        written last, with the match itself."""
        form = load_or_fail(ConfirmMatchSchema(), payload)
        demand = self._waiting_referral(site_id, form["referral_id"])
        profiles = store.Profiles(self.db, site_id)
        volunteer = profiles.get(form["volunteer_id"])
        if volunteer is None:
            raise NotFound(f"No matching profile for volunteer {form['volunteer_id']}.")
        weights = store.Settings(self.db, site_id).weights()
        match, event = domain.confirm_match(demand, volunteer, weights, str(uuid.uuid4()),
                                            confirmed_by, utcnow(), form["propose"])
        demands, matches = store.Demand(self.db, site_id), store.Matches(self.db, site_id)
        # 1. The referral: one match at a time (waiting -> matched).
        if demands.claim(demand["_id"], match["_id"]) is None:
            raise Conflict("This referral already has a match (or is no longer waiting).",
                           {"referral_id": ["already matched"]})
        # 2. The place: only while active < capacity (and still matchable).
        if profiles.take_place(volunteer["_id"]) is None:
            demands.release(demand["_id"], match["_id"])
            raise Conflict("The volunteer has no place left (or is no longer "
                           "eligible).", {"volunteer_id": ["no capacity left"]})
        # 3. The match, with its event.
        try:
            matches.insert(match, [event])
        except DuplicateKeyError:
            profiles.free_place(volunteer["_id"])
            demands.release(demand["_id"], match["_id"])
            raise Conflict("This referral already has an open match.",
                           {"referral_id": ["already matched"]})
        except BaseException:
            profiles.free_place(volunteer["_id"])
            demands.release(demand["_id"], match["_id"])
            raise
        self._touch(site_id, volunteer["_id"])
        log.info("match proposed" if form["propose"] else "match confirmed",
                 extra=log_fields(match_id=match["_id"], referral_id=demand["_id"],
                                  site_id=site_id))
        return MatchSchema().dump(match)

    def _close_writes(self, site_id, match, changes, event, rematch, declined_by, session):
        closed = store.Matches(self.db, site_id, session).close(match["_id"], changes, [event])
        if closed is None:
            raise Conflict(f"Match {match['_id']} is no longer open.")
        store.Profiles(self.db, site_id, session).free_place(match["volunteer_id"])
        store.Demand(self.db, site_id, session).after_match(
            match["referral_id"], match["_id"], rematch, declined_by)

    def _close(self, site_id, match, changes, event, rematch, declined_by=None):
        store.atomically(self.db, lambda session: self._close_writes(
            site_id, match, changes, event, rematch, declined_by, session))
        self._touch(site_id, match["volunteer_id"])
        return MatchSchema().dump(dict(match, **changes))

    def _match(self, site_id, match_id):
        match = store.Matches(self.db, site_id).get(match_id)
        if match is None:
            raise NotFound(f"No match {match_id}.")
        return match

    def _volunteers_match(self, site_id, match_id, user_id):
        """The match, if ``user_id`` is the matched volunteer's login."""
        match = self._match(site_id, match_id)
        volunteer = store.Profiles(self.db, site_id).get(match["volunteer_id"])
        if not user_id or volunteer is None or volunteer.get("user_id") != user_id:
            raise NotFound(f"No match {match_id}.")   # not theirs: not told it exists
        return match

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def accept_match(self, site_id, match_id, payload, user_id):
        """The volunteer (the user their profile names) accepts a proposed
        match: it is confirmed, ``match.confirmed``."""
        load_or_fail(AcceptMatchSchema(), payload or {})
        match = self._volunteers_match(site_id, match_id, user_id)
        changes, event = domain.accept_match(match, user_id, utcnow())
        if store.Matches(self.db, site_id).accept(match["_id"], changes, [event]) is None:
            raise Conflict(f"Match {match_id} is no longer proposed.",
                           {"status": ["not proposed"]})
        log.info("match accepted", extra=log_fields(match_id=match_id, site_id=site_id))
        return MatchSchema().dump(dict(match, **changes))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def decline_match(self, site_id, match_id, payload, user_id):
        """The volunteer (the user their profile names) declines a proposed
        or open match; they are never put forward for that referral again."""
        form = load_or_fail(DeclineMatchSchema(), payload)
        match = self._volunteers_match(site_id, match_id, user_id)
        changes, event = domain.decline_match(match, form["reason"], utcnow())
        return self._close(site_id, match, changes, event, rematch=True,
                           declined_by=match["volunteer_id"])

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def end_match(self, site_id, match_id, payload):
        form = load_or_fail(EndMatchSchema(), payload)
        match = self._match(site_id, match_id)
        changes, event, rematch = domain.end_match(match, form["reason"], utcnow())
        return self._close(site_id, match, changes, event, rematch)

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def list_matches(self, site_id, query=None, user_id=None):
        """A site's matches; with ``user_id``, only that volunteer's."""
        query = load_or_fail(MatchesQuerySchema(), query or {})
        if user_id is not None:
            volunteer = store.Profiles(self.db, site_id).by_user(user_id)
            if volunteer is None:
                return []
            if query["volunteer_id"] not in (None, volunteer["_id"]):
                return []
            query["volunteer_id"] = volunteer["_id"]
        return MatchSchema(many=True).dump(store.Matches(self.db, site_id).search(query))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def match_plan(self, site_id, payload=None):
        form = load_or_fail(PlanRequestSchema(), payload or {})
        waiting = store.Demand(self.db, site_id).waiting(form["referral_ids"])
        if form["referral_ids"] is not None:
            missing = sorted(set(form["referral_ids"]) - {r["_id"] for r in waiting})
            if missing:
                raise ValidationFailed("Some referrals are not waiting for a match.",
                                       {"referral_ids": [f"not waiting: {r}"
                                                         for r in missing[:20]]})
        weights = store.Settings(self.db, site_id).weights()
        pool = self.pools.get(self.db, site_id)
        today = utcnow().date()
        waiting = [domain.with_pregnancy(demand, today) for demand in waiting]
        pairs, unmatched = domain.plan(waiting, pool, weights)
        counts = {"waiting": len(waiting), "volunteers": pool.count(),
                  "places": pool.places(), "weights": weights}
        return PlanSchema().dump(domain.plan_answer(site_id, pairs, unmatched, weights,
                                                    counts))
