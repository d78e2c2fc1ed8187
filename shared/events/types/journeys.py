"""Events the journeys service raises.

Ids, dates, modes, durations, categories, statuses and scores only: never
notes, the parent's own words or the item answers themselves.
"""
from marshmallow import fields, validate

from shared.events.catalogue import EventData, event_type

CONTACT_MODES = ("home_visit", "group", "video", "phone", "text", "hospital",
                 "birth_support")
GOAL_CATEGORIES = ("wellbeing", "confidence", "feeding", "bonding", "social",
                   "health", "practical", "other")
GOAL_STATUSES = ("set", "in_progress", "achieved", "changed")
INSTRUMENTS = ("wemwbs", "swemwbs", "hads", "epds")
TIME_POINTS = ("baseline", "review", "exit")
HADS_BANDS = ("normal", "borderline", "abnormal")
JOURNEY_END_REASONS = ("completed", "parent_ended", "moved_away", "no_contact",
                       "rematched", "safeguarding", "other")


class _JourneyFacts(EventData):
    journey_id = fields.String(required=True)
    referral_id = fields.String(required=True)
    volunteer_id = fields.String(required=True)


@event_type("journey.started", 1, "journeys",
            "A journey of support opened on a confirmed match.")
class JourneyStartedV1(_JourneyFacts):
    match_id = fields.String(required=True)
    started_at = fields.String(required=True)


@event_type("contact.logged", 1, "journeys",
            "A contact with the parent was logged (no notes in the event).")
class ContactLoggedV1(_JourneyFacts):
    contact_id = fields.String(required=True)
    date = fields.String(required=True, metadata={"description": "YYYY-MM-DD"})
    mode = fields.String(required=True, validate=validate.OneOf(CONTACT_MODES))
    duration_minutes = fields.Integer(required=True, validate=validate.Range(min=1, max=24 * 60))
    logged_by_role = fields.String(load_default=None, allow_none=True)
    made_by = fields.String(
        load_default="volunteer", validate=validate.OneOf(("volunteer", "coordinator")),
        metadata={"description": "who had the contact: the volunteer's count as "
                                 "volunteer hours"})


@event_type("goal.set", 1, "journeys",
            "A goal was set (its words stay in the journeys service).")
class GoalSetV1(_JourneyFacts):
    goal_id = fields.String(required=True)
    category = fields.String(required=True, validate=validate.OneOf(GOAL_CATEGORIES))
    set_on = fields.String(required=True, metadata={"description": "YYYY-MM-DD"})


@event_type("goal.reviewed", 1, "journeys", "A goal was reviewed; its status now.")
class GoalReviewedV1(_JourneyFacts):
    goal_id = fields.String(required=True)
    category = fields.String(required=True, validate=validate.OneOf(GOAL_CATEGORIES))
    status = fields.String(required=True, validate=validate.OneOf(GOAL_STATUSES))
    reviewed_on = fields.String(required=True, metadata={"description": "YYYY-MM-DD"})


@event_type("outcome.recorded", 1, "journeys",
            "An outcome measure was recorded and scored by the service (the "
            "answers stay in the journeys service). ``self_harm_risk``: EPDS "
            "item 10 scored above 0; referrals raises a safeguarding concern.")
class OutcomeRecordedV1(_JourneyFacts):
    outcome_id = fields.String(required=True)
    instrument = fields.String(required=True, validate=validate.OneOf(INSTRUMENTS))
    time_point = fields.String(required=True, validate=validate.OneOf(TIME_POINTS))
    recorded_on = fields.String(required=True, metadata={"description": "YYYY-MM-DD"})
    scores = fields.Dict(keys=fields.String(), values=fields.Float(), required=True,
                         metadata={"description": "wemwbs: {total}; swemwbs: {raw, "
                                   "metric}; hads: {anxiety, depression}; epds: {total}"})
    bands = fields.Dict(keys=fields.String(),
                        values=fields.String(validate=validate.OneOf(HADS_BANDS)),
                        load_default=dict,
                        metadata={"description": "hads: {anxiety, depression} each "
                                  "normal, borderline or abnormal"})
    flags = fields.List(fields.String(), load_default=list,
                        metadata={"description": "e.g. possible_depression, "
                                  "hads_anxiety_abnormal, self_harm_risk"})
    self_harm_risk = fields.Boolean(load_default=False)


@event_type("journey.ended", 1, "journeys", "A journey ended, with a reason.")
class JourneyEndedV1(_JourneyFacts):
    reason = fields.String(required=True, validate=validate.OneOf(JOURNEY_END_REASONS))
    ended_at = fields.String(required=True)
