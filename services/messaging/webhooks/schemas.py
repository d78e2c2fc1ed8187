"""Payloads of the webhook RPCs (and the gateway's webhook endpoints, which
check input with these same schemas)."""
from marshmallow import Schema, fields, validate

from services.messaging.webhooks.domain import DELIVERY_STATUSES
from shared.events import CATALOGUE
from shared.validation import Strict

ID = validate.Length(min=1, max=200)


def event_type_list(**kwargs):
    return fields.List(
        fields.String(validate=validate.OneOf(
            sorted(CATALOGUE), error="Not in the event catalogue: {input}.")),
        validate=validate.Length(min=1, max=len(CATALOGUE)), **kwargs)


class NewWebhookSchema(Strict):
    url = fields.String(required=True, validate=validate.Length(min=8, max=2000),
                        metadata={"description": "https URL the events are POSTed to"})
    event_types = event_type_list(required=True, metadata={
        "description": "event types from the catalogue (see /api/v1/asyncapi.json)"})
    description = fields.String(load_default=None, allow_none=True,
                                validate=validate.Length(max=200))


class WebhookSchema(Schema):
    id = fields.String()
    site_id = fields.String()
    url = fields.String()
    event_types = fields.List(fields.String())
    description = fields.String(allow_none=True)
    status = fields.String(metadata={"description": "active, disabled (after 410 Gone)"})
    disabled_reason = fields.String(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class NewWebhookOutSchema(WebhookSchema):
    secret = fields.String(metadata={
        "description": "whsec_ + base64: verify each delivery's webhook-signature "
                       "with it (Standard Webhooks). Shown this once only."})


class DeliveryQuerySchema(Strict):
    status = fields.String(load_default=None, validate=validate.OneOf(DELIVERY_STATUSES))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))


class AttemptSchema(Schema):
    n = fields.Integer()
    at = fields.DateTime()
    status_code = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)
    duration_ms = fields.Float()
    verdict = fields.String(metadata={"description": "succeeded, gone, retry, refused"})


class DeliverySchema(Schema):
    id = fields.String(attribute="_id")
    webhook_id = fields.String()
    message_id = fields.String(metadata={"description": "the webhook-id header"})
    event_id = fields.String()
    event_type = fields.String()
    status = fields.String()
    attempt_count = fields.Integer()
    attempts = fields.List(fields.Nested(AttemptSchema))
    next_attempt_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()
    completed_at = fields.DateTime(allow_none=True)
    replay_of = fields.String(allow_none=True)


class ReplaySchema(Strict):
    delivery_id = fields.String(load_default=None, allow_none=True, validate=ID)
    since = fields.AwareDateTime(load_default=None, allow_none=True, format="iso")
    until = fields.AwareDateTime(load_default=None, allow_none=True, format="iso")


class ReplayOutSchema(Schema):
    replayed = fields.Integer()
    delivery_ids = fields.List(fields.String())
