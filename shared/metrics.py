"""Prometheus metrics, one registry per service container.

A global registry would make two containers of one service in one process
(as in tests) collide, so each container gets its own and serves it at
``/metrics`` through :class:`shared.service_base.ServiceBase`.
"""
import time

from nameko.events import EventHandler
from nameko.extensions import DependencyProvider
from nameko.rpc import Rpc
from nameko.web.handlers import HttpRequestHandler
from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram,
                               generate_latest)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from shared.deadletters import count as dead_letter_count

LATENCY_BUCKETS = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)


class Metrics(DependencyProvider):
    """Observes every worker; other providers add gauges through
    ``register_metrics(metrics)``."""

    def setup(self):
        self.registry = CollectorRegistry()
        service = self.container.service_name
        self.service = service
        self.rpc_latency = Histogram(
            "alongside_rpc_duration_seconds", "RPC handling time by method",
            ["service", "method", "outcome"], registry=self.registry,
            buckets=LATENCY_BUCKETS)
        self.http_latency = Histogram(
            "alongside_http_request_duration_seconds",
            "HTTP request handling time by entrypoint method",
            ["service", "method", "status"], registry=self.registry,
            buckets=LATENCY_BUCKETS)
        self.event_latency = Histogram(
            "alongside_event_handling_duration_seconds",
            "Event handling time by event type", ["service", "event_type",
                                                  "handler"],
            registry=self.registry, buckets=LATENCY_BUCKETS)
        self.event_failures = Counter(
            "alongside_event_handling_failures_total",
            "Event handling attempts that failed, by event type",
            ["service", "event_type", "handler"], registry=self.registry)
        self.events_published = Counter(
            "alongside_events_published_total",
            "Events the outbox relay published with a broker confirm",
            ["service", "event_type"], registry=self.registry)
        self._starts = {}

    def start(self):
        # In start, not setup: every provider has finished its own setup.
        for extension in self.container.dependencies:
            register = getattr(extension, "register_metrics", None)
            if register and extension is not self:
                register(self)
        amqp_uri = self.container.config["AMQP_URI"]
        self.gauge("alongside_dead_letters",
                   "Messages waiting in this service's dead-letter queue",
                   lambda: dead_letter_count(amqp_uri, self.service))

    def gauge(self, name, documentation, read):
        """A gauge read on each scrape, labelled with this service."""
        gauge = Gauge(name, documentation, ["service"], registry=self.registry)
        gauge.labels(self.service).set_function(read)
        return gauge

    def expose(self):
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def get_dependency(self, worker_ctx):
        return self

    def worker_setup(self, worker_ctx):
        self._starts[worker_ctx] = time.perf_counter()

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        started = self._starts.pop(worker_ctx, None)
        if started is None:
            return
        elapsed = time.perf_counter() - started
        entrypoint = worker_ctx.entrypoint
        method = entrypoint.method_name
        if isinstance(entrypoint, Rpc):
            outcome = "error" if exc_info else "ok"
            self.rpc_latency.labels(self.service, method, outcome).observe(elapsed)
        elif isinstance(entrypoint, HttpRequestHandler):
            status = getattr(result, "status_code", None) or (
                500 if exc_info else 200)
            if isinstance(result, tuple) and result and isinstance(result[0], int):
                status = result[0]
            self.http_latency.labels(self.service, method, str(status)).observe(elapsed)
        elif isinstance(entrypoint, EventHandler):
            body = worker_ctx.args[0] if worker_ctx.args else {}
            event_type = body.get("type", "unknown") if isinstance(body, dict) else "unknown"
            self.event_latency.labels(self.service, event_type, method).observe(elapsed)
            if exc_info:
                self.event_failures.labels(self.service, event_type, method).inc()
