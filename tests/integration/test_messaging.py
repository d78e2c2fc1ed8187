"""Notifications end to end: the real broker, datastore, referrals, training
and gateway; a real SMTP server (aiosmtpd) started here; and a small HTTP
server that speaks GOV.UK Notify's endpoints (the system's edge)."""
import json
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from zoneinfo import ZoneInfo

import jwt
import pytest
from nameko.standalone.rpc import ServiceRpcProxy

from conftest import free_port
from services.messaging.service import MessagingService
from services.training.service import TrainingService
from shared.events import new_event
from shared.messaging import event_exchange
from tests.support import (assert_problem, encryption_settings, metric_value,
                           referral_form, wait_until)

NOTIFY_SERVICE_ID = str(uuid.uuid4())
NOTIFY_SECRET = str(uuid.uuid4())
SMS_TEMPLATE_ID = str(uuid.uuid4())
EMAIL_TEMPLATE_ID = str(uuid.uuid4())
NO_QUIET_HOURS = {"START": "00:00", "END": "00:00", "TIMEZONE": "Europe/London"}


# -- the edges: a real SMTP server and a GOV.UK Notify stand-in ---------------------

class NotifyStandIn(BaseHTTPRequestHandler):
    """POST /v2/notifications/sms and /email as GOV.UK Notify answers them:
    the bearer JWT must be signed with the key's secret and issued by its
    service id; ``server.failures`` (a list of statuses) answers the next
    requests with those errors first."""

    def do_POST(self):
        server = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        kind = self.path.rsplit("/", 1)[-1]
        record = {"path": self.path, "body": body,
                  "authorization": self.headers.get("Authorization", "")}
        server.requests.append(record)
        try:
            scheme, token = record["authorization"].split(" ", 1)
            claims = jwt.decode(token, NOTIFY_SECRET, algorithms=["HS256"])
            assert scheme == "Bearer" and claims["iss"] == NOTIFY_SERVICE_ID
            assert abs(claims["iat"] - time.time()) <= 30
        except Exception:
            return self._answer(403, {"status_code": 403, "errors": [
                {"error": "AuthError", "message": "Invalid token: signature, api token "
                                                  "not found"}]})
        if self.path not in ("/v2/notifications/sms", "/v2/notifications/email"):
            return self._answer(404, {"status_code": 404, "errors": [
                {"error": "NotFound", "message": "Not found"}]})
        if server.failures:
            status = server.failures.pop(0)
            message = ("phone_number Not a UK mobile number" if status == 400
                       else "Internal server error")
            return self._answer(status, {"status_code": status, "errors": [
                {"error": "ValidationError" if status == 400 else "Exception",
                 "message": message}]})
        notification_id = str(uuid.uuid4())
        template_id = body["template_id"]
        content = ({"body": body["personalisation"]["body"], "from_number": "GOVUK"}
                   if kind == "sms" else
                   {"body": body["personalisation"]["body"],
                    "subject": body["personalisation"]["subject"],
                    "from_email": "alongside@notifications.service.gov.uk"})
        server.delivered.append(record)
        self._answer(201, {
            "id": notification_id, "reference": body.get("reference"), "content": content,
            "uri": f"{server.base_url}/v2/notifications/{notification_id}",
            "template": {"id": template_id, "version": 1,
                         "uri": f"{server.base_url}/services/{NOTIFY_SERVICE_ID}/"
                                f"templates/{template_id}"},
            "scheduled_for": None})

    def _answer(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def notify_server():
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), NotifyStandIn)
    server.requests, server.delivered, server.failures = [], [], []
    server.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


# -- the service, set up against them ---------------------------------------------------

def messaging_settings(**changes):
    settings = {"DISPATCH_INTERVAL_SECONDS": 0.1, "MAX_ATTEMPTS": 3,
                "RETRY_DELAYS_SECONDS": [0.1, 0.2], "CLAIM_SECONDS": 30,
                "RPC_TIMEOUT_SECONDS": 5, "EMAIL_PROVIDER": "smtp",
                "DEFAULT_CHANNEL_ORDER": ["email", "sms"], "QUIET_HOURS": NO_QUIET_HOURS,
                "REMINDER_AT": "10:00"}
    settings.update(changes)
    return settings


