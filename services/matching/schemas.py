"""Payloads of the matching service's RPC entrypoints (and the gateway's
matching endpoints, which check input with these same schemas)."""
from marshmallow import (Schema, ValidationError, fields, post_load,
                         pre_load, validate, validates_schema)

from services.matching.domain import COMPONENTS, DAYS, DEFAULT_WEIGHTS
from shared.events.catalogue import LANGUAGE_TAG, POSTCODE_DISTRICT
from shared.events.types.matching import MATCH_DECLINE_REASONS, MATCH_END_REASONS
from shared.events.types.referrals import NEEDS, SUPPORT_MODES
from shared.validation import Strict

ID = validate.Length(min=1, max=100)


def _choices(values, **kwargs):
    return fields.List(fields.String(validate=validate.OneOf(values)), **kwargs)


class ProfileSchema(Strict):
    """A volunteer's matching profile, set by a coordinator (whole, by PUT)."""
    languages = fields.List(
        fields.String(validate=validate.Regexp(
            LANGUAGE_TAG, error="Must be a language tag, e.g. 'en' or 'pl'.")),
        required=True, validate=validate.Length(min=1, max=20))
    districts = fields.List(
        fields.String(validate=validate.Regexp(
            POSTCODE_DISTRICT, error="Must be a UK postcode district, e.g. 'CM1'.")),
        required=True, validate=validate.Length(min=1, max=100),
        metadata={"description": "postcode districts covered, e.g. ['CM1', 'CM2']"})
    lived_experience = _choices(NEEDS, load_default=list,
                                validate=validate.Length(max=len(NEEDS)))
    support_modes = _choices(SUPPORT_MODES, required=True,
                             validate=validate.Length(min=1, max=len(SUPPORT_MODES)))
    capacity = fields.Integer(required=True, strict=True,
                              validate=validate.Range(min=1, max=10),
                              metadata={"description": "parents at once"})
    birth_buddy = fields.Boolean(load_default=False)
    available_days = _choices(DAYS, load_default=list, validate=validate.Length(max=7))
    user_id = fields.String(load_default=None, allow_none=True, validate=ID,
                            metadata={"description": "the volunteer's user account, "
                                                     "who may decline their matches"})

    @pre_load
    def _upper_case_districts(self, data, **kwargs):
        districts = data.get("districts") if isinstance(data, dict) else None
        if isinstance(districts, list):
            data = dict(data, districts=[d.strip().upper() if isinstance(d, str) else d
                                         for d in districts])
        return data

    @post_load
    def _normalise(self, loaded, **kwargs):
        for name in ("languages", "districts", "lived_experience", "support_modes"):
            loaded[name] = sorted(set(loaded[name]))
        loaded["available_days"] = [d for d in DAYS if d in set(loaded["available_days"])]
        return loaded


class ProfileOutSchema(Schema):
    volunteer_id = fields.String()
    site_id = fields.String()
    has_profile = fields.Boolean()
    languages = fields.List(fields.String())
    districts = fields.List(fields.String())
    lived_experience = fields.List(fields.String())
    support_modes = fields.List(fields.String())
    capacity = fields.Integer()
    active = fields.Integer()
    birth_buddy = fields.Boolean()
    available_days = fields.List(fields.String())
    user_id = fields.String(allow_none=True)
    eligible = fields.Boolean()
    eligibility_reasons = fields.List(fields.String())
    eligibility_as_of = fields.DateTime(allow_none=True)
    left = fields.Boolean()
    matchable = fields.Boolean()
    updated_at = fields.DateTime(allow_none=True)


class WeightsSchema(Strict):
    """The site's score weights, each 0..10; at least one above 0 (birth
    buddy and availability, added later, default to 1 and 0.5)."""
    area = fields.Float(required=True, validate=validate.Range(min=0, max=10))
    language = fields.Float(required=True, validate=validate.Range(min=0, max=10))
    shared_experience = fields.Float(required=True, validate=validate.Range(min=0, max=10))
    modes = fields.Float(required=True, validate=validate.Range(min=0, max=10))
    load = fields.Float(required=True, validate=validate.Range(min=0, max=10))
    birth_buddy = fields.Float(load_default=DEFAULT_WEIGHTS["birth_buddy"],
                               validate=validate.Range(min=0, max=10),
                               metadata={"description": "counts for pregnant parents only"})
    availability = fields.Float(load_default=DEFAULT_WEIGHTS["availability"],
                                validate=validate.Range(min=0, max=10),
                                metadata={"description": "days a week the volunteer "
                                                         "can give, full at three"})

    @validates_schema
    def _some_weight(self, data, **kwargs):
        if all(name in data for name in COMPONENTS) and not any(
                data[name] > 0 for name in COMPONENTS):
            raise ValidationError("At least one weight must be above 0.", "_schema")


