"""Webhooks end to end: the gateway, the messaging service's webhook part on
the real broker and datastore, and a real local HTTP receiver (http.server
in a thread) that checks every signature with the secret it was shown once,
as an integrator's endpoint would, with the standardwebhooks package."""
import http.server
import json
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from services.messaging.webhooks.entrypoints import WebhookEntrypoints
from shared.events import new_event
from shared.service_base import ServiceBase
from shared.storage import Database
from tests.support import (assert_problem, encryption_settings, metric_value,
                           referral_received, wait_until)


class WebhookService(WebhookEntrypoints, ServiceBase):
    """The messaging service's webhook part alone (its mixin, as
    MessagingService mixes it in), so these tests need nothing else of it."""
    name = "messaging"
    db = Database()


WEBHOOK_SETTINGS = {"ALLOW_INSECURE_LOCALHOST": True, "POLL_INTERVAL_SECONDS": 0.05,
                    "BACKOFF_BASE_SECONDS": 0.1, "BACKOFF_CAP_SECONDS": 0.2,
                    "MAX_ATTEMPTS": 3, "TIMEOUT_SECONDS": 1}


def start_webhooks(start_service, service_cls=WebhookService, **settings):
    return start_service(service_cls, ENCRYPTION=encryption_settings(),
                         WEBHOOKS=dict(WEBHOOK_SETTINGS, **settings))


class Receiver:
    """An integrator's endpoint: answers the statuses it is given in turn
    (then 200), and records each request and whether its signature held."""

    def __init__(self, answers=(), delay=0.0):
        self.answers = list(answers)
        self.delay = delay
        self.secret = None
        self.requests = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    Webhook(receiver.secret).verify(body, headers)
                    verified = True
                except WebhookVerificationError:
                    verified = False
                if receiver.delay:
                    time.sleep(receiver.delay)
                status = receiver.answers.pop(0) if receiver.answers else 200
                receiver.requests.append({"headers": headers, "body": json.loads(body),
                                          "verified": verified, "status": status})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/alongside"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(*answers, delay=0.0):
        made.append(Receiver(answers, delay))
        return made[-1]
    yield make
    for one in made:
        one.close()




def register(api, token, url, event_types=("referral.received",), status=201):
    answer = api.call("POST", "/api/v1/webhooks", token,
                      json={"url": url, "event_types": list(event_types),
                            "description": "the council's CRM"})
    assert answer.status_code == status, answer.text
    return answer.json()


