"""The transactional outbox, without multi-document transactions.

A state change and the events it causes are one write to one document: the
events ride in the changed record's ``_outbox`` array (MongoDB writes a
single document atomically on a standalone server and a replica set alike).
The relay, a thread in every service that raises events, finds records
with queued events, publishes each with a publisher confirm, and only then
removes the published ones from their records (one write per batch). The entry states follow eShop's integration
event log: queued (in ``_outbox``, ``attempts`` 0), failed (``attempts`` > 0
and ``last_error``), published (gone from ``_outbox``, counted).

A crash between the write and the publish loses nothing: the next relay
(on restart, or another replica) publishes what is still queued. A crash
between the publish and its removal publishes the event again, which every
handler's inbox ignores.
"""
import json
import logging
import time
from datetime import datetime, timezone

import eventlet
from eventlet.event import Event
from kombu import Connection, Producer
from nameko.constants import PERSISTENT
from nameko.extensions import DependencyProvider

from shared.events import exchange_name_for
from shared.failpoints import failpoint
from shared.messaging import declare_event_topology
from shared.observability import log_fields, set_correlation_id

log = logging.getLogger(__name__)

OUTBOX_FIELD = "_outbox"
QUEUED = {f"{OUTBOX_FIELD}.id": {"$exists": True}}
RELAY_BATCH = 100


def outbox_entries(events):
    queued_at = datetime.now(timezone.utc)
    return [{"id": event["id"], "event": event, "attempts": 0,
             "queued_at": queued_at} for event in events]


def ensure_outbox_index(collection):
    collection.create_index(f"{OUTBOX_FIELD}.id", sparse=True)


class Outbox(DependencyProvider):
    """Publishes the events queued in ``collections`` of the service's database.

    The relay wakes after every worker (so an event leaves within
    milliseconds of its write) and also polls every
    ``OUTBOX.POLL_INTERVAL_SECONDS`` for anything left behind.
    """

    def __init__(self, *collections, **kwargs):
        self.collections = collections
        super().__init__(**kwargs)

    def setup(self):
        from shared.storage import database_provider
        settings = self.container.config.get("OUTBOX", {}) or {}
        self.poll_interval = float(settings.get("POLL_INTERVAL_SECONDS", 1.0))
        self.database = database_provider(self.container)
        self.amqp_uri = self.container.config["AMQP_URI"]
        self._wake = Event()
        self._running = False
        self._connection = None
        self._metrics = None

    def start(self):
        self.database.wait_until_prepared()
        for name in self.collections:
            ensure_outbox_index(self.database.database[name])
        self._running = True
        self._thread = self.container.spawn_managed_thread(
            self._run, identifier="outbox-relay")

    def stop(self):
        self._running = False
        self.wake()
        with eventlet.Timeout(10, False):
            self._thread.wait()   # let a round in progress finish
        self._close()

    def kill(self):
        self._running = False
        self._close()

    def get_dependency(self, worker_ctx):
        return self

    def worker_teardown(self, worker_ctx):
        self.wake()

    def wake(self):
        if not self._wake.ready():
            self._wake.send(True)

    def register_metrics(self, metrics):
        self._metrics = metrics
        metrics.gauge("alongside_outbox_backlog",
                      "Events written but not yet published", self.backlog)

    def backlog(self):
        database = self.database.database
        total = 0
        for name in self.collections:
            for row in database[name].aggregate([
                    {"$match": QUEUED},
                    {"$project": {"n": {"$size": f"${OUTBOX_FIELD}"}}},
                    {"$group": {"_id": None, "n": {"$sum": "$n"}}}]):
                total += row["n"]
        return total

    # -- the relay ---------------------------------------------------------

    def _run(self):
        while self._running:
            # A fresh wake-up before each round: a write during the round
            # sets it, so the next round starts at once.
            self._wake = Event()
            try:
                self.relay_once()
            except Exception:  # keep relaying: the next round retries
                if not self._running:
                    break   # stopping: what is left stays queued for the next start
                log.exception("outbox relay round failed")
                self._close()
            with eventlet.Timeout(self.poll_interval, False):
                self._wake.wait()

    def relay_once(self):
        """Publish every queued event once; returns how many were published."""
        published = 0
        for name in self.collections:
            collection = self.database.database[name]
            while True:
                records = list(collection.find(QUEUED, {OUTBOX_FIELD: 1})
                               .limit(RELAY_BATCH))
                done = [self._relay_record(collection, r) for r in records]
                sent = [event_id for ids in done for event_id in ids]
                if sent:
                    # One write for the batch: each write is a disk flush.
                    collection.update_many(
                        {"_id": {"$in": [r["_id"] for r in records]}},
                        {"$pull": {OUTBOX_FIELD: {"id": {"$in": sent}}}})
                published += len(sent)
                failed = any(len(ids) < len(record[OUTBOX_FIELD])
                             for record, ids in zip(records, done))
                if failed or len(records) < RELAY_BATCH:
                    break   # all done, or the broker is failing: next round
        return published

    def _relay_record(self, collection, record):
        """Publish a record's events in order; the ids of those published."""
        published = []
        for entry in record[OUTBOX_FIELD]:  # in order: stop at the first failure
            event = entry["event"]
            failpoint("outbox.before_publish")
            try:
                self._publish(event)
            except Exception as error:
                self._close()
                collection.update_one(
                    {"_id": record["_id"], f"{OUTBOX_FIELD}.id": entry["id"]},
                    {"$inc": {f"{OUTBOX_FIELD}.$.attempts": 1},
                     "$set": {f"{OUTBOX_FIELD}.$.last_error": str(error)[:500]}})
                log.warning("could not publish event; will retry",
                            extra=log_fields(event_id=event["id"],
                                             event_type=event["type"],
                                             error=str(error)))
                return published
            published.append(entry["id"])
            if self._metrics:
                self._metrics.events_published.labels(
                    self.container.service_name, event["type"]).inc()
        return published

    def _producer(self):
        if self._connection is None:
            self._connection = Connection(
                self.amqp_uri, transport_options={"confirm_publish": True})
            self._connection.ensure_connection(max_retries=3)
            declare_event_topology(self._connection.default_channel,
                                   self.container.service_name)
            self._producer_obj = Producer(self._connection.default_channel)
        return self._producer_obj

    def _publish(self, event):
        set_correlation_id(event["correlationid"])
        try:
            self._producer().publish(
                json.dumps(event),
                exchange=exchange_name_for(event["type"]),
                routing_key=event["type"],
                content_type="application/json",
                content_encoding="utf-8",
                delivery_mode=PERSISTENT,
                message_id=event["id"],
                timestamp=int(time.time()),
                headers={"nameko.correlation_id": event["correlationid"]},
            )
        finally:
            set_correlation_id(None)

    def _close(self):
        if self._connection is not None:
            try:
                self._connection.release()
            except Exception:
                pass
            self._connection = None