@pytest.fixture
def start_messaging(start_service, smtp_server, notify_server):
    def start(smtp_port=None, **changes):
        return start_service(
            MessagingService, ENCRYPTION=encryption_settings(),
            MESSAGING=messaging_settings(**changes),
            SMTP={"HOST": "127.0.0.1", "PORT": smtp_port or smtp_server.port,
                  "SECURITY": "none", "FROM": "Alongside <no-reply@alongside.test>",
                  "TIMEOUT_SECONDS": 2},
            NOTIFY={"API_KEY": f"alongside_test-{NOTIFY_SERVICE_ID}-{NOTIFY_SECRET}",
                    "BASE_URL": notify_server.base_url, "SMS_TEMPLATE_ID": SMS_TEMPLATE_ID,
                    "EMAIL_TEMPLATE_ID": EMAIL_TEMPLATE_ID, "TIMEOUT_SECONDS": 2})
    return start


def refer(api, token, **changes):
    answer = api.call("POST", "/api/v1/referrals", token, json=referral_form(**changes))
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def message_log(api, token, **query):
    answer = api.call("GET", "/api/v1/messages", token, params=query)
    assert answer.status_code == 200, answer.text
    return answer.json()


def wait_for_log(api, token, count, timeout=15, **query):
    return wait_until(lambda: (lambda rows: len(rows) >= count and rows)(
        message_log(api, token, **query)), timeout, what=f"{count} messages {query}")




def register_volunteer(api, token, **changes):
    form = dict({"name": "Vic Volunteer", "email": "vic@volunteers.test",
                 "phone": "07700 900456", "postcode": "CM1 3AB"}, **changes)
    answer = api.call("POST", "/api/v1/volunteers", token, json=form)
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def match_confirmed(site_id, referral_id, volunteer_id):
    now = datetime.now(timezone.utc)
    return new_event("match.confirmed", {
        "match_id": str(uuid.uuid4()), "referral_id": referral_id,
        "volunteer_id": volunteer_id, "volunteer_user_id": None, "score": 0.8,
        "confirmed_at": now.isoformat()}, site_id=site_id, now=now)


# -- the tests --------------------------------------------------------------------------

def test_a_referral_emails_the_referrer_and_the_parent(world, start_messaging, smtp_server,
                                                       broker):
    api, _, sites, coordinators = world
    _, config = start_messaging()
    sent_events = broker.listen("message.sent", exchange=event_exchange("messaging"))
    referral_id = refer(api, coordinators["essex"])

    to_referrer = smtp_server.wait_for("sam.midwife@nhs.test")[0]
    to_parent = smtp_server.wait_for("alex@example.test")[0]
    reference = referral_id[:8].upper()
    assert to_referrer["Subject"] == f"Referral received ({reference})"
    assert to_referrer["From"] == "Alongside <no-reply@alongside.test>"
    body = to_referrer.get_content()
    assert "Dear Sam Midwife" in body and "referring Alex Parent" in body
    assert reference in body
    assert to_parent["Subject"] == "We have received your referral to Alongside"
    assert "Dear Alex Parent" in to_parent.get_content()

    events = [broker.get(sent_events), broker.get(sent_events)]
    assert {e["data"]["recipient_kind"] for e in events} == {"referrer", "parent"}
    for event in events:
        assert event["siteid"] == sites["essex"] and event["data"]["channel"] == "email"
        assert event["data"]["kind"] == "referral_received"
        assert "alex" not in json.dumps(event).lower()   # no address, no name

    rows = wait_for_log(api, coordinators["essex"], 2, status="sent")
    assert {r["recipient_kind"] for r in rows} == {"referrer", "parent"}
    for row in rows:
        assert row["attempts"] == 1 and row["sent_at"] and row["error"] is None
        assert not {"content", "to", "subject", "text", "person_id"} & set(row)
    assert message_log(api, coordinators["derby"]) == []     # another site sees none
    assert metric_value(config, "alongside_messages_sent_total", channel="email",
                        kind="referral_received") == 2


