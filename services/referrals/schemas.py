"""Payloads of the referrals service's RPC entrypoints (the gateway checks
HTTP bodies with the same schemas, and documents them in OpenAPI)."""
from marshmallow import (Schema, ValidationError, fields, post_load,
                         validate, validates, validates_schema)

from services.referrals import domain
from shared.events.catalogue import LANGUAGE_TAG, POSTCODE_DISTRICT, REFERRAL_SOURCES
from shared.validation import Strict


def _text(max_length, **kwargs):
    """Text of 1..max_length characters, not only spaces."""
    return fields.String(validate=[
        validate.Length(min=1, max=max_length),
        validate.Regexp(r"\s*\S", error="Must not be blank.")], **kwargs)


class ParentFormSchema(Strict):
    """What a referral says about the parent: on both intake forms."""
    name = _text(200, required=True)
    date_of_birth = fields.Date(required=True)
    phone = fields.String(load_default=None, allow_none=True,
                          metadata={"description": "UK or international number"})
    email = fields.Email(load_default=None, allow_none=True)
    postcode = fields.String(required=True, metadata={"description": "UK postcode"})
    preferred_language = fields.String(
        load_default="en", validate=validate.Regexp(
            LANGUAGE_TAG, error="Must be a language tag such as 'en' or 'pl'."))
    interpreter_needed = fields.Boolean(load_default=False)
    due_date = fields.Date(load_default=None, allow_none=True,
                           metadata={"description": "if pregnant (or baby_date_of_birth)"})
    baby_date_of_birth = fields.Date(load_default=None, allow_none=True)
    first_time_parent = fields.Boolean(required=True)
    partner_included = fields.Boolean(load_default=False,
                                      metadata={"description": "partner to be included"})
    needs = fields.List(fields.String(validate=validate.OneOf(domain.NEEDS)),
                        load_default=list, validate=validate.Length(max=len(domain.NEEDS)))
    preferred_support = fields.List(
        fields.String(validate=validate.OneOf(domain.SUPPORT_MODES)),
        load_default=list, validate=validate.Length(max=len(domain.SUPPORT_MODES)))
    reason = fields.String(load_default=None, allow_none=True,
                           validate=validate.Length(max=5000),
                           metadata={"description": "free text, encrypted at rest"})
    consent_to_contact = fields.Boolean(required=True)
    consent_to_share = fields.Boolean(required=True)

    @validates("postcode")
    def _postcode_is_uk(self, value, **kwargs):
        if domain.normalise_postcode(value) is None:
            raise ValidationError("Must be a UK postcode, such as 'SW1A 1AA'.")

    @validates("phone")
    def _phone_is_a_number(self, value, **kwargs):
        if value is not None and domain.normalise_phone(value) is None:
            raise ValidationError("Must be a phone number, such as '07700 900123'.")

    @validates("consent_to_contact")
    def _consent_to_contact(self, value, **kwargs):
        if value is not True:
            raise ValidationError("A referral needs the parent's consent to be contacted.")

    @validates("consent_to_share")
    def _consent_to_share(self, value, **kwargs):
        if value is not True:
            raise ValidationError("A referral needs the parent's consent to share "
                                  "their details with the service.")

    @validates_schema
    def _one_of_each(self, data, **kwargs):
        errors = {}
        if not data.get("phone") and not data.get("email"):
            errors["phone"] = ["Give a phone number or an email address (or both)."]
        if bool(data.get("due_date")) == bool(data.get("baby_date_of_birth")):
            errors["due_date"] = ["Give either the due date or the baby's date of birth."]
        if errors:
            raise ValidationError(errors)

    @post_load
    def _normalise(self, data, **kwargs):
        data["postcode"] = domain.normalise_postcode(data["postcode"])
        data["name"] = " ".join(data["name"].split())
        return data


class NewReferralSchema(ParentFormSchema):
    """A referral by a professional (API key) or a coordinator."""
    source = fields.String(required=True, validate=validate.OneOf(REFERRAL_SOURCES))
    referrer_name = _text(200, load_default=None, allow_none=True)
    referrer_contact = _text(200, load_default=None, allow_none=True,
                             metadata={"description": "phone or email"})
    consent_obtained_at = fields.AwareDateTime(required=True)
    consent_obtained_how = fields.String(
        required=True, validate=validate.OneOf(domain.CONSENT_METHODS))

    @validates_schema
    def _referrer_named(self, data, **kwargs):
        if data.get("source") not in (None, "self"):
            errors = {f: ["Required unless the parent referred themselves."]
                      for f in ("referrer_name", "referrer_contact") if not data.get(f)}
            if errors:
                raise ValidationError(errors)


