"""Events the referrals service raises."""
from marshmallow import fields, validate

from shared.events.catalogue import (LANGUAGE_TAG, MONTH, POSTCODE_DISTRICT,
                                     REFERRAL_SOURCES, EventData, event_type)


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