def test_a_site_template_in_the_parents_language_is_used(world, start_messaging,
                                                         smtp_server):
    api, _, _, coordinators = world
    start_messaging()
    token = coordinators["essex"]
    path = "/api/v1/message-templates/referral_received/parent/pl"
    answer = api.call("PUT", path, token, json={
        "subject": "Otrzymaliśmy zgłoszenie ({{ reference }})",
        "text": "Dzień dobry {{ recipient_name }}!", "sms": "Alongside: {{ reference }}",
        "html": "<p>Dzień dobry {{ recipient_name }}</p>"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["source"] == "site" and "recipient_name" in answer.json()["variables"]
    assert api.call("GET", path, token).json()["text"] == "Dzień dobry {{ recipient_name }}!"

    referral_id = refer(api, token, preferred_language="pl", name="Ola <b>Nowak</b>")
    email = smtp_server.wait_for("alex@example.test")[0]
    assert email["Subject"] == f"Otrzymaliśmy zgłoszenie ({referral_id[:8].upper()})"
    assert email.get_body(("plain",)).get_content().strip() == "Dzień dobry Ola <b>Nowak</b>!"
    assert email.get_body(("html",)).get_content().strip() == (
        "<p>Dzień dobry Ola &lt;b&gt;Nowak&lt;/b&gt;</p>")
    # The referrer still gets the English default.
    assert smtp_server.wait_for("sam.midwife@nhs.test")[0]["Subject"].startswith(
        "Referral received")


def test_a_template_that_cannot_be_rendered_is_refused_and_nothing_saved(world,
                                                                        start_messaging):
    api, _, _, coordinators = world
    start_messaging()
    token = coordinators["essex"]
    path = "/api/v1/message-templates/referral_received/parent/en"
    problem = assert_problem(api.call("PUT", path, token, json={
        "subject": "Hi {{ nickname }}", "text": "{% if %}",
        "sms": "{{ recipient_name.__class__.__mro__ }}"}), 422)
    assert set(problem["errors"]) == {"subject", "text", "sms"}
    assert "nickname" in problem["errors"]["subject"][0]
    assert api.call("GET", path, token).json()["source"] == "default"
    assert_problem(api.call("PUT", "/api/v1/message-templates/referral_received/parent/en",
                            token, json={"subject": "s"}), 422)
    assert_problem(api.call("GET", "/api/v1/message-templates/referral_received/"
                                   "coordinator/en", token), 404)
    assert_problem(api.call("GET", "/api/v1/message-templates/birthday/parent/en",
                            token), 422)
    assert_problem(api.call("GET", "/api/v1/message-templates/referral_received/parent/pl",
                            token), 404)

    listing = api.call("GET", "/api/v1/message-templates", token).json()
    assert len(listing) == 11 and {t["source"] for t in listing} == {"default"}
    answer = api.call("PUT", path, token, json={"subject": "Hello", "text": "Hi {{ reference }}",
                                                "sms": "Hi"})
    assert answer.status_code == 200, answer.text
    assert api.call("GET", path, token).json()["source"] == "site"
    assert api.call("DELETE", path, token).status_code == 204
    assert api.call("GET", path, token).json()["source"] == "default"
    assert_problem(api.call("DELETE", path, token), 404)


def test_opt_outs_are_respected_and_sms_goes_through_notify(world, start_service,
                                                           start_messaging, smtp_server,
                                                           notify_server, broker):
    api, _, sites, coordinators = world
    start_service(TrainingService, ENCRYPTION=encryption_settings())
    start_messaging()
    token = coordinators["essex"]
    referral_id = refer(api, token)
    smtp_server.wait_for("alex@example.test")
    volunteer_id = register_volunteer(api, token)
    # The parent wants no email; the volunteer wants nothing at all.
    answer = api.call("PUT", f"/api/v1/messaging-preferences/parent/{referral_id}", token,
                      json={"opt_outs": ["email"]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["opt_outs"] == ["email"]
    answer = api.call("PUT", f"/api/v1/messaging-preferences/volunteer/{volunteer_id}",
                      token, json={"opt_outs": ["email", "sms"]})
    assert answer.status_code == 200, answer.text
    assert_problem(api.call("PUT", f"/api/v1/messaging-preferences/volunteer/{volunteer_id}",
                            token, json={"opt_outs": ["fax"]}), 422)

    broker.publish(match_confirmed(sites["essex"], referral_id, volunteer_id))
    wait_until(lambda: notify_server.delivered, 15, what="an SMS at Notify")
    request = notify_server.delivered[0]
    assert request["path"] == "/v2/notifications/sms"
    assert request["body"]["phone_number"] == "07700 900123"
    assert request["body"]["template_id"] == SMS_TEMPLATE_ID
    assert "Vic Volunteer" in request["body"]["personalisation"]["body"]
    assert request["body"]["reference"]

    rows = wait_for_log(api, token, 2, kind="match_confirmed")
    by_kind = {r["recipient_kind"]: r for r in rows}
    assert by_kind["volunteer"]["status"] == "skipped"
    assert by_kind["volunteer"]["error"]["code"] == "opted_out"
    assert wait_for_log(api, token, 1, kind="match_confirmed", status="sent")[0][
        "channel"] == "sms"
    assert len(smtp_server.to("alex@example.test")) == 1      # only the first one
    assert smtp_server.to("vic@volunteers.test") == []


def test_an_sms_in_quiet_hours_waits_for_their_end(world, start_messaging, notify_server,
                                                   smtp_server):
    api, _, _, coordinators = world
    _, config = start_messaging()
    token = coordinators["essex"]
    assert api.call("GET", "/api/v1/messaging-settings", token).json()["source"] == "default"
    # The site's quiet hours: from an hour ago to an hour from now.
    now = datetime.now(ZoneInfo("Europe/London"))
    quiet = {"start": (now - timedelta(hours=1)).strftime("%H:%M"),
             "end": (now + timedelta(hours=1)).strftime("%H:%M"),
             "timezone": "Europe/London"}
    answer = api.call("PUT", "/api/v1/messaging-settings", token, json={"quiet_hours": quiet})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"site_id": answer.json()["site_id"], "source": "site",
                             "quiet_hours": quiet}
    problem = assert_problem(api.call("PUT", "/api/v1/messaging-settings", token, json={
        "quiet_hours": {"start": "25:00", "end": "08:00", "timezone": "Mars/Olympus"}}), 422)
    assert set(problem["errors"]["quiet_hours"]) == {"start", "timezone"}
    refer(api, token, email=None)            # the parent can only be texted
    smtp_server.wait_for("sam.midwife@nhs.test")    # email is not held back
    wait_for_log(api, token, 1, recipient_kind="referrer", status="sent")
    row = wait_for_log(api, token, 1, recipient_kind="parent")[0]
    assert (row["status"], row["channel"]) == ("deferred", "sms")
    due = datetime.fromisoformat(row["due_at"])
    assert timedelta(minutes=58) < due - datetime.now(timezone.utc) <= timedelta(hours=1)
    time.sleep(0.5)                          # the dispatcher runs every 0.1 s
    assert notify_server.requests == []

    with ServiceRpcProxy("messaging", config) as messaging:
        early = messaging.dispatch_due((due - timedelta(minutes=1)).isoformat())
        assert early["sent"] == 0
        result = messaging.dispatch_due((due + timedelta(seconds=1)).isoformat())
    assert result["sent"] == 1
    assert notify_server.delivered[0]["body"]["phone_number"] == "07700 900123"
    assert message_log(api, token, recipient_kind="parent")[0]["status"] == "sent"


def test_smtp_down_is_retried_then_the_message_fails(world, start_messaging, broker):
    api, _, _, coordinators = world
    _, config = start_messaging(smtp_port=free_port())     # nothing listens there
    failed_events = broker.listen("message.failed", exchange=event_exchange("messaging"))
    refer(api, coordinators["essex"])
    rows = wait_for_log(api, coordinators["essex"], 2, status="failed")
    for row in rows:
        assert row["attempts"] == 3 and row["error"]["code"] == "smtp_unavailable"
        assert row["failed_at"] and row["sent_at"] is None
    events = [broker.get(failed_events), broker.get(failed_events)]
    assert {(e["data"]["attempts"], e["data"]["error_code"]) for e in events} == {
        (3, "smtp_unavailable")}
    assert metric_value(config, "alongside_messages_failed_total", channel="email",
                        kind="referral_received") == 2


def test_notify_5xx_is_retried_and_400_fails_at_once(world, start_messaging, notify_server):
    api, _, _, coordinators = world
    start_messaging(DEFAULT_CHANNEL_ORDER=["sms", "email"])
    token = coordinators["essex"]
    notify_server.failures[:] = [500, 429]
    refer(api, token, referrer_contact="07700 900999", email=None)
    rows = wait_for_log(api, token, 2, status="sent")
    assert sorted(r["attempts"] for r in rows) == [1, 3] or sorted(
        r["attempts"] for r in rows) == [2, 2]
    assert len(notify_server.delivered) == 2 and len(notify_server.requests) == 4

    notify_server.failures[:] = [400]
    refer(api, token, referrer_contact="sam@nhs.test", email=None, phone="07700 900321")
    row = wait_for_log(api, token, 1, status="failed")[0]
    assert row["attempts"] == 1 and row["error"]["code"] == "notify_400"
    assert "Not a UK mobile number" in row["error"]["detail"]
    assert "900321" not in json.dumps(row)


def test_a_safeguarding_concern_reaches_every_coordinator_at_once(world, start_messaging,
                                                                   smtp_server):
    api, admin, sites, coordinators = world
    start_messaging()
    answer = api.call("POST", "/api/v1/users", admin, json={
        "email": "second@essex.test", "name": "Second Coordinator",
        "password": "a long enough pw", "role": "site_coordinator",
        "site_id": sites["essex"]})
    assert answer.status_code == 201, answer.text
    token = coordinators["essex"]
    referral_id = refer(api, token)
    answer = api.call("POST", f"/api/v1/referrals/{referral_id}/safeguarding-concerns",
                      token, json={"severity": "high", "notes": "Bruising seen."})
    assert answer.status_code == 201, answer.text
    for address in ("coord@essex.test", "second@essex.test"):
        email = smtp_server.wait_for(address)[0]
        assert email["Subject"].startswith("URGENT: safeguarding concern (high)")
        assert "Bruising" not in email.get_content()          # notes never leave
        assert referral_id[:8].upper() in email.get_content()
    assert smtp_server.to("coord@derby.test") == []
    rows = wait_for_log(api, token, 2, kind="safeguarding_concern", status="sent")
    assert all(r["urgent"] and r["recipient_kind"] == "coordinator" for r in rows)


def test_a_contact_reminder_goes_the_day_before(world, start_service, start_messaging,
                                                smtp_server):
    api, _, _, coordinators = world
    start_service(TrainingService, ENCRYPTION=encryption_settings())
    _, config = start_messaging()
    token = coordinators["essex"]
    referral_id = refer(api, token)
    wait_for_log(api, token, 2, kind="referral_received", status="sent")
    volunteer_id = register_volunteer(api, token)
    contact_at = (datetime.now(timezone.utc) + timedelta(days=3)).replace(
        hour=14, minute=0, second=0, microsecond=0)
    answer = api.call("POST", "/api/v1/contact-reminders", token, json={
        "referral_id": referral_id, "volunteer_id": volunteer_id,
        "contact_at": contact_at.isoformat(), "mode": "home_visit"})
    assert answer.status_code == 201, answer.text
    reminder = answer.json()
    remind_at = datetime.fromisoformat(reminder["remind_at"])
    assert remind_at.astimezone(ZoneInfo("Europe/London")).date() == (
        contact_at - timedelta(days=1)).astimezone(ZoneInfo("Europe/London")).date()
    assert len(reminder["message_ids"]) == 2
    assert {r["status"] for r in message_log(api, token, kind="contact_reminder")} == {
        "scheduled"}

    with ServiceRpcProxy("messaging", config) as messaging:
        assert messaging.dispatch_due((remind_at - timedelta(minutes=1)).isoformat())[
            "sent"] == 0
        assert messaging.dispatch_due((remind_at + timedelta(seconds=1)).isoformat())[
            "sent"] == 2
    email = smtp_server.wait_for("vic@volunteers.test")[0]
    assert email["Subject"] == "Reminder: home visit tomorrow"   # no name where it shows
    assert "Alex Parent" in email.get_body(("plain",)).get_content()
    assert smtp_server.wait_for("alex@example.test", 2)[1]["Subject"].startswith(
        "Reminder: Vic Volunteer")

    assert_problem(api.call("POST", "/api/v1/contact-reminders", token, json={
        "referral_id": referral_id, "volunteer_id": volunteer_id,
        "contact_at": "2020-01-01T10:00:00+00:00"}), 422)
    assert_problem(api.call("POST", "/api/v1/contact-reminders", token, json={
        "referral_id": "no-such-referral", "volunteer_id": volunteer_id,
        "contact_at": contact_at.isoformat()}), 404)
    again = api.call("POST", "/api/v1/contact-reminders", token, json={
        "referral_id": referral_id, "volunteer_id": volunteer_id,
        "contact_at": contact_at.isoformat()}).json()
    assert api.call("DELETE", f"/api/v1/contact-reminders/{again['id']}",
                    token).status_code == 204
    assert {r["status"] for r in message_log(api, token, kind="contact_reminder")} == {
        "sent", "cancelled"}


def test_dbs_expiring_tells_the_volunteer_and_the_coordinators(world, start_service,
                                                               start_messaging, smtp_server):
    api, _, _, coordinators = world
    start_service(TrainingService, ENCRYPTION=encryption_settings())
    start_messaging()
    token = coordinators["essex"]
    volunteer_id = register_volunteer(api, token)
    issued = datetime.now(timezone.utc).date() - timedelta(days=3 * 365 - 10)
    answer = api.call("POST", f"/api/v1/volunteers/{volunteer_id}/dbs-checks", token, json={
        "level": "enhanced", "issued_on": issued.isoformat(), "update_service": False,
        "certificate_number": "001234567890"})
    assert answer.status_code == 201, answer.text   # lapses in 9 days: training tells at once
    to_volunteer = smtp_server.wait_for("vic@volunteers.test")[0]
    assert to_volunteer["Subject"].startswith("Your DBS check needs renewing by")
    assert "001234567890" not in to_volunteer.get_content()
    to_coordinator = smtp_server.wait_for("coord@essex.test")[0]
    assert to_coordinator["Subject"].startswith("DBS check expiring: Vic Volunteer")
    rows = wait_for_log(api, token, 2, kind="dbs_expiring", status="sent")
    assert {r["recipient_kind"] for r in rows} == {"volunteer", "coordinator"}


def test_a_proposed_match_asks_the_volunteer_and_tells_the_parent(
        world, start_service, start_messaging, smtp_server, broker):
    api, _, sites, coordinators = world
    start_service(TrainingService, ENCRYPTION=encryption_settings())
    start_messaging()
    token = coordinators["essex"]
    referral_id = refer(api, token)
    volunteer_id = register_volunteer(api, token)
    now = datetime.now(timezone.utc)
    match_id = str(uuid.uuid4())
    broker.publish(new_event("match.proposed", {
        "match_id": match_id, "referral_id": referral_id, "volunteer_id": volunteer_id,
        "volunteer_user_id": None, "proposed_at": now.isoformat()},
        site_id=sites["essex"], now=now))
    email = smtp_server.wait_for("vic@volunteers.test")[0]
    assert email["Subject"] == f"A family you could support ({match_id[:8].upper()})"
    assert "Alex Parent" not in email.get_content()     # not before they accept
    assert smtp_server.wait_for("alex@example.test", 2)[1]["Subject"] == (
        "We are finding a volunteer for you")


def test_a_mailbox_that_does_not_exist_fails_at_once(world, start_messaging, smtp_server):
    api, _, _, coordinators = world
    start_messaging()
    token = coordinators["essex"]
    refer(api, token, referrer_contact="bounce@nhs.test")
    smtp_server.wait_for("alex@example.test")
    row = wait_for_log(api, token, 1, status="failed")[0]
    assert (row["recipient_kind"], row["attempts"]) == ("referrer", 1)
    assert row["error"]["code"] == "smtp_550"
    assert "no such mailbox" in row["error"]["detail"]
    assert "bounce@nhs.test" not in json.dumps(row)


def test_email_can_go_through_notify_instead_of_smtp(world, start_messaging, notify_server,
                                                     smtp_server):
    api, _, _, coordinators = world
    start_messaging(EMAIL_PROVIDER="notify")
    referral_id = refer(api, coordinators["essex"])
    wait_until(lambda: len(notify_server.delivered) == 2, 15, what="two emails at Notify")
    by_address = {r["body"]["email_address"]: r for r in notify_server.delivered}
    request = by_address["sam.midwife@nhs.test"]
    assert request["path"] == "/v2/notifications/email"
    assert request["body"]["template_id"] == EMAIL_TEMPLATE_ID
    assert request["body"]["personalisation"]["subject"] == (
        f"Referral received ({referral_id[:8].upper()})")
    assert "Dear Sam Midwife" in request["body"]["personalisation"]["body"]
    assert "alex@example.test" in by_address
    assert smtp_server.messages == []
