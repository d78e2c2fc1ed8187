"""Integrations: webhooks (kept by the messaging service), the AsyncAPI
document of the events, and an integrator's own AMQP queue.

An integrator's queue, ``integrator.<site>.<api key id>``, is declared here
on the same broker (kombu) and bound to the integrator feed
(``alongside.integrations``, topic) with ``<site>.<event type>`` for each
type it asked for: the messaging service republishes each event there for
its own site only, so a queue never sees another site's events. (The
services' own exchanges route by type alone: a queue bound there would get
every site's.) The queue dead-letters what its consumer rejects, and what
overflows it, to ``<queue>.dead-letters``.

Where the gateway knows the broker's management API
(``GATEWAY.RABBITMQ_MANAGEMENT_URL``), the integrator also gets a broker
user of its own, named as its queue, that may read (consume, get) its two
queues and nothing else: no binding to any exchange, no publishing. Its
password is shown once, when the user is made (again on ``rotate_password``).
"""
import functools
import re
import secrets
from datetime import datetime, timezone
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import requests

from kombu import Connection, Exchange, Queue
from marshmallow import RAISE, Schema, fields, validate
from nameko.constants import PERSISTENT
from nameko.extensions import DependencyProvider

from services.gateway import domain
from services.gateway.api import endpoint
from services.messaging.webhooks.schemas import (DeliveryQuerySchema, DeliverySchema,
                                                 NewWebhookOutSchema, NewWebhookSchema,
                                                 ReplayOutSchema, ReplaySchema,
                                                 WebhookSchema, event_type_list)
from shared.errors import Forbidden, NotFound, ServiceUnavailable
from shared.events.asyncapi import (INTEGRATION_EXCHANGE, build_asyncapi,
                                    integration_routing_key)
from shared.storage import SiteScopedRepository

QUEUE_PREFIX = "integrator"
MAX_QUEUE_LENGTH = 100_000   # then the oldest go to the dead-letter queue
INTEGRATION_QUEUES = "integration_queues"


# -- schemas ----------------------------------------------------------------------

class NewIntegrationQueueSchema(Schema):
    class Meta:
        unknown = RAISE

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


# -- the broker and the record of each queue ---------------------------------------

def queue_names(site_id, key_id):
    queue = f"{QUEUE_PREFIX}.{site_id}.{key_id}"
    return queue, f"{queue}.dead-letters"


def vhost_of(amqp_uri):
    path = urlsplit(amqp_uri).path
    return unquote(path[1:]) if len(path) > 1 else "/"


class IntegrationBroker(DependencyProvider):
    """Declares integrators' queues on the service's own broker."""

    def setup(self):
        self.amqp_uri = self.container.config["AMQP_URI"]
        self.vhost = vhost_of(self.amqp_uri)
        self.feed = Exchange(INTEGRATION_EXCHANGE, type="topic", durable=True,
                             delivery_mode=PERSISTENT)
        settings = self.container.config.get("GATEWAY", {}) or {}
        self.management = _management_api(settings.get("RABBITMQ_MANAGEMENT_URL"))

    def get_dependency(self, worker_ctx):
        return self

    def declare(self, queue_name, dead_letter_name, routing_keys, stale_keys):
        with Connection(self.amqp_uri, connect_timeout=5) as connection:
            channel = connection.default_channel
            Queue(dead_letter_name, durable=True)(channel).declare()
            queue = Queue(queue_name, durable=True, queue_arguments={
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": dead_letter_name,
                "x-max-length": MAX_QUEUE_LENGTH})(channel)
            self.feed(channel).declare()
            queue.declare()
            for key in routing_keys:
                queue.bind_to(exchange=self.feed, routing_key=key)
            for key in stale_keys:
                queue.unbind_from(exchange=self.feed, routing_key=key)


    def grant(self, username, queue_name, dead_letter_name, new_password):
        """Make (or re-permit) the queue's own broker user; returns its
        credentials, the password only if one was set now. None without
        the management API."""
        if self.management is None:
            return None
        base, auth = self.management
        own = f"^({re.escape(queue_name)}|{re.escape(dead_letter_name)})$"
        permissions = {"configure": own, "write": "^$", "read": own}
        user_url = f"{base}/api/users/{quote(username, safe='')}"
        try:
            exists = requests.get(user_url, auth=auth, timeout=5).status_code == 200
            password = None
            if new_password or not exists:
                password = secrets.token_urlsafe(32)
                _ok(requests.put(user_url, auth=auth, timeout=5,
                                 json={"password": password, "tags": ""}))
            _ok(requests.put(
                f"{base}/api/permissions/{quote(self.vhost, safe='')}/"
                f"{quote(username, safe='')}", auth=auth, timeout=5, json=permissions))
        except requests.RequestException as error:
            raise ServiceUnavailable(f"The broker's management API failed: {error}.")
        return {"username": username, "password": password, "permissions": permissions}


    def revoke(self, queue_name, dead_letter_name):
        """When the integrator's API key is revoked: its broker user and its
        queues go (identity's revoke_api_key calls this for an integrator)."""
        with Connection(self.amqp_uri, connect_timeout=5) as connection:
            channel = connection.default_channel
            for name in (queue_name, dead_letter_name):
                Queue(name, no_declare=True)(channel).delete()
        if self.management is not None:
            base, auth = self.management
            answer = requests.delete(f"{base}/api/users/{quote(queue_name, safe='')}",
                                     auth=auth, timeout=5)
            if answer.status_code not in (204, 404):
                _ok(answer)


