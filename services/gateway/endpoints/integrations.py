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
from datetime import datetime, timezone

from services.gateway import domain
from services.gateway.api import endpoint
from services.gateway.integration_broker import IntegrationBroker, queue_names
from services.gateway.schemas import (AsyncApiSchema, IntegrationQueueSchema,
                                      NewIntegrationQueueSchema)
from services.gateway.store import IntegrationQueues
from services.messaging.webhooks.schemas import (DeliveryQuerySchema, DeliverySchema,
                                                 NewWebhookOutSchema, NewWebhookSchema,
                                                 ReplayOutSchema, ReplaySchema,
                                                 WebhookSchema)
from shared.errors import Forbidden, NotFound
from shared.events.asyncapi import (INTEGRATION_EXCHANGE, build_asyncapi,
                                    integration_routing_key)

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
