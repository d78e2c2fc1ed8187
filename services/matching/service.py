"""The matching service: entrypoints only."""
import logging
import uuid

from nameko.rpc import rpc
from pymongo.errors import DuplicateKeyError

from services.matching import domain, store
from services.matching.schemas import (ConfirmMatchSchema, DeclineMatchSchema,
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

    # -- events in ---------------------------------------------------------

    @event_handler("training", "volunteer.eligibility_changed")
    def on_eligibility_changed(self, body):
        envelope, data = load_event(body, {"volunteer.eligibility_changed"})
        self.inbox.apply_once(envelope, lambda session: self._eligibility(
            envelope["siteid"], data, envelope["time"], session))

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

    # -- profiles and weights ----------------------------------------------

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def put_profile(self, site_id, volunteer_id, payload):
        form = load_or_fail(ProfileSchema(), payload)
        profile = store.Profiles(self.db, site_id).set_profile(
            volunteer_id, domain.profile_fields(form, utcnow()))
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
        demand = store.Demand(self.db, site_id).get(referral_id)
        if demand is None:
            raise NotFound(f"No accepted referral {referral_id}.")
        return demand

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def suggestions(self, site_id, referral_id, query=None):
        query = load_or_fail(SuggestionsQuerySchema(), query or {})
        demand = self._waiting_referral(site_id, referral_id)
        weights = store.Settings(self.db, site_id).weights()
        candidates = store.Profiles(self.db, site_id).candidates(demand)
        count, ranked = domain.suggest(demand, candidates, weights, query["limit"])
        return SuggestionsSchema().dump({
            "referral_id": referral_id, "status": demand["status"], "candidates": count,
            "weights": weights, "suggestions": ranked})

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def confirm_match(self, site_id, payload, confirmed_by=None):
        form = load_or_fail(ConfirmMatchSchema(), payload)
        demand = self._waiting_referral(site_id, form["referral_id"])
        volunteer = store.Profiles(self.db, site_id).get(form["volunteer_id"])
        if volunteer is None:
            raise NotFound(f"No matching profile for volunteer {form['volunteer_id']}.")
        weights = store.Settings(self.db, site_id).weights()
        match, event = domain.confirm_match(demand, volunteer, weights,
                                            str(uuid.uuid4()), confirmed_by, utcnow())

        def write(session):
            matches = store.Matches(self.db, site_id, session)
            try:
                matches.add(match)   # the unique index: one open match per referral
            except DuplicateKeyError:
                raise Conflict("This referral already has an open match.",
                               {"referral_id": ["already matched"]})
            if store.Profiles(self.db, site_id, session).take_place(
                    volunteer["_id"], [event]) is None:
                if session is None:
                    matches.remove(match["_id"])
                raise Conflict("The volunteer has no place left (or is no longer "
                               "eligible).", {"volunteer_id": ["no capacity left"]})
            store.Demand(self.db, site_id, session).mark_matched(demand["_id"], match["_id"])

        store.atomically(self.db, write)
        log.info("match confirmed", extra=log_fields(
            match_id=match["_id"], referral_id=demand["_id"], site_id=site_id))
        return MatchSchema().dump(match)

    def _close(self, site_id, match, changes, event, rematch):
        def write(session):
            closed = store.Matches(self.db, site_id, session).close(
                match["_id"], changes, [event])
            if closed is None:
                raise Conflict(f"Match {match['_id']} is no longer open.")
            store.Profiles(self.db, site_id, session).free_place(match["volunteer_id"])
            store.Demand(self.db, site_id, session).after_match(
                match["referral_id"], match["_id"], rematch)
        store.atomically(self.db, write)
        return MatchSchema().dump(dict(match, **changes))

    def _match(self, site_id, match_id):
        match = store.Matches(self.db, site_id).get(match_id)
        if match is None:
            raise NotFound(f"No match {match_id}.")
        return match

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def decline_match(self, site_id, match_id, payload, user_id):
        """The volunteer (the user their profile names) declines a match."""
        form = load_or_fail(DeclineMatchSchema(), payload)
        match = self._match(site_id, match_id)
        volunteer = store.Profiles(self.db, site_id).get(match["volunteer_id"])
        if not user_id or volunteer is None or volunteer.get("user_id") != user_id:
            raise NotFound(f"No match {match_id}.")   # not theirs: not told it exists
        changes, event = domain.decline_match(match, form["reason"], utcnow())
        return self._close(site_id, match, changes, event, rematch=True)

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
        volunteers = store.Profiles(self.db, site_id).candidates()
        pairs, unmatched = domain.plan(waiting, volunteers, weights)
        counts = {"waiting": len(waiting), "volunteers": len(volunteers),
                  "places": sum(v["capacity"] - v["active"] for v in volunteers),
                  "weights": weights}
        return PlanSchema().dump(domain.plan_answer(site_id, pairs, unmatched, weights,
                                                    counts))