def _management_api(url):
    """(base URL, (user, password)) from ``http://user:pw@host:15672``."""
    if not url:
        return None
    parts = urlsplit(url)
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    return base, (unquote(parts.username or ""), unquote(parts.password or ""))


def _ok(answer):
    if answer.status_code >= 300:
        raise ServiceUnavailable(
            f"The broker's management API answered {answer.status_code}.")


class IntegrationQueues(SiteScopedRepository):
    collection_name = INTEGRATION_QUEUES

    def get(self, queue_name):
        return self.find_one({"_id": queue_name})

    def save(self, record, existed):
        if not existed:
            return self.insert(record)
        return self.update({"_id": record["_id"]}, {"$set": {
            k: v for k, v in record.items() if k not in ("_id", "site_id", "created_at")}})

    def of_key(self, key_id):
        return self.find({"key_id": key_id})


@functools.lru_cache(maxsize=1)
def asyncapi_document():
    return build_asyncapi()


# -- the endpoints ------------------------------------------------------------------

class IntegrationEndpoints:
    integration_broker = IntegrationBroker()

    # -- webhooks ------------------------------------------------------------------

    @endpoint("POST", "/api/v1/webhooks",
              summary="Register a webhook: events of your site POSTed to an https URL, "
                      "signed as Standard Webhooks does (secret shown once)",
              status=201, permission="webhooks:manage", body=NewWebhookSchema,
              response=NewWebhookOutSchema, forwarded=True,
              audit=("webhook.create", "webhook"))
    def create_webhook(self, call):
        return self.messaging.create_webhook(domain.site_scope(call.principal),
                                             NewWebhookSchema().dump(call.body),
                                             call.principal.id)

    @endpoint("GET", "/api/v1/webhooks", summary="Your site's webhooks (never secrets)",
              permission="webhooks:manage", response=WebhookSchema, many=True,
              forwarded=True)
    def list_webhooks(self, call):
        return self.messaging.list_webhooks(domain.site_scope(call.principal))

    @endpoint("GET", "/api/v1/webhooks/<id>", summary="One webhook",
              permission="webhooks:manage", response=WebhookSchema, forwarded=True,
              errors=(404,))
    def get_webhook(self, call, id):
        return self.messaging.get_webhook(domain.site_scope(call.principal), id)

    @endpoint("DELETE", "/api/v1/webhooks/<id>",
              summary="Delete a webhook (its pending deliveries are cancelled)",
              status=204, permission="webhooks:manage",
              audit=("webhook.delete", "webhook"), errors=(404,))
    def delete_webhook(self, call, id):
        self.messaging.delete_webhook(domain.site_scope(call.principal), id,
                                      call.principal.id)

    @endpoint("GET", "/api/v1/webhooks/<id>/deliveries",
              summary="A webhook's deliveries, newest first, each with its attempts",
              permission="webhooks:manage", query=DeliveryQuerySchema,
              response=DeliverySchema, many=True, forwarded=True, errors=(404,))
    def webhook_deliveries(self, call, id):
        return self.messaging.webhook_deliveries(
            domain.site_scope(call.principal), id, DeliveryQuerySchema().dump(call.query))

    @endpoint("POST", "/api/v1/webhooks/<id>/replay",
              summary="Send again one delivery (delivery_id) or every event delivered "
                      "in a time range (since, until), with the same webhook-id",
              status=202, permission="webhooks:manage", body=ReplaySchema,
              response=ReplayOutSchema, forwarded=True,
              audit=("webhook.replay", "webhook"), errors=(404, 409))
    def replay_webhook(self, call, id):
        return self.messaging.replay_webhook(domain.site_scope(call.principal), id,
                                             ReplaySchema().dump(call.body),
                                             call.principal.id)

    # -- AMQP ------------------------------------------------------------------------

    @endpoint("GET", "/api/v1/asyncapi.json",
              summary="The AsyncAPI 2.6 document of every event: exchange, routing "
                      "key, CloudEvents envelope and data schema",
              response=AsyncApiSchema, forwarded=True, public=True)
    def asyncapi(self, call):
        return asyncapi_document()

    @endpoint("POST", "/api/v1/integrations/queues",
              summary="Create (or change the bindings of) your own durable AMQP queue "
                      "of your site's events, with a dead-letter queue of its own",
              status=201, permission="integrations:subscribe",
              body=NewIntegrationQueueSchema, response=IntegrationQueueSchema,
              audit=("integration_queue.declare", "integration_queue"))
    def declare_integration_queue(self, call):
        principal = call.principal
        if principal.kind != "api_key":
            raise Forbidden("An integrator's queue belongs to an API key.")
        site_id = domain.site_scope(principal)
        queue, dead_letters = queue_names(site_id, principal.id)
        types = sorted(set(call.body["event_types"]))
        repository = IntegrationQueues(self.db, site_id)
        previous = repository.get(queue)
        keys = [integration_routing_key(site_id, t) for t in types]
        stale = sorted(set(previous["routing_keys"]) - set(keys)) if previous else []
        self.integration_broker.declare(queue, dead_letters, keys, stale)
        credentials = self.integration_broker.grant(queue, queue, dead_letters,
                                                    call.body["rotate_password"])
        now = datetime.now(timezone.utc)
        record = {"_id": queue, "key_id": principal.id, "event_types": types,
                  "routing_keys": keys, "dead_letter_queue": dead_letters,
                  "vhost": self.integration_broker.vhost,
                  "created_at": now, "updated_at": now}
        view = _queue_view(repository.save(record, existed=previous is not None))
        return dict(view, credentials=credentials)

    @endpoint("GET", "/api/v1/integrations/queues",
              summary="Your API key's AMQP queue, if it has one",
              permission="integrations:subscribe", response=IntegrationQueueSchema,
              many=True)
    def list_integration_queues(self, call):
        site_id = domain.site_scope(call.principal)
        return [_queue_view(r) for r in
                IntegrationQueues(self.db, site_id).of_key(call.principal.id)]


def _queue_view(record):
    if record is None:
        raise NotFound("No such queue.")
    return {"queue": record["_id"], "dead_letter_queue": record["dead_letter_queue"],
            "vhost": record["vhost"], "exchange": INTEGRATION_EXCHANGE,
            "bindings": [{"exchange": INTEGRATION_EXCHANGE, "routing_key": key}
                         for key in record["routing_keys"]],
            "event_types": record["event_types"], "site_id": record["site_id"],
            "created_at": record["created_at"], "updated_at": record["updated_at"]}
