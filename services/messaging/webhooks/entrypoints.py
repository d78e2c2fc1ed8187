"""Webhooks and the integrator feed: entrypoints mixed into MessagingService.

    class MessagingService(WebhookEntrypoints, ServiceBase): ...

nameko collects entrypoints and dependency providers from the whole class
(``dir()`` walks the bases), so the RPCs, the event handler and the timer
below, and the ``webhooks`` and ``integration_feed`` providers, are the
messaging service's own. The mixin reads the service's one
:class:`shared.storage.Database` itself (it does not rely on its attribute
name) and its settings from ``WEBHOOKS`` in the config, each with a default.

- One queue (``messaging.webhook_fan_out``) is bound to every event type of
  the catalogue on its owner's exchange. For each event it queues a
  delivery per active endpoint of the event's site that wants its type
  (idempotent: a redelivered event queues nothing twice), and republishes
  the event on the integrator feed (``alongside.integrations``, routing key
  ``<siteid>.<type>``) for integrators' own AMQP queues.
- A timer works the persisted delivery queue: it claims due deliveries
  (a lease, so replicas share the work), POSTs each, signed as Standard
  Webhooks does, and records the attempt.
"""
import logging
import os
import random
import time
import uuid
from datetime import datetime, timedelta, timezone

import eventlet
import requests
from kombu import Exchange, Queue, binding
from nameko.amqp.publish import Publisher
from nameko.constants import PERSISTENT
from nameko.extensions import DependencyProvider
from nameko.rpc import rpc
from nameko.timer import Timer
from prometheus_client import Counter
from standardwebhooks import Webhook

from services.messaging.webhooks import domain, store
from services.messaging.webhooks.schemas import (DeliveryQuerySchema, DeliverySchema,
                                                 NewWebhookOutSchema, NewWebhookSchema,
                                                 ReplayOutSchema, ReplaySchema,
                                                 WebhookSchema)
from shared.crypto import FieldCipher
from shared.errors import DOMAIN_ERRORS, NotFound
from shared.events import CATALOGUE, load_event, routing_key_for
from shared.events.asyncapi import INTEGRATION_EXCHANGE, integration_routing_key
from shared.events.envelope import utcnow
from shared.messaging import (ReliableEventHandler, dead_letter_queue, event_exchange,
                              retry_settings)
from shared.observability import log_fields
from shared.storage import database_provider
from shared.validation import load_or_fail

log = logging.getLogger(__name__)

USER_AGENT = "Alongside-Webhooks/1"
LEASE_MARGIN_SECONDS = 30


def settings_of(config):
    return domain.Settings(config.get("WEBHOOKS") or {})


class WebhookSupport(DependencyProvider):
    """The webhook store, secret cipher, settings and delivery counter."""

    def setup(self):
        self.settings = settings_of(self.container.config)
        encryption = self.container.config.get("ENCRYPTION", {}) or {}
        self.cipher = FieldCipher(encryption.get("MASTER_KEY") or "")
        self.database_dependency = database_provider(self.container)
        self.counter = None

    def start(self):
        self.database_dependency.wait_until_prepared()
        store.ensure_indexes(self.database)

    @property
    def database(self):
        return self.database_dependency.database

    def register_metrics(self, metrics):
        self.counter = Counter(
            "alongside_webhook_deliveries_total",
            "Webhook delivery attempts by outcome (succeeded, retrying, failed, gone)",
            ["outcome"], registry=metrics.registry)
        for outcome in domain.OUTCOMES:
            self.counter.labels(outcome)

    def count(self, outcome):
        if self.counter is not None:
            self.counter.labels(outcome).inc()

    def get_dependency(self, worker_ctx):
        return self


class IntegrationFeed(DependencyProvider):
    """Republishes an event, for its site only, on the integrator feed."""

    def setup(self):
        self.exchange = Exchange(INTEGRATION_EXCHANGE, type="topic", durable=True,
                                 delivery_mode=PERSISTENT)
        self.publisher = Publisher(self.container.config["AMQP_URI"], use_confirms=True)

    def get_dependency(self, worker_ctx):
        return self

    def publish(self, envelope, body):
        self.publisher.publish(
            body, exchange=self.exchange, declare=[self.exchange],
            routing_key=integration_routing_key(envelope["siteid"], envelope["type"]),
            headers={"siteid": envelope["siteid"], "type": envelope["type"]},
            message_id=envelope["id"], delivery_mode=PERSISTENT)


