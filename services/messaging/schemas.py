"""Payloads of the messaging service's RPC entrypoints (and the gateway's
HTTP bodies for them)."""
from marshmallow import Schema, ValidationError, fields, validate, validates

from services.messaging import domain
from shared.events.catalogue import LANGUAGE_TAG
from shared.events.types.journeys import CONTACT_MODES
from shared.events.types.messaging import CHANNELS, NOTIFICATION_KINDS, RECIPIENT_KINDS
from shared.validation import Strict

HH_MM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
TEMPLATE_SOURCE = 20000


def _source(required, max_chars=TEMPLATE_SOURCE, **kwargs):
    return fields.String(required=required, validate=validate.Length(min=1, max=max_chars),
                         **kwargs)


class TemplateKeySchema(Strict):
    kind = fields.String(required=True, validate=validate.OneOf(NOTIFICATION_KINDS))
    audience = fields.String(required=True, validate=validate.OneOf(RECIPIENT_KINDS))
    language = fields.String(required=True, validate=validate.Regexp(
        LANGUAGE_TAG, error="Must be a language tag such as 'en' or 'pl'."))


class TemplateSchema(Strict):
    """A template's parts, in Jinja2 (sandboxed): subject and text for email,
    html (optional, autoescaped) for email, sms for text messages."""
    subject = _source(True, 500)
    text = _source(True)
    html = fields.String(load_default=None, allow_none=True,
                         validate=validate.Length(min=1, max=TEMPLATE_SOURCE))
    sms = _source(True, 2000)


class TemplateOutSchema(Schema):
    kind = fields.String()
    audience = fields.String()
    language = fields.String()
    source = fields.String(metadata={"description": "site (saved here) or default"})
    subject = fields.String()
    text = fields.String()
    html = fields.String(allow_none=True)
    sms = fields.String()
    variables = fields.List(fields.String())
    updated_at = fields.DateTime(allow_none=True)
    updated_by = fields.String(allow_none=True)


class PreferenceKeySchema(Strict):
    recipient_kind = fields.String(required=True, validate=validate.OneOf(RECIPIENT_KINDS))
    person_id = fields.String(required=True, validate=validate.Length(min=1, max=100))


class PreferencesSchema(Strict):
    preferred_channel = fields.String(load_default=None, allow_none=True,
                                      validate=validate.OneOf(CHANNELS))
    opt_outs = fields.List(fields.String(validate=validate.OneOf(CHANNELS)),
                           load_default=list, validate=validate.Length(max=len(CHANNELS)),
                           metadata={"description": "channels this person must not "
                                                    "be sent anything on"})


class PreferencesOutSchema(Schema):
    recipient_kind = fields.String()
    person_id = fields.String()
    preferred_channel = fields.String(allow_none=True)
    opt_outs = fields.List(fields.String())
    updated_at = fields.DateTime(allow_none=True)


class MessagesQuerySchema(Strict):
    status = fields.String(load_default=None, validate=validate.OneOf(domain.STATUSES))
    kind = fields.String(load_default=None, validate=validate.OneOf(NOTIFICATION_KINDS))
    channel = fields.String(load_default=None, validate=validate.OneOf(CHANNELS))
    recipient_kind = fields.String(load_default=None,
                                   validate=validate.OneOf(RECIPIENT_KINDS))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))


class MessageErrorSchema(Schema):
    code = fields.String()
    detail = fields.String()


class MessageSchema(Schema):
    """A delivery log entry: never the content or the address."""
    id = fields.String(attribute="_id")
    kind = fields.String()
    channel = fields.String(allow_none=True)
    recipient_kind = fields.String()
    urgent = fields.Boolean()
    status = fields.String()
    attempts = fields.Integer()
    created_at = fields.DateTime()
    due_at = fields.DateTime(allow_none=True)
    sent_at = fields.DateTime(allow_none=True)
    failed_at = fields.DateTime(allow_none=True)
    error = fields.Nested(MessageErrorSchema, allow_none=True)
    cause_event_id = fields.String(allow_none=True)
    reminder_id = fields.String(allow_none=True)


class QuietHoursSchema(Strict):
    start = fields.String(required=True, validate=validate.Regexp(
        HH_MM, error="Must be a time such as '21:00'."))
    end = fields.String(required=True, validate=validate.Regexp(
        HH_MM, error="Must be a time such as '08:00'."))
    timezone = fields.String(load_default="Europe/London")

    @validates("timezone")
    def _known_zone(self, value, **kwargs):
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValidationError("Must be a time zone such as 'Europe/London'.")


class SettingsSchema(Strict):
    quiet_hours = fields.Nested(QuietHoursSchema, required=True)


class SettingsOutSchema(Schema):
    site_id = fields.String()
    quiet_hours = fields.Nested(QuietHoursSchema)
    source = fields.String(metadata={"description": "site or default"})


class NewReminderSchema(Strict):
    referral_id = fields.String(required=True, validate=validate.Length(min=1, max=100))
    volunteer_id = fields.String(required=True, validate=validate.Length(min=1, max=100))
    contact_at = fields.AwareDateTime(required=True, metadata={
        "description": "when the contact is planned (with its UTC offset)"})
    mode = fields.String(load_default=None, allow_none=True,
                         validate=validate.OneOf(CONTACT_MODES))


class ReminderSchema(Schema):
    id = fields.String(attribute="_id")
    referral_id = fields.String()
    volunteer_id = fields.String()
    contact_at = fields.DateTime()
    mode = fields.String(allow_none=True)
    remind_at = fields.DateTime()
    status = fields.String()
    message_ids = fields.List(fields.String())
    created_at = fields.DateTime()


class DispatchSchema(Strict):
    now = fields.AwareDateTime(load_default=None, allow_none=True)


class DispatchResultSchema(Schema):
    attempted = fields.Integer()
    sent = fields.Integer()
    retrying = fields.Integer()
    deferred = fields.Integer()
    failed = fields.Integer()
