"""Webhooks for integrators: the rules, pure (no nameko, no pymongo, no clock read).

- An endpoint: an https URL (plain http only to 127.0.0.1/localhost when the
  ``WEBHOOKS.ALLOW_INSECURE_LOCALHOST`` setting allows it, for development and
  tests), the event types it wants (from the catalogue) and the caller's site.
- Its secret: ``whsec_`` + base64 of 32 random bytes, as Standard Webhooks
  writes it; shown once, stored encrypted.
- A delivery: one event (the CloudEvents envelope, which carries no personal
  data) to one endpoint, its ``webhook-id`` the event id, so a retry and a
  replay carry the same id and a receiver can drop what it already has.
- An attempt's answer decides what follows: 2xx succeeded; 410 Gone disables
  the endpoint; a timeout, a connection error, 408, 425, 429 or 5xx is tried
  again after an exponential backoff with full jitter, up to
  ``MAX_ATTEMPTS``; any other answer (3xx, 4xx) fails at once (a receiver
  that refuses a message will refuse it again; it can be replayed).
"""
import base64
import ipaddress
import json
from datetime import timedelta
from urllib.parse import urlsplit

from shared.errors import Conflict, ValidationFailed
from shared.events import CATALOGUE

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32

ACTIVE, DISABLED, DELETED = "active", "disabled", "deleted"
PENDING, SUCCEEDED, FAILED, CANCELLED = "pending", "succeeded", "failed", "cancelled"
DELIVERY_STATUSES = (PENDING, SUCCEEDED, FAILED, CANCELLED)

# What an attempt came to (the label of alongside_webhook_deliveries_total).
OUTCOME_SUCCEEDED = "succeeded"
OUTCOME_RETRYING = "retrying"      # failed, will be tried again
OUTCOME_FAILED = "failed"          # failed for good (refused, or out of attempts)
OUTCOME_GONE = "gone"              # 410: the endpoint is disabled
OUTCOMES = (OUTCOME_SUCCEEDED, OUTCOME_RETRYING, OUTCOME_FAILED, OUTCOME_GONE)

RETRYABLE_STATUSES = {408, 425, 429}
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
MAX_REPLAY = 1000


class Settings:
    """``WEBHOOKS`` in the messaging service's config, every key optional."""

    def __init__(self, raw=None):
        raw = raw or {}
        self.max_attempts = int(raw.get("MAX_ATTEMPTS", 8))
        self.backoff_base = float(raw.get("BACKOFF_BASE_SECONDS", 5.0))
        self.backoff_cap = float(raw.get("BACKOFF_CAP_SECONDS", 3600.0))
        self.timeout = float(raw.get("TIMEOUT_SECONDS", 10.0))
        self.poll_interval = float(raw.get("POLL_INTERVAL_SECONDS", 1.0))
        self.concurrency = int(raw.get("CONCURRENCY", 10))
        self.allow_insecure_localhost = _flag(raw.get("ALLOW_INSECURE_LOCALHOST", False))


def _flag(value):
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


# -- endpoints ---------------------------------------------------------------

def check_url(url, allow_insecure_localhost):
    """The URL, or ValidationFailed naming what is wrong with it."""
    def refuse(reason):
        raise ValidationFailed("The webhook URL is not acceptable.", {"url": [reason]})

    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port   # noqa: B018  (raises on a port out of range)
    except ValueError as error:
        refuse(f"is not a valid URL ({error})")
    if not host or parts.scheme not in ("https", "http"):
        refuse("must be an absolute https URL")
    if parts.username or parts.password:
        refuse("must not carry credentials")
    if parts.fragment:
        refuse("must not have a fragment")
    local = host in LOCAL_HOSTS
    if parts.scheme == "http" and not (local and allow_insecure_localhost):
        refuse("must use https")
    if local and not allow_insecure_localhost:
        refuse("must not point at this machine")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None and not local and (
            address.is_private or address.is_loopback or address.is_link_local
            or address.is_multicast or address.is_reserved or address.is_unspecified):
        refuse("must not point at a private, loopback or link-local address")
    return url


def check_event_types(event_types, field="event_types"):
    unknown = sorted(set(event_types) - set(CATALOGUE))
    if unknown:
        raise ValidationFailed("Unknown event types.", {
            field: [f"not in the event catalogue: {', '.join(unknown)}"]})
    return sorted(set(event_types))


def new_secret(random_bytes):
    """A Standard Webhooks secret from ``SECRET_BYTES`` random bytes."""
    if len(random_bytes) < SECRET_BYTES:
        raise ValueError("a webhook secret needs 32 random bytes")
    return SECRET_PREFIX + base64.b64encode(random_bytes).decode("ascii")


def new_webhook(webhook_id, site_id, form, actor_id, now, settings):
    return {
        "_id": webhook_id,
        "site_id": site_id,
        "url": check_url(form["url"], settings.allow_insecure_localhost),
        "event_types": check_event_types(form["event_types"]),
        "description": form.get("description"),
        "status": ACTIVE,
        "disabled_reason": None,
        "created_at": now,
        "created_by": actor_id,
        "updated_at": now,
    }


