"""Correlation ids and JSON structured logs.

A correlation id follows one piece of work across services: it arrives in
an RPC call's context data or in an event's envelope, is kept for the
worker's lifetime (``threading.local`` is per greenthread once eventlet has
patched it), is put on every log line, is passed on by nameko to the RPCs
the worker makes, and is stamped on every event the worker causes.
"""
import json
import logging
import threading
import uuid
from datetime import datetime, timezone

from nameko.extensions import DependencyProvider

CORRELATION_KEY = "correlation_id"

_local = threading.local()


def current_correlation_id():
    return getattr(_local, "correlation_id", None)


def set_correlation_id(value):
    _local.correlation_id = value


class CorrelationId(DependencyProvider):
    """Gives each worker a correlation id, taken from its caller if any."""

    # nameko injects dependencies before worker_setup, in the worker's own
    # greenthread: so the id is settled here.
    def get_dependency(self, worker_ctx):
        correlation_id = (_correlation_from_event(worker_ctx)
                          or worker_ctx.context_data.get(CORRELATION_KEY)
                          or str(uuid.uuid4()))
        worker_ctx.context_data[CORRELATION_KEY] = correlation_id
        set_correlation_id(correlation_id)
        return correlation_id

    def worker_teardown(self, worker_ctx):
        set_correlation_id(None)


def _correlation_from_event(worker_ctx):
    """From an event's envelope, or an HTTP request's X-Correlation-Id."""
    first = worker_ctx.args[0] if worker_ctx.args else None
    if isinstance(first, dict) and first.get("specversion"):
        return first.get("correlationid")
    headers = getattr(first, "headers", None)
    if headers is not None and hasattr(headers, "get"):
        value = headers.get("X-Correlation-Id", "")
        if 0 < len(value) <= 128:
            return value
    return None


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the correlation id when there is one."""

    def format(self, record):
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc)
            .isoformat().replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        correlation_id = current_correlation_id()
        if correlation_id:
            entry["correlation_id"] = correlation_id
        for key, value in getattr(record, "fields", {}).items():
            entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def log_fields(**fields):
    """``logger.info("...", extra=log_fields(event_id=...))``"""
    return {"fields": fields}