class CatalogueEventHandler(ReliableEventHandler):
    """One queue bound to every event type of the catalogue, each on its
    owner's exchange; retries and dead letters as any reliable handler."""

    def __init__(self, **kwargs):
        super().__init__("alongside", "*", **kwargs)

    def setup(self):
        service_name = self.container.service_name
        self.queue = Queue(
            f"{service_name}.{self.method_name}", durable=True,
            bindings=[binding(event_exchange(entry.source_service),
                              routing_key=routing_key_for(name))
                      for name, entry in sorted(CATALOGUE.items())])
        self.max_attempts, self.retry_delays = retry_settings(self.container.config)
        self.publisher = Publisher(self.container.config["AMQP_URI"], use_confirms=True)
        self.dead_letters = dead_letter_queue(service_name)
        self.queue_consumer.register_provider(self)


class WebhookTimer(Timer):
    """A timer every ``WEBHOOKS.POLL_INTERVAL_SECONDS``."""

    def __init__(self, **kwargs):
        super().__init__(interval=None, **kwargs)

    def setup(self):
        self.interval = settings_of(self.container.config).poll_interval


catalogue_event_handler = CatalogueEventHandler.decorator
webhook_timer = WebhookTimer.decorator


class WebhookEntrypoints:
    webhooks = WebhookSupport()
    integration_feed = IntegrationFeed()

    # -- endpoints (over RPC from the gateway) ------------------------------------

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def create_webhook(self, site_id, payload, actor_id=None):
        form = load_or_fail(NewWebhookSchema(), payload)
        webhook_id = str(uuid.uuid4())
        webhook = domain.new_webhook(webhook_id, site_id, form, actor_id, utcnow(),
                                     self.webhooks.settings)
        secret = domain.new_secret(os.urandom(domain.SECRET_BYTES))
        webhook["secret"] = self.webhooks.cipher.encrypt(
            site_id, f"webhook:{webhook_id}:secret", secret)
        store.Webhooks(self.webhooks.database, site_id).add(webhook)
        log.info("webhook registered", extra=log_fields(
            webhook_id=webhook_id, site_id=site_id, event_types=webhook["event_types"]))
        return NewWebhookOutSchema().dump(dict(domain.public_view(webhook), secret=secret))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def list_webhooks(self, site_id):
        rows = store.Webhooks(self.webhooks.database, site_id).listing()
        return WebhookSchema(many=True).dump([domain.public_view(w) for w in rows])

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def get_webhook(self, site_id, webhook_id):
        return WebhookSchema().dump(domain.public_view(self._webhook(site_id, webhook_id)))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def delete_webhook(self, site_id, webhook_id, actor_id=None):
        self._webhook(site_id, webhook_id)
        now = utcnow()
        store.Webhooks(self.webhooks.database, site_id).set_status(
            webhook_id, domain.DELETED, f"deleted by {actor_id}", now)
        store.Deliveries(self.webhooks.database, site_id).cancel_pending(webhook_id, now)
        log.info("webhook deleted", extra=log_fields(webhook_id=webhook_id,
                                                     site_id=site_id))
        return None

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def webhook_deliveries(self, site_id, webhook_id, query=None):
        query = load_or_fail(DeliveryQuerySchema(), query or {})
        self._webhook(site_id, webhook_id)
        rows = store.Deliveries(self.webhooks.database, site_id).of_webhook(
            webhook_id, query["status"], query["limit"])
        return DeliverySchema(many=True).dump(rows)

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def replay_webhook(self, site_id, webhook_id, payload, actor_id=None):
        form = domain.check_replay_form(load_or_fail(ReplaySchema(), payload))
        webhook = self._webhook(site_id, webhook_id)
        deliveries = store.Deliveries(self.webhooks.database, site_id)
        if form.get("delivery_id"):
            found = deliveries.get(webhook_id, form["delivery_id"])
            if found is None:
                raise NotFound(f"No delivery {form['delivery_id']} of this webhook.")
            candidates = [found]
        else:
            candidates = deliveries.in_range(webhook_id, form["since"], form["until"],
                                             limit=domain.MAX_REPLAY * 4)
        now, replayed = utcnow(), []
        for original in domain.replay_targets(webhook, candidates, form):
            copy = domain.new_delivery(
                f"replay-{uuid.uuid4()}", webhook, original["payload"],
                original["event_id"], original["event_type"], now,
                replay_of=original["_id"])
            deliveries.add(copy)
            replayed.append(copy["_id"])
        log.info("webhook deliveries replayed", extra=log_fields(
            webhook_id=webhook_id, site_id=site_id, count=len(replayed),
            actor_id=actor_id))
        return ReplayOutSchema().dump({"replayed": len(replayed),
                                       "delivery_ids": replayed})

    def _webhook(self, site_id, webhook_id):
        webhook = store.Webhooks(self.webhooks.database, site_id).get(webhook_id)
        if webhook is None:
            raise NotFound(f"No webhook {webhook_id}.")
        return webhook

    # -- every event: queue deliveries, feed integrators ----------------------------

    @catalogue_event_handler
    def webhook_fan_out(self, body):
        envelope, _ = load_event(body)   # an invalid event is dead-lettered at once
        site_id, event_type = envelope["siteid"], envelope["type"]
        payload = domain.payload_of(body)
        deliveries = store.Deliveries(self.webhooks.database, site_id)
        now = utcnow()
        for webhook in store.Webhooks(self.webhooks.database, site_id).subscribed(event_type):
            deliveries.add(domain.new_delivery(
                domain.delivery_id_for(webhook["_id"], envelope["id"]), webhook,
                payload, envelope["id"], event_type, now))
        self.integration_feed.publish(envelope, body)

    # -- the delivery queue -----------------------------------------------------------

    @webhook_timer
    def deliver_due_webhooks(self):
        """Send every delivery that is due, a few at a time; returns how many."""
        settings = self.webhooks.settings
        queue = store.DeliveryQueue(self.webhooks.database)
        pool = eventlet.GreenPool(max(settings.concurrency, 1))
        sent = 0
        while True:
            now = utcnow()
            lease = now + timedelta(seconds=2 * settings.timeout + LEASE_MARGIN_SECONDS)
            batch = queue.claim(now, lease, uuid.uuid4().hex, settings.concurrency)
            if not batch:
                break
            for delivery in batch:   # spawn_n waits for a free slot
                pool.spawn_n(self._attempt_logged, queue, delivery)
            sent += len(batch)
        pool.waitall()
        return sent

    def _attempt_logged(self, queue, delivery):
        try:
            self._attempt(queue, delivery)
        except Exception:   # its lease lapses and the delivery is tried again
            log.exception("webhook delivery attempt failed to run",
                          extra=log_fields(delivery_id=delivery["_id"]))

    def _attempt(self, queue, delivery):
        support, settings = self.webhooks, self.webhooks.settings
        site_id = delivery["site_id"]
        webhook = store.Webhooks(support.database, site_id).get(delivery["webhook_id"])
        started = datetime.now(timezone.utc)
        if webhook is None or webhook["status"] != domain.ACTIVE:
            queue.record_attempt(delivery, {
                "$set": {"status": domain.CANCELLED, "completed_at": started,
                         "lease_until": None},
                "$push": {"attempts": {"n": delivery["attempt_count"], "at": started,
                                       "status_code": None, "duration_ms": 0.0,
                                       "error": "endpoint disabled or deleted",
                                       "verdict": "cancelled"}}})
            return
        status_code, error = None, None
        clock = time.perf_counter()
        try:
            secret = support.cipher.decrypt(site_id, f"webhook:{webhook['_id']}:secret",
                                            webhook["secret"])
            answer = requests.post(
                webhook["url"], data=delivery["payload"].encode("utf-8"),
                headers=signed_headers(secret, delivery["message_id"], started,
                                       delivery["payload"]),
                timeout=settings.timeout, allow_redirects=False)
            status_code = answer.status_code
            answer.close()
        except Exception as exc:   # timeouts, refused connections, TLS errors
            error = f"{type(exc).__name__}: {exc}"
        duration_ms = (time.perf_counter() - clock) * 1000
        changes, outcome, disable = domain.after_attempt(
            delivery, status_code, error, started, duration_ms, settings, random.random())
        if queue.record_attempt(delivery, changes) is None:
            log.warning("webhook delivery lease lapsed before its attempt was recorded",
                        extra=log_fields(delivery_id=delivery["_id"]))
        support.count(outcome)
        if disable:
            self._disable(site_id, webhook["_id"], started, status_code)
        log.info("webhook delivery attempt", extra=log_fields(
            delivery_id=delivery["_id"], webhook_id=webhook["_id"], site_id=site_id,
            attempt=changes["$set"]["attempt_count"], status_code=status_code,
            outcome=outcome, error=error))

    def _disable(self, site_id, webhook_id, now, status_code):
        store.Webhooks(self.webhooks.database, site_id).set_status(
            webhook_id, domain.DISABLED, f"the endpoint answered {status_code} Gone", now)
        store.Deliveries(self.webhooks.database, site_id).cancel_pending(webhook_id, now)
        log.warning("webhook disabled: its endpoint answered 410 Gone",
                    extra=log_fields(webhook_id=webhook_id, site_id=site_id))


def signed_headers(secret, message_id, at, payload):
    """Standard Webhooks headers for one attempt (signed at its own time)."""
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, at, payload),
    }
