"""Payloads of the referrals service's RPC entrypoints."""
from marshmallow import (RAISE, Schema, ValidationError, fields, post_load,
                         validate, validates)

from services.referrals.domain import normalise_postcode
from shared.events.catalogue import LANGUAGE_TAG, REFERRAL_SOURCES


class NewReferralSchema(Schema):
    """A minimal referral: personal details arrive with encryption (later)."""

    class Meta:
        unknown = RAISE

    source = fields.String(required=True, validate=validate.OneOf(REFERRAL_SOURCES))
    preferred_language = fields.String(
        load_default="en", validate=validate.Regexp(
            LANGUAGE_TAG, error="Must be a language tag such as 'en' or 'pl'."))
    interpreter_needed = fields.Boolean(load_default=False)
    postcode = fields.String(required=True)
    due_date = fields.Date(load_default=None, allow_none=True)

    @validates("postcode")
    def _postcode_is_uk(self, value, **kwargs):
        if normalise_postcode(value) is None:
            raise ValidationError("Must be a UK postcode, such as 'SW1A 1AA'.")

    @post_load
    def _normalise(self, data, **kwargs):
        data["postcode"] = normalise_postcode(data["postcode"])
        return data


class ReferralSchema(Schema):
    id = fields.String(attribute="_id")
    site_id = fields.String()
    status = fields.String()
    source = fields.String()
    preferred_language = fields.String()
    interpreter_needed = fields.Boolean()
    postcode = fields.String()
    due_date = fields.String(allow_none=True)
    received_at = fields.DateTime()
