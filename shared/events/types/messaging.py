"""Events the messaging service raises: a delivery's outcome, never its
content or the address it went to."""
from marshmallow import fields, validate

from shared.events.catalogue import EventData, event_type

CHANNELS = ("email", "sms")
NOTIFICATION_KINDS = ("referral_received", "match_proposed", "match_confirmed",
                      "safeguarding_concern", "dbs_expiring", "contact_reminder")
RECIPIENT_KINDS = ("parent", "referrer", "volunteer", "coordinator")


class _Delivery(EventData):
    message_id = fields.String(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(NOTIFICATION_KINDS))
    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS))
    recipient_kind = fields.String(required=True, validate=validate.OneOf(RECIPIENT_KINDS))
    cause_event_id = fields.String(load_default=None, allow_none=True)


@event_type("message.sent", 1, "messaging", "A notification was handed to its channel.")
class MessageSentV1(_Delivery):
    sent_at = fields.String(required=True)


@event_type("message.failed", 1, "messaging",
            "A notification could not be delivered after its retries.")
class MessageFailedV1(_Delivery):
    error_code = fields.String(required=True)
    attempts = fields.Integer(required=True)
    failed_at = fields.String(required=True)