def deliveries(api, token, webhook_id, **query):
    answer = api.call("GET", f"/api/v1/webhooks/{webhook_id}/deliveries", token,
                      params=query)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_delivery_is_signed_retried_after_a_500_and_replayed_with_its_id(
        world, start_service, broker, receiver):
    api, _, sites, coordinators = world
    _, config = start_webhooks(start_service)
    essex = coordinators["essex"]
    endpoint = receiver(500)
    created = register(api, essex, endpoint.url)
    endpoint.secret = created["secret"]
    assert created["secret"].startswith("whsec_") and created["status"] == "active"
    assert created["site_id"] == sites["essex"]
    listed = api.call("GET", "/api/v1/webhooks", essex).json()
    assert [w["id"] for w in listed] == [created["id"]] and "secret" not in listed[0]
    assert api.call("GET", "/api/v1/webhooks", coordinators["derby"]).json() == []

    started = datetime.now(timezone.utc)
    other_site = referral_received(site=sites["derby"])
    not_subscribed = new_event("referral.withdrawn", {
        "referral_id": "r-1", "withdrawn_at": started.isoformat()},
        site_id=sites["essex"], now=started)
    event = referral_received(site=sites["essex"])
    for one in (other_site, not_subscribed, event):
        broker.publish(one)

    wait_until(lambda: len(endpoint.requests) >= 2, timeout=15,
               what="a failed attempt and its retry")
    first, second = endpoint.requests[:2]
    assert [first["status"], second["status"]] == [500, 200]
    assert first["verified"] and second["verified"]
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"] == event["id"]
    assert first["headers"]["webhook-signature"].startswith("v1,")
    assert second["body"] == event   # the CloudEvents envelope, as published
    # The signature covers id, timestamp and body: a changed body fails it.
    tampered = json.dumps(dict(event, siteid=sites["derby"]))
    with pytest.raises(WebhookVerificationError):
        Webhook(created["secret"]).verify(tampered, second["headers"])

    [delivery] = wait_until(lambda: [d for d in deliveries(api, essex, created["id"])
                                     if d["status"] == "succeeded"], what="success")
    assert delivery["message_id"] == event["id"] and delivery["attempt_count"] == 2
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 200]
    assert [a["verdict"] for a in delivery["attempts"]] == ["retry", "succeeded"]
    assert metric_value(config, "alongside_webhook_deliveries_total",
                        outcome="retrying") == 1
    assert metric_value(config, "alongside_webhook_deliveries_total",
                        outcome="succeeded") == 1
    # Only the site's subscribed event went out (the others had time to).
    time.sleep(0.3)
    assert {r["body"]["id"] for r in endpoint.requests} == {event["id"]}

    # Replay one delivery: sent again with the same webhook-id, newly signed.
    replay = api.call("POST", f"/api/v1/webhooks/{created['id']}/replay", essex,
                      json={"delivery_id": delivery["id"]})
    assert replay.status_code == 202, replay.text
    assert replay.json()["replayed"] == 1
    wait_until(lambda: len(endpoint.requests) == 3, what="the replay")
    again = endpoint.requests[2]
    assert again["verified"] and again["headers"]["webhook-id"] == event["id"]
    assert again["body"] == event
    # ... or a time range: each event delivered in it once (not the replays).
    ranged = api.call("POST", f"/api/v1/webhooks/{created['id']}/replay", essex, json={
        "since": (started - timedelta(seconds=5)).isoformat(),
        "until": (datetime.now(timezone.utc) + timedelta(seconds=5)).isoformat()})
    assert ranged.status_code == 202 and ranged.json()["replayed"] == 1, ranged.text
    wait_until(lambda: len(endpoint.requests) == 4, what="the ranged replay")
    assert endpoint.requests[3]["headers"]["webhook-id"] == event["id"]
    log = deliveries(api, essex, created["id"])
    assert len(log) == 3 and sum(1 for d in log if d["replay_of"] == delivery["id"]) == 2

    # Another site sees none of it; bad replays are refused with field errors.
    assert_problem(api.call("GET", f"/api/v1/webhooks/{created['id']}/deliveries",
                            coordinators["derby"]), 404)
    assert_problem(api.call("POST", f"/api/v1/webhooks/{created['id']}/replay", essex,
                            json={}), 422)
    assert_problem(api.call("POST", f"/api/v1/webhooks/{created['id']}/replay", essex,
                            json={"delivery_id": "nope"}), 404)
    assert_problem(api.call("POST", f"/api/v1/webhooks/{created['id']}/replay", essex,
                            json={"since": started.isoformat()}), 422)


def test_410_gone_disables_the_webhook_and_nothing_more_is_sent(
        world, start_service, broker, receiver):
    api, _, sites, coordinators = world
    _, config = start_webhooks(start_service)
    essex = coordinators["essex"]
    endpoint = receiver(410)
    created = register(api, essex, endpoint.url)
    endpoint.secret = created["secret"]
    broker.publish(referral_received(site=sites["essex"]))

    disabled = wait_until(lambda: (lambda w: w["status"] == "disabled" and w)(
        api.call("GET", f"/api/v1/webhooks/{created['id']}", essex).json()),
        what="the webhook to be disabled")
    assert "410" in disabled["disabled_reason"]
    [delivery] = deliveries(api, essex, created["id"])
    assert delivery["status"] == "failed" and delivery["attempts"][0]["verdict"] == "gone"
    assert metric_value(config, "alongside_webhook_deliveries_total", outcome="gone") == 1

    broker.publish(referral_received(site=sites["essex"]))
    time.sleep(0.5)
    assert len(endpoint.requests) == 1
    assert len(deliveries(api, essex, created["id"])) == 1
    assert_problem(api.call("POST", f"/api/v1/webhooks/{created['id']}/replay", essex,
                            json={"delivery_id": delivery["id"]}), 409)


