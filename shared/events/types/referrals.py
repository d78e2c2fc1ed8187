"""Events the referrals service raises.

Data minimisation: ids and facts only (area = postcode district, language,
due month, needs, source); never names, contact details or free text.
"""
from marshmallow import fields, validate

from shared.events.catalogue import (LANGUAGE_TAG, MONTH, POSTCODE_DISTRICT,
                                     REFERRAL_SOURCES, EventData, event_type)

# The referral form's fixed vocabularies (matching's profiles use NEEDS as
# lived experience and SUPPORT_MODES as modes offered).
NEEDS = ("isolation", "low_mood", "anxiety", "teenage_parent", "care_leaver",
         "asylum_seeker_or_refugee", "disability", "previous_birth_trauma",
         "feeding_worries")
SUPPORT_MODES = ("home_visit", "group", "video", "phone")
DECLINE_REASONS = ("not_eligible", "needs_exceed_service", "already_supported",
                   "parent_declined", "unable_to_contact", "other")
CLOSE_REASONS = ("completed", "parent_ended", "moved_away", "no_contact",
                 "referred_on", "safeguarding", "other")
SEVERITIES = ("low", "medium", "high", "urgent")


@event_type("referral.received", 1, "referrals",
            "A parent was referred (or referred themselves) to a site.")
class ReferralReceivedV1(EventData):
    referral_id = fields.String(required=True)
    source = fields.String(required=True,
                           validate=validate.OneOf(REFERRAL_SOURCES))
    preferred_language = fields.String(
        required=True, validate=validate.Regexp(LANGUAGE_TAG))
    area = fields.String(required=True,
                         validate=validate.Regexp(POSTCODE_DISTRICT),
                         metadata={"description": "postcode district"})
    due_month = fields.String(load_default=None, allow_none=True,
                              validate=validate.Regexp(MONTH))
    received_at = fields.String(required=True)
    triage_due_at = fields.String(
        load_default=None, allow_none=True,
        metadata={"description": "received_at + the site's triage target (days)"})


@event_type("referral.accepted", 1, "referrals",
            "A coordinator accepted a referral: demand for matching, with "
            "only what matching needs.")
class ReferralAcceptedV1(EventData):
    referral_id = fields.String(required=True)
    preferred_language = fields.String(
        required=True, validate=validate.Regexp(LANGUAGE_TAG))
    interpreter_needed = fields.Boolean(required=True)
    area = fields.String(required=True,
                         validate=validate.Regexp(POSTCODE_DISTRICT),
                         metadata={"description": "postcode district"})
    needs = fields.List(fields.String(validate=validate.OneOf(NEEDS)),
                        required=True)
    preferred_support = fields.List(
        fields.String(validate=validate.OneOf(SUPPORT_MODES)), required=True)
    due_month = fields.String(load_default=None, allow_none=True,
                              validate=validate.Regexp(MONTH))
    accepted_at = fields.String(required=True)


@event_type("referral.declined", 1, "referrals",
            "A coordinator declined a referral, with a reason from a list.")
class ReferralDeclinedV1(EventData):
    referral_id = fields.String(required=True)
    reason = fields.String(required=True,
                           validate=validate.OneOf(DECLINE_REASONS))
    declined_at = fields.String(required=True)


@event_type("referral.signposted", 1, "referrals",
            "A referral was signposted to another service (where to is "
            "free text, so it stays in the referrals service).")
class ReferralSignpostedV1(EventData):
    referral_id = fields.String(required=True)
    signposted_at = fields.String(required=True)


@event_type("referral.withdrawn", 1, "referrals",
            "A referral was withdrawn before a decision.")
class ReferralWithdrawnV1(EventData):
    referral_id = fields.String(required=True)
    withdrawn_at = fields.String(required=True)


@event_type("referral.closed", 1, "referrals",
            "A referral's support ended, with a reason from a list.")
class ReferralClosedV1(EventData):
    referral_id = fields.String(required=True)
    reason = fields.String(required=True,
                           validate=validate.OneOf(CLOSE_REASONS))
    closed_at = fields.String(required=True)


@event_type("safeguarding.concern_raised", 1, "referrals",
            "A safeguarding concern was raised about a referred parent "
            "(no notes in the event).")
class SafeguardingConcernRaisedV1(EventData):
    concern_id = fields.String(required=True)
    referral_id = fields.String(required=True)
    severity = fields.String(required=True, validate=validate.OneOf(SEVERITIES))
    raised_by_role = fields.String(load_default=None, allow_none=True)
    raised_at = fields.String(required=True)


@event_type("safeguarding.concern_acknowledged", 1, "referrals",
            "A coordinator acknowledged a safeguarding concern (no notes); "
            "resolving an open concern acknowledges it too.")
class SafeguardingConcernAcknowledgedV1(EventData):
    concern_id = fields.String(required=True)
    referral_id = fields.String(required=True)
    severity = fields.String(required=True, validate=validate.OneOf(SEVERITIES))
    acknowledged_at = fields.String(required=True)


@event_type("safeguarding.concern_resolved", 1, "referrals",
            "A coordinator resolved a safeguarding concern (no notes).")
class SafeguardingConcernResolvedV1(EventData):
    concern_id = fields.String(required=True)
    referral_id = fields.String(required=True)
    severity = fields.String(required=True, validate=validate.OneOf(SEVERITIES))
    resolved_at = fields.String(required=True)
