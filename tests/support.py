"""Helpers for tests that run services on the real broker and datastore."""
import json
import secrets
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone
from email import message_from_bytes, policy

import requests
from aiosmtpd.controller import Controller
from kombu import Connection, Producer, Queue

from conftest import free_port
from shared.events import CATALOGUE, new_event
from shared.messaging import declare_event_topology, event_exchange


def wait_until(check, timeout=10.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def http_get(config, path):
    url = f"http://{config['WEB_SERVER_ADDRESS']}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def metric_value(config, name, **labels):
    """A sample's value from the service's /metrics (0 if absent)."""
    _, text = http_get(config, "/metrics")
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def referral_received(site="essex", source="midwife", **data):
    now = datetime.now(timezone.utc)
    referral_id = str(uuid.uuid4())
    body = {"referral_id": referral_id, "source": source,
            "preferred_language": "en", "area": "CM1",
            "received_at": now.isoformat()}
    body.update(data)
    return new_event("referral.received", body, site_id=site,
                     subject=referral_id, now=now)


class Broker:
    """Publish raw events and listen on the event exchanges, as an
    integrator binding its own queue would."""

    def __init__(self, amqp_uri):
        self.amqp_uri = amqp_uri
        self.connection = Connection(amqp_uri, transport_options={"confirm_publish": True})
        declare_event_topology(self.connection.default_channel, "referrals")

    def publish(self, event, routing_key=None):
        """Publish an event as its owning service's outbox relay does: on
        that service's exchange, the type as routing key."""
        owner = CATALOGUE[event["type"]].source_service if event.get("type") in CATALOGUE \
            else "referrals"
        channel = self.connection.default_channel
        declare_event_topology(channel, owner)
        Producer(channel).publish(
            json.dumps(event), exchange=event_exchange(owner),
            routing_key=routing_key or event["type"],
            content_type="application/json", content_encoding="utf-8",
            delivery_mode=2)
        return event

    def listen(self, routing_key="#", exchange=None):
        name = f"test-listener-{uuid.uuid4().hex[:8]}"
        queue = Queue(name, exchange=exchange or event_exchange("referrals"),
                      routing_key=routing_key, durable=False, auto_delete=False)
        queue(self.connection.default_channel).declare()
        return name

    def get(self, queue_name, timeout=10.0):
        """The next message's JSON body from a queue, or AssertionError."""
        channel = self.connection.default_channel
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = channel.basic_get(queue_name, no_ack=True)
            if message is not None:
                return json.loads(message.body)
            time.sleep(0.02)
        raise AssertionError(f"no message on {queue_name} within {timeout}s")

    def depth(self, queue_name):
        _, count, _ = self.connection.channel().queue_declare(queue_name, passive=True)
        return count

    def close(self):
        self.connection.release()


# -- the gateway, through real HTTP ------------------------------------------

ADMIN = ("admin@alongside.test", "correct horse battery staple")
# A complete referral form (the referrals service's NewReferralSchema).
REFERRAL = {"source": "midwife", "referrer_name": "Sam Midwife",
            "referrer_contact": "sam.midwife@nhs.test",
            "name": "Alex Parent", "date_of_birth": "1995-04-12",
            "phone": "07700 900123", "email": "alex@example.test",
            "postcode": "CM1 2AB", "preferred_language": "en",
            "interpreter_needed": False, "due_date": "2027-03-01",
            "first_time_parent": True, "partner_included": False,
            "needs": ["isolation"], "preferred_support": ["home_visit"],
            "reason": "Feels alone since moving to the area.",
            "consent_to_contact": True, "consent_to_share": True,
            "consent_obtained_at": "2026-11-01T10:00:00+00:00",
            "consent_obtained_how": "verbal"}


def gateway_settings(**overrides):
    settings = {"JWT_SECRET": secrets.token_urlsafe(48), "TOKEN_TTL_SECONDS": 300,
                "ADMIN_EMAIL": ADMIN[0], "ADMIN_PASSWORD": ADMIN[1],
                "TRUSTED_PROXY_HOPS": 0,
                "RATE_LIMITS": {"login": {"LIMIT": 50, "WINDOW_SECONDS": 60}}}
    settings.update(overrides)
    return settings


class Api:
    def __init__(self, address):
        self.base = f"http://{address}"

    def call(self, method, path, token=None, key=None, **kwargs):
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if key:
            headers["X-API-Key"] = key
        return requests.request(method, self.base + path, headers=headers,
                                timeout=10, **kwargs)

    def login(self, email, password):
        answer = self.call("POST", "/api/v1/auth/token",
                           json={"email": email, "password": password})
        assert answer.status_code == 200, answer.text
        return answer.json()["access_token"]


def assert_problem(answer, status):
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"].startswith("application/problem+json")
    problem = answer.json()
    assert problem["status"] == status and problem["title"] and "Traceback" not in answer.text
    return problem


# -- the referrals service ------------------------------------------------------

MASTER_KEY = "test master key: at least 32 characters long, not secret"
# What the gateway passes about a site when it forwards an intake.
SITE_RULES = {"catchment": ["CM1", "CM2", "DE22"], "child_age_limit_months": 12}


def encryption_settings(master_key=MASTER_KEY):
    """``start_service(ReferralsService, ENCRYPTION=encryption_settings())``."""
    return {"MASTER_KEY": master_key}


def referral_form(**changes):
    """A complete referral form with some fields changed (None removes one)."""
    form = dict(REFERRAL, **changes)
    return {k: v for k, v in form.items() if v is not None}


# -- the edge: a real SMTP server ------------------------------------------------

class MailServer:
    """aiosmtpd on a free loopback port, keeping every message it is given."""

    def __init__(self):
        self.messages = []
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("bounce"):
            return f"550 5.1.1 <{address}>: no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append({"to": list(envelope.rcpt_tos), "from": envelope.mail_from,
                              "message": message})
        return "250 Message accepted"

    def to(self, address):
        return [m["message"] for m in self.messages if address in m["to"]]

    def wait_for(self, address, count=1, timeout=15):
        return wait_until(lambda: len(self.to(address)) >= count and self.to(address),
                          timeout, what=f"{count} email(s) to {address}")
