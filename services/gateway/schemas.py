"""The gateway's HTTP payloads. The OpenAPI document is generated from these
(and from the owning services' schemas for the calls it forwards)."""
from marshmallow import RAISE, Schema, fields, post_load, pre_load, validate

from services.gateway.domain import ROLES, SITE_CODE
from services.messaging.webhooks.schemas import event_type_list
from shared.events.catalogue import LANGUAGE_TAG, POSTCODE_DISTRICT
from shared.events.types.journeys import INSTRUMENTS
from shared.validation import Strict


class NewSiteSchema(Strict):
    name = fields.String(required=True, validate=validate.Length(min=2, max=120))
    code = fields.String(required=True, validate=validate.Regexp(
        SITE_CODE, error="2-31 lower-case letters, digits or dashes, e.g. 'essex'."))
    catchment = fields.List(
        fields.String(validate=validate.Regexp(
            POSTCODE_DISTRICT, error="Must be a UK postcode district, e.g. 'CM1'.")),
        required=True, validate=validate.Length(min=1),
        metadata={"description": "UK postcode districts, e.g. ['CM1', 'CM2']"})
    languages = fields.List(
        fields.String(validate=validate.Regexp(
            LANGUAGE_TAG, error="Must be a language tag, e.g. 'en'.")),
        load_default=lambda: ["en"], validate=validate.Length(min=1))
    child_age_limit_months = fields.Integer(
        load_default=12, validate=validate.Range(min=1, max=60),
        metadata={"description": "a baby this old (in months) or older is "
                                 "outside the site's eligibility"})
    triage_target_days = fields.Integer(
        load_default=5, validate=validate.Range(min=1, max=90),
        metadata={"description": "a referral waiting longer than this for "
                                 "triage is overdue (dashboards and alerts)"})
    licensed_measures = fields.List(
        fields.String(validate=validate.OneOf(INSTRUMENTS)), load_default=list,
        metadata={"description": "outcome measures the site holds a licence "
                                 "to use; only these are offered"})

    @pre_load
    def _upper_case_districts(self, data, **kwargs):
        # 'cm1' means 'CM1': upper-case before the district check.
        catchment = data.get("catchment") if isinstance(data, dict) else None
        if isinstance(catchment, list):
            data = dict(data, catchment=[d.strip().upper() if isinstance(d, str) else d
                                         for d in catchment])
        return data

    @post_load
    def _normalise(self, data, **kwargs):
        data["catchment"] = sorted(set(data["catchment"]))
        data["languages"] = sorted(set(data["languages"]))
        data["licensed_measures"] = sorted(set(data["licensed_measures"]))
        return data


class SiteSettingsSchema(NewSiteSchema):
    """A change to a site's settings: any of them but its code."""
    class Meta:
        unknown = RAISE
        exclude = ("code",)

    def __init__(self, **kwargs):
        # Only the settings named change: no defaults filled in for the rest.
        super().__init__(**dict(kwargs, partial=True))

    @post_load
    def _normalise(self, data, **kwargs):
        for key in ("catchment", "languages", "licensed_measures"):
            if key in data:
                data[key] = sorted(set(data[key]))
        return data


class SiteSchema(Schema):
    id = fields.String(attribute="_id")
    name = fields.String()
    code = fields.String()
    catchment = fields.List(fields.String())
    languages = fields.List(fields.String())
    child_age_limit_months = fields.Integer(dump_default=12)
    triage_target_days = fields.Integer(dump_default=5)
    licensed_measures = fields.List(fields.String(), dump_default=list)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class TokenRequestSchema(Strict):
    email = fields.Email(required=True)
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))


class TokenSchema(Schema):
    access_token = fields.String()
    token_type = fields.String()
    expires_in = fields.Integer()


class NewUserSchema(Strict):
    email = fields.Email(required=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    password = fields.String(required=True, load_only=True, validate=validate.Length(
        min=12, max=1024, error="Use at least 12 characters."))
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    site_id = fields.String(load_default=None, allow_none=True)


class UserSchema(Schema):
    id = fields.String(attribute="_id")
    email = fields.String()
    name = fields.String()
    role = fields.String()
    site_id = fields.String(allow_none=True)
    created_at = fields.DateTime()


class MeSchema(Schema):
    id = fields.String()
    kind = fields.String()
    role = fields.String()
    site_id = fields.String(allow_none=True)
    name = fields.String()


class NewApiKeySchema(Strict):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200),
                         metadata={"description": "what the key is for, e.g. 'Essex maternity unit'"})
    role = fields.String(required=True, validate=validate.OneOf(["referrer", "integrator"]))
    site_id = fields.String(load_default=None, allow_none=True)


class ApiKeySchema(Schema):
    id = fields.String(attribute="_id")
    name = fields.String()
    role = fields.String()
    site_id = fields.String()
    created_at = fields.DateTime()
    revoked_at = fields.DateTime(allow_none=True)


class CreatedApiKeySchema(ApiKeySchema):
    key = fields.String(metadata={"description": "shown once: store it now"})


class AuditEntrySchema(Schema):
    id = fields.String(attribute="_id")
    actor_id = fields.String(allow_none=True)
    actor_kind = fields.String(allow_none=True)
    actor_role = fields.String(allow_none=True)
    action = fields.String()
    record_type = fields.String()
    record_id = fields.String(allow_none=True)
    site_id = fields.String(allow_none=True)
    at = fields.DateTime()
    client_address = fields.String(allow_none=True)
    outcome = fields.Integer()


class AuditQuerySchema(Strict):
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    action = fields.String(load_default=None)


class ProblemSchema(Schema):
    type = fields.String()
    title = fields.String()
    status = fields.Integer()
    detail = fields.String()
    errors = fields.Dict()
    instance = fields.String()


# -- integrators' AMQP queues ---------------------------------------------------

class NewIntegrationQueueSchema(Strict):
    event_types = event_type_list(required=True, metadata={
        "description": "event types from the catalogue (see /api/v1/asyncapi.json); "
                       "the queue receives them for your own site only"})
    rotate_password = fields.Boolean(load_default=False, metadata={
        "description": "give the queue's broker user a new password (shown once)"})


class BrokerCredentialsSchema(Schema):
    username = fields.String()
    password = fields.String(allow_none=True, metadata={
        "description": "shown once, when the user is made or its password rotated"})
    permissions = fields.Dict(keys=fields.String(), values=fields.String())


class BindingSchema(Schema):
    exchange = fields.String()
    routing_key = fields.String()


class IntegrationQueueSchema(Schema):
    queue = fields.String()
    dead_letter_queue = fields.String()
    vhost = fields.String()
    exchange = fields.String(metadata={"description": "the integrator feed (topic)"})
    bindings = fields.List(fields.Nested(BindingSchema))
    event_types = fields.List(fields.String())
    site_id = fields.String()
    credentials = fields.Nested(BrokerCredentialsSchema, allow_none=True, metadata={
        "description": "the broker user that may consume these queues only (null "
                       "where the gateway does not manage broker users)"})
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class AsyncApiSchema(Schema):
    """An AsyncAPI 2.6 document (see https://www.asyncapi.com/docs/reference)."""
    asyncapi = fields.String(validate=validate.Equal("2.6.0"))