class SelfReferralSchema(ParentFormSchema):
    """A parent referring themselves to the site named by its code."""
    site_code = fields.String(required=True, validate=validate.Regexp(
        r"^[a-z0-9][a-z0-9-]{1,30}$", error="Must be a site's code, e.g. 'essex'."))

    def to_referral(self, data, now):
        form = dict(data)
        form.pop("site_code")
        form.update(source="self", referrer_name=None, referrer_contact=None,
                    consent_obtained_at=now, consent_obtained_how="self_referral")
        return form


class SiteRulesSchema(Strict):
    """What the gateway (which owns sites) tells referrals about the site."""
    catchment = fields.List(fields.String(validate=validate.Regexp(POSTCODE_DISTRICT)),
                            required=True)
    child_age_limit_months = fields.Integer(
        load_default=domain.DEFAULT_CHILD_AGE_LIMIT_MONTHS,
        validate=validate.Range(min=1, max=60))
    triage_target_days = fields.Integer(
        load_default=domain.DEFAULT_TRIAGE_TARGET_DAYS,
        validate=validate.Range(min=1, max=365))


IDEMPOTENCY_KEY = r"^[\x21-\x7e]{1,200}$"


class IdempotencyKeySchema(Strict):
    """The ``Idempotency-Key`` header of an intake: the same key again
    answers the referral it made and makes nothing new."""
    key = fields.String(
        required=True, data_key="Idempotency-Key", validate=validate.Regexp(
            IDEMPOTENCY_KEY, error="Must be 1 to 200 visible ASCII characters "
                                   "(a UUID is a good key)."))


class ActorSchema(Schema):
    id = fields.String(allow_none=True)
    role = fields.String(allow_none=True)


class EligibilitySchema(Schema):
    eligible = fields.Boolean()
    reasons = fields.List(fields.String())


class ConsentSchema(Schema):
    to_be_contacted = fields.Boolean()
    to_share = fields.Boolean()
    obtained_at = fields.DateTime()
    obtained_how = fields.String()


class HistoryEntrySchema(Schema):
    status = fields.String()
    at = fields.DateTime()
    by = fields.Nested(ActorSchema, allow_none=True)
    reason = fields.String()
    event = fields.String(metadata={"description": "the event that moved it, if one did"})


class MatchInfoSchema(Schema):
    match_id = fields.String()
    volunteer_id = fields.String()
    volunteer_user_id = fields.String(allow_none=True)
    confirmed_at = fields.String(allow_none=True)
    ended_at = fields.String(allow_none=True)
    end_reason = fields.String(allow_none=True)


class EventAnomalySchema(Schema):
    event_id = fields.String()
    type = fields.String()
    at = fields.DateTime()
    status = fields.String()
    detail = fields.String()


class ReferralSchema(Schema):
    """A referral as its site's coordinator sees it (decrypted)."""
    id = fields.String()
    site_id = fields.String()
    parent_id = fields.String()
    linked_to_existing_parent = fields.Boolean(
        metadata={"description": "true when the parent was already known: the "
                                 "referral is linked to them, not doubled"})
    status = fields.String()
    version = fields.Integer(metadata={"description": "send it back to triage"})
    allowed_actions = fields.List(fields.String())
    source = fields.String()
    name = fields.String()
    date_of_birth = fields.String()
    phone = fields.String(allow_none=True)
    email = fields.String(allow_none=True)
    postcode = fields.String()
    area = fields.String()
    preferred_language = fields.String()
    interpreter_needed = fields.Boolean()
    due_date = fields.String(allow_none=True)
    baby_date_of_birth = fields.String(allow_none=True)
    due_month = fields.String(allow_none=True)
    first_time_parent = fields.Boolean()
    partner_included = fields.Boolean()
    needs = fields.List(fields.String())
    preferred_support = fields.List(fields.String())
    reason = fields.String(allow_none=True)
    referrer_name = fields.String(allow_none=True)
    referrer_contact = fields.String(allow_none=True)
    consent = fields.Nested(ConsentSchema)
    eligibility = fields.Nested(EligibilitySchema)
    needs_signposting = fields.Boolean()
    decline_reason = fields.String(allow_none=True)
    signposted_to = fields.String(allow_none=True)
    close_reason = fields.String(allow_none=True)
    received_at = fields.DateTime()
    triage_due_at = fields.DateTime(allow_none=True)
    updated_at = fields.DateTime()
    match = fields.Nested(MatchInfoSchema, allow_none=True,
                          metadata={"description": "the current match, from matching's events"})
    event_anomalies = fields.List(fields.Nested(EventAnomalySchema), metadata={
        "description": "events from other services the referral's status did not "
                       "allow (kept for the coordinator; nothing was changed)"})
    status_history = fields.List(fields.Nested(HistoryEntrySchema))


class ReferralSummarySchema(Schema):
    """A line of the coordinator's queue."""
    id = fields.String()
    name = fields.String()
    status = fields.String()
    version = fields.Integer()
    source = fields.String()
    area = fields.String()
    preferred_language = fields.String()
    needs_signposting = fields.Boolean()
    eligibility = fields.Nested(EligibilitySchema)
    linked_to_existing_parent = fields.Boolean()
    received_at = fields.DateTime()
    triage_due_at = fields.DateTime(allow_none=True)
    updated_at = fields.DateTime()
    age_days = fields.Integer()