def wants(webhook, event_type):
    return webhook["status"] == ACTIVE and event_type in webhook["event_types"]


# -- deliveries ----------------------------------------------------------------

def delivery_id_for(webhook_id, event_id):
    """The first delivery of an event to an endpoint has a fixed id, so a
    redelivered event queues nothing twice."""
    return f"{webhook_id}:{event_id}"


def new_delivery(delivery_id, webhook, envelope_json, event_id, event_type, now,
                 replay_of=None):
    return {
        "_id": delivery_id,
        "site_id": webhook["site_id"],
        "webhook_id": webhook["_id"],
        "message_id": event_id,          # the webhook-id header
        "event_id": event_id,
        "event_type": event_type,
        "payload": envelope_json,        # the exact body that is signed
        "status": PENDING,
        "attempt_count": 0,
        "attempts": [],
        "next_attempt_at": now,
        "lease_until": None,
        "created_at": now,
        "completed_at": None,
        "replay_of": replay_of,
    }


def payload_of(envelope):
    """The body every attempt sends, fixed once (compact JSON, keys sorted)."""
    return json.dumps(envelope, separators=(",", ":"), sort_keys=True, default=str)


def backoff_delay(attempt, base, cap, random_fraction):
    """Full jitter (AWS architecture blog): uniform over [0, min(cap,
    base * 2^(attempt-1))]; ``random_fraction`` is in [0, 1)."""
    ceiling = min(cap, base * (2 ** max(attempt - 1, 0)))
    return ceiling * random_fraction


def classify(status_code, error):
    """'succeeded', 'gone', 'retry' or 'refused' for one attempt's answer."""
    if error is not None or status_code is None:
        return "retry"          # timeout, connection refused, TLS failure...
    if 200 <= status_code < 300:
        return "succeeded"
    if status_code == 410:
        return "gone"
    if status_code >= 500 or status_code in RETRYABLE_STATUSES:
        return "retry"
    return "refused"


def after_attempt(delivery, status_code, error, started_at, duration_ms, settings,
                  random_fraction):
    """What to write after an attempt: ``(changes, outcome, disable_endpoint)``.

    ``changes`` has ``$set`` and ``$push`` for the delivery record.
    """
    number = delivery["attempt_count"] + 1
    verdict = classify(status_code, error)
    attempt = {"n": number, "at": started_at, "status_code": status_code,
               "error": (error or None) and str(error)[:300],
               "duration_ms": round(duration_ms, 1), "verdict": verdict}
    changes = {"attempt_count": number, "lease_until": None}
    disable = False
    if verdict == "succeeded":
        outcome = OUTCOME_SUCCEEDED
        changes.update(status=SUCCEEDED, completed_at=started_at)
    elif verdict == "gone":
        outcome, disable = OUTCOME_GONE, True
        changes.update(status=FAILED, completed_at=started_at)
    elif verdict == "retry" and number < settings.max_attempts:
        outcome = OUTCOME_RETRYING
        delay = backoff_delay(number, settings.backoff_base, settings.backoff_cap,
                              random_fraction)
        changes.update(next_attempt_at=started_at + timedelta(seconds=delay))
    else:
        outcome = OUTCOME_FAILED
        changes.update(status=FAILED, completed_at=started_at)
    return {"$set": changes, "$push": {"attempts": attempt}}, outcome, disable


def replay_targets(webhook, deliveries, form):
    """Which of a webhook's deliveries a replay sends again.

    ``form``: ``{"delivery_id"}`` or ``{"since", "until"}``. Only first
    deliveries (not earlier replays) count in a time range, each event once.
    """
    if webhook["status"] != ACTIVE:
        raise Conflict("A disabled webhook cannot be replayed: create it again "
                       "(or ask for it to be enabled) first.")
    if form.get("delivery_id"):
        return list(deliveries)
    seen, chosen = set(), []
    for delivery in sorted(deliveries, key=lambda d: d["created_at"]):
        if delivery.get("replay_of") or delivery["event_id"] in seen:
            continue
        seen.add(delivery["event_id"])
        chosen.append(delivery)
    return chosen[:MAX_REPLAY]


def check_replay_form(form):
    has_one = bool(form.get("delivery_id"))
    has_range = form.get("since") is not None or form.get("until") is not None
    if has_one == has_range:
        raise ValidationFailed("Replay one delivery or a time range.", {
            "_schema": ["give either delivery_id, or since and until"]})
    if has_range:
        if form.get("since") is None or form.get("until") is None:
            raise ValidationFailed("A time range needs both ends.", {
                "since" if form.get("since") is None else "until": ["required"]})
        if form["since"] >= form["until"]:
            raise ValidationFailed("The range is empty.", {
                "until": ["must be after since"]})
    return form


def public_view(webhook):
    return {k: webhook.get(k) for k in (
        "url", "event_types", "description", "status", "disabled_reason",
        "created_at", "updated_at")} | {"id": webhook["_id"],
                                        "site_id": webhook["site_id"]}
