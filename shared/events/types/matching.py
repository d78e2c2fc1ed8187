"""Events the matching service raises.

Ids, scores and reason codes only: never a parent's or a volunteer's name,
contact details or free text.
"""
from marshmallow import fields, validate

from shared.events.catalogue import EventData, event_type

# Why a volunteer declined a match they were given.
MATCH_DECLINE_REASONS = ("no_capacity", "not_a_good_fit", "conflict_of_interest",
                         "unavailable", "not_stated")
# Why a match ended. The first group puts the parent back on the waiting list.
MATCH_REMATCH_REASONS = ("volunteer_unavailable", "volunteer_left",
                         "volunteer_not_eligible", "relationship_breakdown")
MATCH_END_REASONS = ("completed", "parent_ended", "parent_moved",
                     "safeguarding", "other") + MATCH_REMATCH_REASONS


@event_type("match.proposed", 1, "matching",
            "A coordinator proposed a volunteer for an accepted referral; the "
            "volunteer is asked to accept (the match holds one of their places).")
class MatchProposedV1(EventData):
    match_id = fields.String(required=True)
    referral_id = fields.String(required=True)
    volunteer_id = fields.String(required=True)
    volunteer_user_id = fields.String(
        load_default=None, allow_none=True,
        metadata={"description": "the volunteer's login, if they have one "
                                 "(messaging tells them)"})
    proposed_at = fields.String(required=True)


@event_type("match.confirmed", 1, "matching",
            "A volunteer is matched to an accepted referral: confirmed by a "
            "coordinator at once, or accepted by the volunteer after a proposal.")
class MatchConfirmedV1(EventData):
    match_id = fields.String(required=True)
    referral_id = fields.String(required=True)
    volunteer_id = fields.String(required=True)
    volunteer_user_id = fields.String(
        load_default=None, allow_none=True,
        metadata={"description": "the volunteer's login, if they have one "
                                 "(journeys lets them log their own contacts)"})
    score = fields.Float(required=True, validate=validate.Range(min=0, max=1),
                         metadata={"description": "weighted score, 0..1, when confirmed"})
    confirmed_at = fields.String(required=True)


@event_type("match.declined", 1, "matching",
            "The volunteer declined a match; the referral waits for another.")
class MatchDeclinedV1(EventData):
    match_id = fields.String(required=True)
    referral_id = fields.String(required=True)
    volunteer_id = fields.String(required=True)
    reason = fields.String(required=True,
                           validate=validate.OneOf(MATCH_DECLINE_REASONS))
    declined_at = fields.String(required=True)


@event_type("match.ended", 1, "matching",
            "A match ended, with a reason from a list; ``rematch`` says whether "
            "the referral went back to the waiting list.")
class MatchEndedV1(EventData):
    match_id = fields.String(required=True)
    referral_id = fields.String(required=True)
    volunteer_id = fields.String(required=True)
    reason = fields.String(required=True, validate=validate.OneOf(MATCH_END_REASONS))
    rematch = fields.Boolean(required=True)
    ended_at = fields.String(required=True)