class ReferralQuerySchema(Strict):
    status = fields.String(load_default=None, validate=validate.OneOf(domain.STATUSES))
    source = fields.String(load_default=None, validate=validate.OneOf(REFERRAL_SOURCES))
    older_than_days = fields.Integer(load_default=None,
                                     validate=validate.Range(min=0, max=3650))
    limit = fields.Integer(load_default=200, validate=validate.Range(min=1, max=1000))


class SelfReferralReceiptSchema(Schema):
    """All an anonymous caller learns: a reference and what happens next."""
    id = fields.String(metadata={"description": "the reference"})
    status = fields.String()
    message = fields.String()


class TriageSchema(Strict):
    action = fields.String(required=True, validate=validate.OneOf(domain.ACTIONS),
                           metadata={"description": "start_triage, accept, decline "
                                     "(reason), signpost (signposted_to), withdraw, "
                                     "match, activate, close (reason)"})
    version = fields.Integer(required=True, validate=validate.Range(min=1),
                             metadata={"description": "the referral's version as read"})
    reason = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(
        domain.DECLINE_REASONS + domain.CLOSE_REASONS))
    signposted_to = fields.String(load_default=None, allow_none=True,
                                  validate=validate.Length(min=1, max=300))

    @validates_schema
    def _what_each_action_needs(self, data, **kwargs):
        action, reason = data.get("action"), data.get("reason")
        if action == "decline" and reason not in domain.DECLINE_REASONS:
            raise ValidationError({"reason": [
                f"To decline, one of: {', '.join(domain.DECLINE_REASONS)}."]})
        if action == "close" and reason not in domain.CLOSE_REASONS:
            raise ValidationError({"reason": [
                f"To close, one of: {', '.join(domain.CLOSE_REASONS)}."]})
        if action == "signpost" and not (data.get("signposted_to") or "").strip():
            raise ValidationError({"signposted_to": ["Say where to, to signpost."]})
        if action not in ("decline", "close") and reason is not None:
            raise ValidationError({"reason": [f"Not used to {action}."]})
        if action != "signpost" and data.get("signposted_to") is not None:
            raise ValidationError({"signposted_to": [f"Not used to {action}."]})


class NewConcernSchema(Strict):
    severity = fields.String(required=True, validate=validate.OneOf(domain.SEVERITIES))
    notes = fields.String(required=True, validate=validate.Length(min=1, max=10000),
                          metadata={"description": "encrypted at rest; never in events"})


class AcknowledgeSchema(Strict):
    notes = fields.String(load_default=None, allow_none=True,
                          validate=validate.Length(min=1, max=10000))


class ResolveSchema(Strict):
    notes = fields.String(required=True, validate=validate.Length(min=1, max=10000))


class ConcernQuerySchema(Strict):
    unacknowledged = fields.Boolean(load_default=None)
    status = fields.String(load_default=None, validate=validate.OneOf(
        (domain.OPEN, domain.ACKNOWLEDGED, domain.RESOLVED)))
    referral_id = fields.String(load_default=None, validate=validate.Length(max=64))


class ConcernSchema(Schema):
    id = fields.String()
    referral_id = fields.String()
    outcome_id = fields.String(metadata={"description": "raised by the system on this "
                                         "outcome measure (EPDS item 10)"})
    severity = fields.String()
    status = fields.String()
    notes = fields.String()
    raised_at = fields.DateTime()
    raised_by = fields.Nested(ActorSchema, allow_none=True)
    referral_status = fields.String(allow_none=True)
    acknowledged_at = fields.DateTime(allow_none=True)
    acknowledged_by = fields.Nested(ActorSchema, allow_none=True)
    acknowledgement_notes = fields.String(allow_none=True)
    resolved_at = fields.DateTime(allow_none=True)
    resolved_by = fields.Nested(ActorSchema, allow_none=True)
    resolution_notes = fields.String(allow_none=True)


class ConcernListSchema(Schema):
    count = fields.Integer(metadata={"description": "how many match the query"})
    unacknowledged = fields.Integer(
        metadata={"description": "open concerns nobody has acknowledged yet (the site's)"})
    items = fields.List(fields.Nested(ConcernSchema))


class ParentContactSchema(Schema):
    name = fields.String()
    email = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    preferred_language = fields.String()
    consent_to_contact = fields.Boolean()


class ReferrerContactSchema(Schema):
    name = fields.String(allow_none=True)
    email = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)


class ContactDetailsSchema(Schema):
    """What messaging needs to reach a referral's parent and referrer (RPC only)."""
    parent = fields.Nested(ParentContactSchema)
    referrer = fields.Nested(ReferrerContactSchema, allow_none=True)
