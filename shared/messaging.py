"""The AMQP topology Alongside adds to nameko, and a reliable event handler.

- Each service publishes on its topic exchange ``<service>.events``, declared
  with an alternate exchange: an event no queue is bound to lands in the
  ``alongside.unrouted`` queue instead of vanishing.
- nameko acks a failed handler's message, losing it. :func:`event_handler`
  instead sends the message to a delay queue (its TTL dead-letters it back
  to the handler's own queue) until ``EVENTS.MAX_ATTEMPTS``; then, or at
  once for an event that can never apply (:class:`EventRejected`), to the
  service's dead-letter queue with the error in its headers, where ops can
  list and replay it (``python -m shared.deadletters``).
"""
import logging
import traceback
from datetime import datetime, timezone

from kombu import Connection, Exchange, Queue
from nameko.amqp.publish import Publisher
from nameko.constants import PERSISTENT
from nameko.events import EventHandler

from shared.errors import EventRejected
from shared.observability import log_fields

log = logging.getLogger(__name__)

UNROUTED_EXCHANGE = "alongside.unrouted"
UNROUTED_QUEUE = "alongside.unrouted"
DEAD_LETTER_EXCHANGE = "alongside.dead-letters"

ATTEMPT_HEADER = "x-alongside-attempt"
ERROR_HEADERS = ("x-alongside-error", "x-alongside-error-type",
                 "x-alongside-queue", "x-alongside-attempts",
                 "x-alongside-dead-at", "x-alongside-handler")

DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_RETRY_DELAYS_MS = (1000, 5000, 30000)


def event_exchange(service_name):
    return Exchange(f"{service_name}.events", type="topic", durable=True,
                    delivery_mode=PERSISTENT,
                    arguments={"alternate-exchange": UNROUTED_EXCHANGE})


def unrouted_queue():
    return Queue(UNROUTED_QUEUE,
                 exchange=Exchange(UNROUTED_EXCHANGE, type="fanout", durable=True),
                 durable=True)


def dead_letter_queue(service_name):
    return Queue(f"{service_name}.dead-letters",
                 exchange=Exchange(DEAD_LETTER_EXCHANGE, type="direct",
                                   durable=True),
                 routing_key=service_name, durable=True)


def retry_queue(delay_ms):
    """A delay queue: its messages expire back to the default exchange,
    which routes them by their routing key: the handler's own queue."""
    name = f"alongside.retry.{int(delay_ms)}ms"
    return Queue(name, exchange=Exchange(name, type="fanout", durable=True),
                 durable=True, queue_arguments={
                     "x-message-ttl": int(delay_ms),
                     "x-dead-letter-exchange": ""})


def declare_event_topology(channel, service_name):
    """Everything a service needs before it publishes or consumes events."""
    unrouted_queue()(channel).declare()
    event_exchange(service_name)(channel).declare()
    dead_letter_queue(service_name)(channel).declare()


def retry_settings(config):
    events = config.get("EVENTS", {}) or {}
    max_attempts = int(events.get("MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS))
    delays = [int(d) for d in events.get("RETRY_DELAYS_MS") or DEFAULT_RETRY_DELAYS_MS]
    return max_attempts, delays


def handler_queue_name(source_service, event_type, service_name, method_name):
    """The durable queue of one handler: the broker's policies match it."""
    return f"evt-{source_service}-{event_type}--{service_name}.{method_name}"


class ReliableEventHandler(EventHandler):
    """nameko's service-pool event handler, with retries and dead letters."""

    def setup(self):
        service_name = self.container.service_name
        self.queue = Queue(
            handler_queue_name(self.source_service, self.event_type, service_name,
                               self.method_name),
            exchange=event_exchange(self.source_service),
            routing_key=self.event_type, durable=True)
        self.max_attempts, self.retry_delays = retry_settings(self.container.config)
        self.publisher = Publisher(self.container.config["AMQP_URI"],
                                   use_confirms=True)
        self.dead_letters = dead_letter_queue(service_name)
        # Consumer.setup, skipping EventHandler.setup's plain exchange.
        self.queue_consumer.register_provider(self)

    def start(self):
        # Declared up front so ops (and the dead-letter gauge) see it at once.
        with Connection(self.container.config["AMQP_URI"]) as connection:
            self.dead_letters(connection.default_channel).declare()

    def handle_message_processed(self, message, result=None, exc_info=None):
        if exc_info is None:
            self.queue_consumer.ack_message(message)
            return
        try:
            self._reroute_failure(message, exc_info)
        except Exception:
            # Broker trouble: hand the message back rather than lose it.
            log.exception("could not reroute a failed event; requeueing it")
            self.queue_consumer.requeue_message(message)
        else:
            self.queue_consumer.ack_message(message)

    def _reroute_failure(self, message, exc_info):
        exc_type, exc, tb = exc_info
        headers = dict(message.headers or {})
        attempt = int(headers.get(ATTEMPT_HEADER, 1))
        body = message.payload
        event_id = body.get("id") if isinstance(body, dict) else None
        retryable = not isinstance(exc, EventRejected)
        if retryable and attempt < self.max_attempts:
            delay = self.retry_delays[min(attempt - 1, len(self.retry_delays) - 1)]
            headers[ATTEMPT_HEADER] = attempt + 1
            queue = retry_queue(delay)
            self.publisher.publish(
                body, exchange=queue.exchange, routing_key=self.queue.name,
                headers=headers, declare=[queue],
                delivery_mode=PERSISTENT)
            log.warning("event handling failed; retrying", extra=log_fields(
                event_id=event_id, attempt=attempt, retry_in_ms=delay,
                handler=self.method_name, error=str(exc)))
            return
        headers.update({
            "x-alongside-error": _describe(exc, tb),
            "x-alongside-error-type": exc_type.__name__,
            "x-alongside-queue": self.queue.name,
            "x-alongside-attempts": attempt,
            "x-alongside-dead-at": datetime.now(timezone.utc).isoformat(),
            "x-alongside-handler": f"{self.container.service_name}.{self.method_name}",
        })
        self.publisher.publish(
            body, exchange=self.dead_letters.exchange,
            routing_key=self.dead_letters.routing_key, headers=headers,
            declare=[self.dead_letters], delivery_mode=PERSISTENT)
        log.error("event dead-lettered", extra=log_fields(
            event_id=event_id, attempts=attempt, handler=self.method_name,
            error=str(exc)))


def _describe(exc, tb):
    last = traceback.extract_tb(tb)[-1] if tb else None
    where = f" (at {last.filename}:{last.lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"[:2000]


event_handler = ReliableEventHandler.decorator
