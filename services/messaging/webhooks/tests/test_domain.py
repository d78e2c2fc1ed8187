"""The webhook rules, without broker or database."""
import base64
from datetime import datetime, timedelta, timezone

import pytest
from standardwebhooks import Webhook

from services.messaging.webhooks import domain
from services.messaging.webhooks.entrypoints import signed_headers
from shared.errors import Conflict, ValidationFailed

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=timezone.utc)
SETTINGS = domain.Settings({"MAX_ATTEMPTS": 4, "BACKOFF_BASE_SECONDS": 2,
                            "BACKOFF_CAP_SECONDS": 10})


@pytest.mark.parametrize("url", [
    "https://crm.council.example/hooks", "https://93.184.215.14:8443/in?x=1"])
def test_https_urls_are_accepted(url):
    assert domain.check_url(url, allow_insecure_localhost=False) == url


@pytest.mark.parametrize("url, allowed, reason", [
    ("http://crm.council.example/hooks", True, "https"),
    ("http://127.0.0.1:9000/hooks", False, "https"),
    ("https://localhost/hooks", False, "this machine"),
    ("https://10.1.2.3/hooks", True, "private"),
    ("https://169.254.169.254/latest", True, "link-local"),
    ("https://user:pw@crm.example/hooks", True, "credentials"),
    ("ftp://crm.example/hooks", True, "absolute https"),
    ("crm.example/hooks", True, "absolute https"),
])
def test_other_urls_are_refused_with_the_reason(url, allowed, reason):
    with pytest.raises(ValidationFailed) as refused:
        domain.check_url(url, allow_insecure_localhost=allowed)
    assert reason in refused.value.errors["url"][0]


@pytest.mark.parametrize("url", ["http://127.0.0.1:9000/hooks", "http://localhost/x"])
def test_plain_http_to_this_machine_only_when_the_setting_allows_it(url):
    assert domain.check_url(url, allow_insecure_localhost=True) == url


def test_unknown_event_types_are_named():
    with pytest.raises(ValidationFailed) as refused:
        domain.check_event_types(["referral.received", "parent.named"])
    assert "parent.named" in refused.value.errors["event_types"][0]
    assert domain.check_event_types(["match.confirmed", "referral.received",
                                     "match.confirmed"]) == [
        "match.confirmed", "referral.received"]


def test_the_secret_is_standard_webhooks_format_and_signs_as_the_package_verifies():
    secret = domain.new_secret(bytes(range(32)))
    assert secret.startswith("whsec_")
    assert base64.b64decode(secret[len("whsec_"):]) == bytes(range(32))
    with pytest.raises(ValueError):
        domain.new_secret(b"short")
    body = domain.payload_of({"id": "e1", "type": "referral.received", "data": {}})
    at = datetime.now(timezone.utc)
    headers = signed_headers(secret, "e1", at, body)
    assert headers["webhook-id"] == "e1"
    assert headers["webhook-timestamp"] == str(int(at.timestamp()))
    assert Webhook(secret).verify(body, headers) == {"id": "e1", "type":
                                                     "referral.received", "data": {}}
    # The signature is v1,base64(HMAC-SHA256(key, "id.timestamp.body")).
    import hashlib
    import hmac
    expected = hmac.new(bytes(range(32)), f"e1.{int(at.timestamp())}.{body}".encode(),
                        hashlib.sha256).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(expected).decode()


@pytest.mark.parametrize("status, error, verdict", [
    (200, None, "succeeded"), (204, None, "succeeded"), (410, None, "gone"),
    (500, None, "retry"), (503, None, "retry"), (429, None, "retry"),
    (408, None, "retry"), (None, "ReadTimeout: too slow", "retry"),
    (400, None, "refused"), (401, None, "refused"), (301, None, "refused"),
])
def test_each_answer_is_classified(status, error, verdict):
    assert domain.classify(status, error) == verdict