def test_a_receiver_that_keeps_failing_is_given_up_after_max_attempts(
        world, start_service, broker, receiver):
    api, _, sites, coordinators = world
    _, config = start_webhooks(start_service)
    essex = coordinators["essex"]
    endpoint = receiver(503, 503, 503, 503)
    created = register(api, essex, endpoint.url)
    endpoint.secret = created["secret"]
    broker.publish(referral_received(site=sites["essex"]))

    [delivery] = wait_until(lambda: [d for d in deliveries(api, essex, created["id"])
                                     if d["status"] == "failed"], timeout=15,
                            what="the delivery to be given up")
    assert delivery["attempt_count"] == 3 == len(endpoint.requests)
    times = [datetime.fromisoformat(a["at"]) for a in delivery["attempts"]]
    gaps = [later - earlier for earlier, later in zip(times, times[1:])]
    assert all(gap.total_seconds() <= 0.2 + 0.5 for gap in gaps)   # capped backoff
    assert metric_value(config, "alongside_webhook_deliveries_total",
                        outcome="retrying") == 2
    assert metric_value(config, "alongside_webhook_deliveries_total",
                        outcome="failed") == 1
    # Still active (only 410 disables): the next event is tried afresh.
    assert api.call("GET", f"/api/v1/webhooks/{created['id']}",
                    essex).json()["status"] == "active"


def test_who_may_register_what(world, start_service, receiver):
    api, admin, sites, coordinators = world
    start_webhooks(start_service)
    essex = coordinators["essex"]
    endpoint = receiver()
    problem = assert_problem(api.call("POST", "/api/v1/webhooks", essex, json={
        "url": "http://crm.example.org/hook", "event_types": ["referral.received"]}), 422)
    assert "https" in str(problem["errors"]["url"])
    problem = assert_problem(api.call("POST", "/api/v1/webhooks", essex, json={
        "url": "https://10.0.0.5/hook", "event_types": ["referral.received"]}), 422)
    assert "url" in problem["errors"]
    problem = assert_problem(api.call("POST", "/api/v1/webhooks", essex, json={
        "url": endpoint.url, "event_types": ["referral.received", "parent.named"]}), 422)
    assert "event_types" in problem["errors"]
    assert_problem(api.call("POST", "/api/v1/webhooks", essex, json={
        "url": endpoint.url, "event_types": []}), 422)
    assert_problem(api.call("POST", "/api/v1/webhooks", admin, json={
        "url": endpoint.url, "event_types": ["referral.received"]}), 403)
    # An integrator's API key manages its site's webhooks too.
    key = api.call("POST", "/api/v1/api-keys", essex,
                   json={"name": "Council CRM", "role": "integrator"}).json()["key"]
    created = api.call("POST", "/api/v1/webhooks", key=key, json={
        "url": endpoint.url, "event_types": ["match.confirmed"]})
    assert created.status_code == 201, created.text
    webhook_id = created.json()["id"]
    assert_problem(api.call("DELETE", f"/api/v1/webhooks/{webhook_id}",
                            coordinators["derby"]), 404)
    assert api.call("DELETE", f"/api/v1/webhooks/{webhook_id}", essex).status_code == 204
    assert api.call("GET", "/api/v1/webhooks", key=key).json() == []
    assert_problem(api.call("GET", f"/api/v1/webhooks/{webhook_id}", essex), 404)


def test_the_messaging_service_carries_the_webhook_entrypoints(
        world, start_service, broker, receiver):
    from services.messaging.service import MessagingService
    api, _, sites, coordinators = world
    container, _ = start_webhooks(start_service, MessagingService)
    names = {entrypoint.method_name for entrypoint in container.entrypoints}
    assert {"create_webhook", "replay_webhook", "webhook_fan_out",
            "deliver_due_webhooks"} <= names
    endpoint = receiver()
    created = register(api, coordinators["essex"], endpoint.url,
                       event_types=["match.ended"])
    endpoint.secret = created["secret"]
    event = new_event("match.ended", {
        "match_id": "m1", "referral_id": "r1", "volunteer_id": "v1",
        "reason": "completed", "rematch": False,
        "ended_at": datetime.now(timezone.utc).isoformat()},
        site_id=sites["essex"], now=datetime.now(timezone.utc))
    broker.publish(event)
    wait_until(lambda: endpoint.requests, what="the delivery")
    assert endpoint.requests[0]["verified"] and endpoint.requests[0]["body"] == event
