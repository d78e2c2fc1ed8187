"""Payloads of the journeys service's RPC entrypoints (and the gateway's
journeys endpoints, which check input with these same schemas)."""
from marshmallow import (Schema, ValidationError, fields, validate,
                         validates_schema)

from services.journeys import instruments
from services.journeys.domain import CONTACT_MADE_BY
from shared.events.types.journeys import (CONTACT_MODES, GOAL_CATEGORIES, GOAL_STATUSES,
                                          INSTRUMENTS, JOURNEY_END_REASONS, TIME_POINTS)
from shared.validation import Strict

ID = validate.Length(min=1, max=100)


class JourneyQuerySchema(Strict):
    status = fields.String(load_default=None, validate=validate.OneOf(("open", "ended")))
    volunteer_id = fields.String(load_default=None, validate=ID)
    referral_id = fields.String(load_default=None, validate=ID)
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))


class VolunteerHoursQuerySchema(Strict):
    from_ = fields.Date(data_key="from", attribute="from", load_default=None,
                        metadata={"description": "first day counted (YYYY-MM-DD)"})
    to = fields.Date(load_default=None, metadata={"description": "last day counted"})
    volunteer_id = fields.String(load_default=None, validate=ID)


class EndJourneySchema(Strict):
    reason = fields.String(required=True, validate=validate.OneOf(JOURNEY_END_REASONS))


class NewContactSchema(Strict):
    date = fields.Date(required=True, metadata={"description": "YYYY-MM-DD"})
    mode = fields.String(required=True, validate=validate.OneOf(CONTACT_MODES))
    duration_minutes = fields.Integer(required=True, strict=True,
                                      validate=validate.Range(min=1, max=24 * 60))
    made_by = fields.String(
        load_default=None, allow_none=True, validate=validate.OneOf(CONTACT_MADE_BY),
        metadata={"description": "who had the contact: the volunteer (default; "
                                 "a coordinator may log it on their behalf) or the "
                                 "coordinator"})
    notes = fields.String(load_default=None, allow_none=True,
                          validate=validate.Length(max=5000),
                          metadata={"description": "encrypted at rest"})


class NewGoalSchema(Strict):
    words = fields.String(required=True, validate=validate.Length(min=1, max=1000),
                          metadata={"description": "the parent's own words "
                                                   "(encrypted at rest)"})
    category = fields.String(required=True, validate=validate.OneOf(GOAL_CATEGORIES))
    set_on = fields.Date(load_default=None, allow_none=True,
                         metadata={"description": "YYYY-MM-DD; today if absent"})
    target_date = fields.Date(load_default=None, allow_none=True)


class GoalReviewSchema(Strict):
    status = fields.String(required=True, validate=validate.OneOf(GOAL_STATUSES))
    reviewed_on = fields.Date(load_default=None, allow_none=True,
                              metadata={"description": "YYYY-MM-DD; today if absent"})
    note = fields.String(load_default=None, allow_none=True,
                         validate=validate.Length(max=5000),
                         metadata={"description": "encrypted at rest"})


class OutcomeMeasureSchema(Strict):
    instrument = fields.String(required=True, validate=validate.OneOf(INSTRUMENTS))
    time_point = fields.String(required=True, validate=validate.OneOf(TIME_POINTS))
    recorded_on = fields.Date(load_default=None, allow_none=True,
                              metadata={"description": "YYYY-MM-DD; today if absent"})
    answers = fields.List(
        fields.Raw(allow_none=True), required=True,
        metadata={"description": "one per item, in order: the position of the option "
                                 "chosen as printed on the form, 0 for the first"})

    @validates_schema(skip_on_field_errors=False)
    def _answers_in_range(self, data, **kwargs):
        if data.get("instrument") in instruments.INSTRUMENTS and "answers" in data:
            errors = instruments.answer_errors(data["instrument"], data["answers"])
            if errors:
                raise ValidationError(errors)


# -- answers --------------------------------------------------------------------


class TotalsSchema(Schema):
    contacts = fields.Integer()
    minutes = fields.Integer()
    hours = fields.Float()
    volunteer_minutes = fields.Integer()
    volunteer_hours = fields.Float()
    by_mode = fields.Dict(keys=fields.String(), values=fields.Dict())
    first_contact_on = fields.String(allow_none=True)
    last_contact_on = fields.String(allow_none=True)


class VolunteerHoursSchema(TotalsSchema):
    volunteer_id = fields.String()


class JourneySchema(Schema):
    id = fields.String(attribute="_id")
    site_id = fields.String()
    match_id = fields.String()
    referral_id = fields.String()
    volunteer_id = fields.String()
    volunteer_user_id = fields.String(allow_none=True)
    status = fields.String()
    started_at = fields.DateTime()
    ended_at = fields.DateTime(allow_none=True)
    end_reason = fields.String(allow_none=True)
    ended_by = fields.String(allow_none=True)
    totals = fields.Nested(TotalsSchema)


class ContactSchema(Schema):
    id = fields.String(attribute="_id")
    journey_id = fields.String()
    date = fields.String()
    mode = fields.String()
    duration_minutes = fields.Integer()
    made_by = fields.String()
    notes = fields.String(allow_none=True)
    logged_by = fields.String(allow_none=True)
    logged_by_role = fields.String(allow_none=True)
    logged_at = fields.DateTime()


class GoalReviewOutSchema(Schema):
    id = fields.String()
    status = fields.String()
    reviewed_on = fields.String()
    note = fields.String(allow_none=True)
    reviewed_by = fields.String(allow_none=True)
    recorded_at = fields.DateTime()


class GoalSchema(Schema):
    id = fields.String(attribute="_id")
    journey_id = fields.String()
    words = fields.String()
    category = fields.String()
    status = fields.String()
    set_on = fields.String()
    target_date = fields.String(allow_none=True)
    achieved_on = fields.String(allow_none=True)
    set_by = fields.String(allow_none=True)
    reviews = fields.List(fields.Nested(GoalReviewOutSchema))


class OutcomeSchema(Schema):
    id = fields.String(attribute="_id")
    journey_id = fields.String()
    instrument = fields.String()
    time_point = fields.String()
    recorded_on = fields.String()
    answers = fields.List(fields.Integer())
    item_scores = fields.List(fields.Integer())
    scores = fields.Dict(keys=fields.String(), values=fields.Float())
    bands = fields.Dict(keys=fields.String(), values=fields.String())
    flags = fields.List(fields.String())
    self_harm_risk = fields.Boolean()
    recorded_by = fields.String(allow_none=True)
    recorded_at = fields.DateTime()


class JourneyDetailSchema(JourneySchema):
    contacts = fields.List(fields.Nested(ContactSchema))
    goals = fields.List(fields.Nested(GoalSchema))
    outcomes = fields.List(fields.Nested(OutcomeSchema))


class InstrumentSchema(Schema):
    instrument = fields.String()
    name = fields.String()
    description = fields.String()
    items = fields.Integer()
    options_per_item = fields.List(fields.Integer())
    licensed = fields.Boolean()