def test_backoff_is_exponential_capped_and_fully_jittered():
    assert [domain.backoff_delay(n, 2, 10, 0.999999) for n in (1, 2, 3, 4, 5)] == \
        pytest.approx([2, 4, 8, 10, 10], abs=1e-4)
    assert domain.backoff_delay(3, 2, 10, 0.0) == 0
    assert domain.backoff_delay(3, 2, 10, 0.5) == 4


def delivery(attempts=0):
    webhook = {"_id": "w1", "site_id": "essex"}
    record = domain.new_delivery("w1:e1", webhook, "{}", "e1", "referral.received", NOW)
    record["attempt_count"] = attempts
    return record


def test_a_5xx_is_retried_later_until_the_last_attempt():
    changes, outcome, disable = domain.after_attempt(
        delivery(0), 500, None, NOW, 12.3, SETTINGS, 0.5)
    assert outcome == "retrying" and not disable
    assert changes["$set"]["next_attempt_at"] == NOW + timedelta(seconds=1)
    assert "status" not in changes["$set"]
    assert changes["$push"]["attempts"]["n"] == 1
    assert changes["$push"]["attempts"]["status_code"] == 500
    changes, outcome, _ = domain.after_attempt(delivery(3), 500, None, NOW, 1, SETTINGS, 0.5)
    assert outcome == "failed" and changes["$set"]["status"] == "failed"


def test_success_gone_and_refused():
    changes, outcome, disable = domain.after_attempt(delivery(1), 200, None, NOW, 1,
                                                     SETTINGS, 0.1)
    assert (outcome, disable, changes["$set"]["status"]) == ("succeeded", False, "succeeded")
    changes, outcome, disable = domain.after_attempt(delivery(0), 410, None, NOW, 1,
                                                     SETTINGS, 0.1)
    assert (outcome, disable, changes["$set"]["status"]) == ("gone", True, "failed")
    changes, outcome, disable = domain.after_attempt(delivery(0), 400, None, NOW, 1,
                                                     SETTINGS, 0.1)
    assert (outcome, disable, changes["$set"]["status"]) == ("failed", False, "failed")


def test_replay_sends_each_first_delivery_in_a_range_once():
    webhook = {"_id": "w1", "site_id": "essex", "status": "active"}
    first = dict(delivery(), _id="w1:e1", created_at=NOW)
    second = dict(delivery(), _id="w1:e2", event_id="e2", created_at=NOW + timedelta(1))
    replayed = dict(delivery(), _id="replay-1", replay_of="w1:e1",
                    created_at=NOW + timedelta(2))
    chosen = domain.replay_targets(webhook, [replayed, second, first], {"since": NOW})
    assert [d["_id"] for d in chosen] == ["w1:e1", "w1:e2"]
    assert domain.replay_targets(webhook, [replayed], {"delivery_id": "replay-1"}) == [
        replayed]
    with pytest.raises(Conflict):
        domain.replay_targets(dict(webhook, status="disabled"), [first],
                              {"delivery_id": "w1:e1"})


@pytest.mark.parametrize("form, field", [
    ({}, "_schema"), ({"delivery_id": "d", "since": NOW, "until": NOW}, "_schema"),
    ({"since": NOW}, "until"), ({"until": NOW}, "since"),
    ({"since": NOW, "until": NOW}, "until")])
def test_a_replay_names_one_delivery_or_a_whole_range(form, field):
    with pytest.raises(ValidationFailed) as refused:
        domain.check_replay_form(dict({"delivery_id": None, "since": None,
                                       "until": None}, **form))
    assert field in refused.value.errors


def test_settings_have_defaults_and_read_strings_from_the_environment():
    settings = domain.Settings(None)
    assert (settings.max_attempts, settings.allow_insecure_localhost) == (8, False)
    assert domain.Settings({"ALLOW_INSECURE_LOCALHOST": "true"}).allow_insecure_localhost
    assert not domain.Settings({"ALLOW_INSECURE_LOCALHOST": "false"}).allow_insecure_localhost
