"""The journeys service: entrypoints only."""
import logging
import uuid

from nameko.rpc import rpc
from pymongo.errors import DuplicateKeyError

from services.journeys import domain, instruments, store
from services.journeys.schemas import (ContactSchema, EndJourneySchema, GoalReviewSchema,
                                       GoalSchema, InstrumentSchema, JourneyDetailSchema,
                                       JourneyQuerySchema, JourneySchema, NewContactSchema,
                                       NewGoalSchema, OutcomeMeasureSchema, OutcomeSchema,
                                       VolunteerHoursQuerySchema, VolunteerHoursSchema)
from shared.crypto import Encryption
from shared.errors import DOMAIN_ERRORS, Conflict, NotFound
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


def _field(journey_id, kind, record_id, name):
    """What an encrypted value is bound to: moved elsewhere, it fails to open."""
    return f"journey:{journey_id}:{kind}:{record_id}:{name}"


class JourneysService(ServiceBase):
    name = "journeys"

    db = Database(prepare=store.ensure_indexes)
    outbox = Outbox(store.JOURNEYS, store.CONTACTS, store.GOALS, store.OUTCOMES)
    inbox = Inbox()
    cipher = Encryption()

    # -- events in ---------------------------------------------------------

    @event_handler("matching", "match.confirmed")
    def on_match_confirmed(self, body):
        envelope, data = load_event(body, {"match.confirmed"})
        self.inbox.apply_once(envelope, lambda session: self._open(
            envelope["siteid"], data, session))

    def _open(self, site_id, data, session):
        journeys = store.Journeys(self.db, site_id, session)
        if journeys.by_match(data["match_id"]) is not None:
            return   # already open (the same match confirmed twice)
        if store.ClosedMatches(self.db, site_id, session).has(data["match_id"]):
            log.info("match ended before it was confirmed here; no journey",
                     extra=log_fields(match_id=data["match_id"], site_id=site_id))
            return
        journey, event = domain.open_journey(site_id, str(uuid.uuid4()), data, utcnow())
        journeys.add(journey, [event])
        log.info("journey started", extra=log_fields(
            journey_id=journey["_id"], match_id=data["match_id"], site_id=site_id))

    @event_handler("matching", "match.ended")
    def on_match_ended(self, body):
        envelope, data = load_event(body, {"match.ended"})
        reason = domain.end_reason_for_match(data["reason"], data["rematch"])
        self.inbox.apply_once(envelope, lambda session: self._close_for_match(
            envelope["siteid"], data["match_id"], reason, envelope["time"], session))

    @event_handler("matching", "match.declined")
    def on_match_declined(self, body):
        """A volunteer may decline a match already confirmed: its journey ends."""
        envelope, data = load_event(body, {"match.declined"})
        self.inbox.apply_once(envelope, lambda session: self._close_for_match(
            envelope["siteid"], data["match_id"], "rematched", envelope["time"], session))

    def _close_for_match(self, site_id, match_id, reason, when, session):
        journeys = store.Journeys(self.db, site_id, session)
        journey = journeys.by_match(match_id)
        if journey is None:
            store.ClosedMatches(self.db, site_id, session).remember(match_id, reason, when)
            return
        if journey["status"] != domain.OPEN:
            return
        changes, event = domain.end_journey(journey, reason, None, when)
        journeys.close(journey["_id"], changes, [event])

    # -- journeys ------------------------------------------------------------

    def _journey(self, site_id, journey_id, user_id=None):
        """The journey, if the caller may reach it: a coordinator (no
        ``user_id``) any of the site's; a volunteer only theirs. Otherwise
        'not found', so nobody learns which journeys exist."""
        journey = store.Journeys(self.db, site_id).get(journey_id)
        if journey is None or (user_id is not None
                               and journey.get("volunteer_user_id") != user_id):
            raise NotFound(f"No journey {journey_id}.")
        return journey

    def _open_text(self, site_id, field, token):
        return self.cipher.decrypt(site_id, field, token)

    def _detail(self, site_id, journey):
        journey_id = journey["_id"]
        contacts = store.Contacts(self.db, site_id).of(journey_id)
        goals = store.Goals(self.db, site_id).of(journey_id)
        outcomes = store.Outcomes(self.db, site_id).of(journey_id)
        return JourneyDetailSchema().dump(dict(
            journey, totals=domain.contact_totals(contacts),
            contacts=[self._contact_view(site_id, c) for c in contacts],
            goals=[self._goal_view(site_id, g) for g in goals],
            outcomes=[self._outcome_view(site_id, o) for o in outcomes]))

    def _contact_view(self, site_id, contact):
        return dict(contact, notes=self._open_text(
            site_id, _field(contact["journey_id"], "contact", contact["_id"], "notes"),
            contact["notes"]))

    def _goal_view(self, site_id, goal):
        journey_id, goal_id = goal["journey_id"], goal["_id"]
        reviews = [dict(review, note=self._open_text(
            site_id, _field(journey_id, "goal", goal_id, f"review:{review['id']}:note"),
            review["note"])) for review in goal.get("reviews", [])]
        return dict(goal, reviews=reviews, words=self._open_text(
            site_id, _field(journey_id, "goal", goal_id, "words"), goal["words"]))

    def _outcome_view(self, site_id, outcome):
        opened = {name: self._open_text(site_id, _field(
            outcome["journey_id"], "outcome", outcome["_id"], name), outcome[name])
            for name in ("answers", "item_scores")}
        return dict(outcome, **opened)

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def get_journey(self, site_id, journey_id, user_id=None):
        return self._detail(site_id, self._journey(site_id, journey_id, user_id))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def list_journeys(self, site_id, query=None, user_id=None):
        """A site's journeys with their contact totals; with ``user_id``,
        only that volunteer's."""
        query = load_or_fail(JourneyQuerySchema(), query or {})
        rows = store.Journeys(self.db, site_id).search(query, user_id)
        totals = store.Contacts(self.db, site_id).totals([r["_id"] for r in rows])
        return JourneySchema(many=True).dump([
            dict(row, totals=domain.summary_totals(*totals.get(row["_id"], (0, 0, 0))))
            for row in rows])

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def volunteer_hours(self, site_id, query=None, user_id=None):
        """Contacts and hours per volunteer over a period; with ``user_id``,
        only the volunteers that user's journeys name (their own)."""
        query = load_or_fail(VolunteerHoursQuerySchema(), query or {})
        domain.check_period(query)
        volunteer_ids = None
        if user_id is not None:
            volunteer_ids = store.Journeys(self.db, site_id).volunteers_of_user(user_id)
        wanted = query["volunteer_id"]
        if wanted is not None:
            volunteer_ids = ([wanted] if volunteer_ids is None
                             else [v for v in volunteer_ids if v == wanted])
        rows = store.Contacts(self.db, site_id).hours(
            query["from"] and query["from"].isoformat(),
            query["to"] and query["to"].isoformat(), volunteer_ids)
        return VolunteerHoursSchema(many=True).dump(domain.volunteer_hours(rows))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def end_journey(self, site_id, journey_id, payload, ended_by=None):
        form = load_or_fail(EndJourneySchema(), payload)
        journey = self._journey(site_id, journey_id)
        changes, event = domain.end_journey(journey, form["reason"], ended_by, utcnow())
        if store.Journeys(self.db, site_id).close(journey_id, changes, [event]) is None:
            raise Conflict(f"Journey {journey_id} has ended already.")
        log.info("journey ended", extra=log_fields(
            journey_id=journey_id, site_id=site_id, reason=form["reason"]))
        return self._detail(site_id, dict(journey, **changes))

    # -- contacts, goals, outcome measures -----------------------------------

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def log_contact(self, site_id, journey_id, payload, actor_id, actor_role,
                    user_id=None):
        """A contact on a journey; a volunteer (``user_id``) only on their own."""
        form = load_or_fail(NewContactSchema(), payload)
        journey = self._journey(site_id, journey_id, user_id)
        contact_id, now = str(uuid.uuid4()), utcnow()
        notes = self.cipher.encrypt(site_id, _field(journey_id, "contact", contact_id,
                                                    "notes"), form["notes"])
        contact, event = domain.new_contact(journey, form, contact_id, actor_id,
                                            _role(actor_role), notes, now.date(), now)
        store.Contacts(self.db, site_id).add(contact, [event])
        return ContactSchema().dump(dict(contact, notes=form["notes"]))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def set_goal(self, site_id, journey_id, payload, actor_id, user_id=None):
        form = load_or_fail(NewGoalSchema(), payload)
        journey = self._journey(site_id, journey_id, user_id)
        goal_id, now = str(uuid.uuid4()), utcnow()
        words = self.cipher.encrypt(site_id, _field(journey_id, "goal", goal_id, "words"),
                                    form["words"])
        goal, event = domain.new_goal(journey, form, goal_id, actor_id, words,
                                      now.date(), now)
        store.Goals(self.db, site_id).add(goal, [event])
        return GoalSchema().dump(dict(goal, words=form["words"]))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def review_goal(self, site_id, journey_id, goal_id, payload, actor_id, user_id=None):
        form = load_or_fail(GoalReviewSchema(), payload)
        journey = self._journey(site_id, journey_id, user_id)
        goals = store.Goals(self.db, site_id)
        goal = goals.get(journey_id, goal_id)
        if goal is None:
            raise NotFound(f"No goal {goal_id} on journey {journey_id}.")
        review_id, now = str(uuid.uuid4()), utcnow()
        note = self.cipher.encrypt(site_id, _field(journey_id, "goal", goal_id,
                                                   f"review:{review_id}:note"), form["note"])
        changes, review, event = domain.review_goal(journey, goal, form, review_id,
                                                    actor_id, note, now.date(), now)
        updated = goals.review(goal_id, changes, review, [event])
        return GoalSchema().dump(self._goal_view(site_id, updated))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def record_outcome(self, site_id, journey_id, payload, licensed_measures, actor_id,
                       user_id=None):
        """An outcome measure, scored here; only a measure the site holds the
        licence for (``licensed_measures``, the site's setting)."""
        form = load_or_fail(OutcomeMeasureSchema(), payload,
                            "Some answers are missing or out of range.")
        journey = self._journey(site_id, journey_id, user_id)
        outcome_id, now = str(uuid.uuid4()), utcnow()

        def seal(name, value):
            return self.cipher.encrypt(site_id, _field(journey_id, "outcome", outcome_id,
                                                       name), value)

        outcome, event = domain.record_outcome(journey, form, outcome_id, actor_id,
                                               licensed_measures, seal, now.date(), now)
        try:
            store.Outcomes(self.db, site_id).add(outcome, [event])
        except DuplicateKeyError:
            raise Conflict(f"A {form['time_point']} {form['instrument'].upper()} is "
                           "already recorded on this journey.",
                           {"time_point": [f"{form['time_point']} already recorded for "
                                           f"{form['instrument']}"]})
        log.info("outcome recorded", extra=log_fields(
            journey_id=journey_id, outcome_id=outcome_id, site_id=site_id,
            instrument=form["instrument"], self_harm_risk=outcome["self_harm_risk"]))
        return OutcomeSchema().dump(self._outcome_view(site_id, outcome))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def list_instruments(self, licensed_measures=None):
        return InstrumentSchema(many=True).dump(instruments.describe(licensed_measures))


def _role(actor_role):
    return domain.VOLUNTEER if actor_role == "volunteer" else domain.COORDINATOR