class WeightsOutSchema(Schema):
    site_id = fields.String()
    weights = fields.Dict(keys=fields.String(), values=fields.Float())
    updated_at = fields.DateTime(allow_none=True)


class SuggestionsQuerySchema(Strict):
    limit = fields.Integer(load_default=10, validate=validate.Range(min=1, max=100))


class ComponentSchema(Schema):
    value = fields.Float(allow_none=True,
                         metadata={"description": "0..1; null when it does not apply"})
    weight = fields.Float()
    points = fields.Float()
    applies = fields.Boolean(metadata={"description": "birth buddy applies to pregnant "
                                                     "parents only"})


class SuggestionSchema(Schema):
    volunteer_id = fields.String()
    score = fields.Float()
    breakdown = fields.Dict(keys=fields.String(), values=fields.Nested(ComponentSchema))
    hard_rules = fields.Dict(keys=fields.String(), values=fields.String())
    active = fields.Integer()
    capacity = fields.Integer()
    birth_buddy = fields.Boolean()
    available_days = fields.List(fields.String())


class SuggestionsSchema(Schema):
    referral_id = fields.String()
    status = fields.String()
    candidates = fields.Integer(metadata={"description": "volunteers passing every hard rule"})
    weights = fields.Dict(keys=fields.String(), values=fields.Float())
    suggestions = fields.List(fields.Nested(SuggestionSchema))


class ConfirmMatchSchema(Strict):
    referral_id = fields.String(required=True, validate=ID)
    volunteer_id = fields.String(required=True, validate=ID)
    propose = fields.Boolean(load_default=False, metadata={
        "description": "true: ask the volunteer first (the match is proposed and "
                       "holds a place until they accept or decline)"})


class AcceptMatchSchema(Strict):
    """The volunteer accepts a proposed match (no fields)."""


class DeclineMatchSchema(Strict):
    reason = fields.String(load_default="not_stated",
                           validate=validate.OneOf(MATCH_DECLINE_REASONS))


class EndMatchSchema(Strict):
    reason = fields.String(required=True, validate=validate.OneOf(MATCH_END_REASONS))


class MatchesQuerySchema(Strict):
    status = fields.String(load_default=None,
                           validate=validate.OneOf(("proposed", "open", "declined", "ended")))
    volunteer_id = fields.String(load_default=None, validate=ID)
    referral_id = fields.String(load_default=None, validate=ID)
    needs_rematch = fields.Boolean(load_default=None)
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))


class MatchSchema(Schema):
    id = fields.String(attribute="_id")
    site_id = fields.String()
    referral_id = fields.String()
    volunteer_id = fields.String()
    status = fields.String()
    score = fields.Float()
    breakdown = fields.Dict(keys=fields.String(), values=fields.Nested(ComponentSchema))
    needs_rematch = fields.Boolean()
    rematch_reason = fields.String(allow_none=True)
    confirmed_by = fields.String(allow_none=True,
                                 metadata={"description": "the coordinator who made it"})
    proposed_at = fields.DateTime(allow_none=True)
    confirmed_at = fields.DateTime(allow_none=True)
    closed_at = fields.DateTime(allow_none=True)
    close_reason = fields.String(allow_none=True)


class PlanRequestSchema(Strict):
    """``{}`` plans the whole waiting list; ``referral_ids`` a part of it."""
    referral_ids = fields.List(fields.String(validate=ID), load_default=None,
                               validate=validate.Length(min=1, max=2000))


class PlannedPairSchema(Schema):
    referral_id = fields.String()
    volunteer_id = fields.String()
    score = fields.Float()
    breakdown = fields.Dict(keys=fields.String(), values=fields.Nested(ComponentSchema))
    place = fields.Integer(metadata={"description": "1 for the volunteer's first new "
                                                    "parent in this plan, 2 for the next"})


class PlanSchema(Schema):
    site_id = fields.String()
    waiting = fields.Integer()
    volunteers = fields.Integer()
    places = fields.Integer()
    total_score = fields.Float()
    pairs = fields.List(fields.Nested(PlannedPairSchema))
    unmatched = fields.List(fields.String())
    weights = fields.Dict(keys=fields.String(), values=fields.Float())
