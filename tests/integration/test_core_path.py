"""The golden path through the gateway, on the real broker and datastore,
with the referrals, training, matching and gateway services running:

a volunteer registers, completes the core course, has an enhanced DBS check
and a supervision, becomes active -> training emits
``volunteer.eligibility_changed`` -> matching marks the profile matchable; a
midwife's API key refers a pregnant parent; the coordinator triages and
accepts -> ``referral.accepted`` -> demand in matching; suggestions rank the
volunteer with the score broken down and the hard rules passed; the
coordinator confirms -> ``match.confirmed`` -> the referral is ``matched``.
Then two coordinators confirm the volunteer's last place at once: one 201,
one 409.
"""
import uuid
from datetime import datetime, timedelta, timezone

import eventlet
import pytest

from services.matching.service import MatchingService
from services.training.service import TrainingService
from shared.messaging import event_exchange
from tests.support import assert_problem, referral_form, wait_until

PASSWORD = "a long enough pw"
TRAINING_KEY = "test master key for training: 32+ characters long"


def ago(days):
    return (datetime.now(timezone.utc).date() - timedelta(days=days)).isoformat()


def ok(answer, status=200):
    assert answer.status_code == status, answer.text
    return answer.json()


@pytest.fixture
def core(world, start_service):
    start_service(TrainingService, ENCRYPTION={"MASTER_KEY": TRAINING_KEY})
    start_service(MatchingService)
    return world


def new_user(api, token, role, site_id=None):
    email = f"{role}-{uuid.uuid4().hex[:6]}@essex.test"
    body = {"email": email, "name": f"A {role}", "password": PASSWORD, "role": role}
    if site_id:
        body["site_id"] = site_id
    user = ok(api.call("POST", "/api/v1/users", token, json=body), 201)
    return user["id"], api.login(email, PASSWORD)


def eligible_volunteer(api, token, name):
    """Registered, core course, enhanced DBS, supervision, active."""
    volunteer = ok(api.call("POST", "/api/v1/volunteers", token, json={
        "name": name, "email": f"{uuid.uuid4().hex[:6]}@example.org",
        "phone": "07700 900456", "postcode": "CM1 3CD"}), 201)
    assert volunteer["eligibility"]["eligible"] is False
    base = f"/api/v1/volunteers/{volunteer['id']}"
    course = ok(api.call("POST", "/api/v1/courses", token, json={
        "name": "Community Parent core", "kind": "core",
        "modules": [{"title": "Listening", "hours": 3}, {"title": "Safeguarding"}]}), 201)
    ok(api.call("POST", f"{base}/training-completions", token, json={
        "course_id": course["id"], "completed_on": ago(20)}), 201)
    ok(api.call("POST", f"{base}/dbs-checks", token, json={
        "level": "enhanced", "issued_on": ago(30), "update_service": False,
        "certificate_number": "001234567890"}), 201)
    ok(api.call("POST", f"{base}/supervisions", token, json={
        "supervised_on": ago(7), "supervisor_id": "coord-1",
        "notes": "Went through the first visit."}), 201)
    ok(api.call("POST", f"{base}/stage", token, json={"stage": "in_training"}))
    record = ok(api.call("POST", f"{base}/stage", token, json={"stage": "active"}))
    assert record["eligibility"]["eligible"] is True, record["eligibility"]
    return record["id"]


def accepted_referral(api, coordinator, key, **changes):
    """A midwife refers (API key); the coordinator triages and accepts."""
    referral = ok(api.call("POST", "/api/v1/referrals", key=key,
                           json=referral_form(**changes)), 201)
    for action in ("start_triage", "accept"):
        referral = ok(api.call("POST", f"/api/v1/referrals/{referral['id']}/triage",
                               coordinator, json={"action": action,
                                                  "version": referral["version"]}))
    assert referral["status"] == "accepted"
    return referral["id"]


def suggestions_for(api, token, referral_id, check):
    def ready():
        answer = api.call("GET", f"/api/v1/referrals/{referral_id}/match-suggestions", token)
        return answer.status_code == 200 and check(answer.json()) and answer.json()
    return wait_until(ready, what=f"suggestions for {referral_id}")


def test_referral_to_match_through_the_gateway(core, broker):
    api, admin, sites, coordinators = core
    essex, site = coordinators["essex"], sites["essex"]
    eligibility = broker.listen("volunteer.eligibility_changed",
                                exchange=event_exchange("training"))
    matches = broker.listen("match.*", exchange=event_exchange("matching"))

    # 1. A volunteer becomes eligible; matching hears of it.
    user_id, volunteer_token = new_user(api, essex, "volunteer")
    volunteer = eligible_volunteer(api, essex, "Grace Hopper")
    event = broker.get(eligibility)
    assert event["data"]["volunteer_id"] == volunteer and event["data"]["eligible"] is True
    profile = ok(api.call("PUT", f"/api/v1/volunteers/{volunteer}/matching-profile", essex,
                          json={"languages": ["en"], "districts": ["CM1"],
                                "lived_experience": ["isolation"],
                                "support_modes": ["home_visit", "phone"], "capacity": 2,
                                "birth_buddy": True, "available_days": ["mon", "wed", "fri"],
                                "user_id": user_id}))
    assert profile["has_profile"] is True
    wait_until(lambda: api.call("GET", f"/api/v1/volunteers/{volunteer}/matching-profile",
                                essex).json()["matchable"], what="the profile to be matchable")

    # 2. A midwife refers a pregnant parent; 3. the coordinator accepts.
    key = ok(api.call("POST", "/api/v1/api-keys", essex, json={
        "name": "Essex maternity unit", "role": "referrer"}), 201)["key"]
    referral = accepted_referral(api, essex, key)

    # 4. Suggestions: the volunteer, every hard rule passed, the score explained.
    body = suggestions_for(api, essex, referral, lambda b: b["candidates"] == 1)
    assert body["status"] == "waiting"
    [top] = body["suggestions"]
    assert top["volunteer_id"] == volunteer
    assert top["hard_rules"] == {"eligible": "passed", "same_site": "passed",
                                 "capacity_left": "passed", "language": "passed",
                                 "not_declined_before": "passed"}
    parts = top["breakdown"]
    assert parts["area"]["value"] == 1.0 and parts["language"]["value"] == 1.0
    assert parts["shared_experience"]["value"] == 1.0 and parts["modes"]["value"] == 1.0
    assert parts["load"]["value"] == 1.0 and parts["availability"]["value"] == 1.0
    assert parts["birth_buddy"] == {"value": 1.0, "weight": 1.0, "points": 1.0,
                                    "applies": True}   # due 2027-03: pregnant
    assert top["score"] == pytest.approx(1.0)
    weights = body["weights"]
    assert top["score"] == pytest.approx(
        sum(p["points"] for p in parts.values()) / sum(weights.values()), abs=1e-3)

    # 5. The coordinator confirms; the referral becomes matched.
    match = ok(api.call("POST", "/api/v1/matches", essex, json={
        "referral_id": referral, "volunteer_id": volunteer}), 201)
    assert match["status"] == "open"
    event = broker.get(matches)
    assert event["type"] == "match.confirmed"
    assert event["data"]["volunteer_user_id"] == user_id
    assert event["data"]["referral_id"] == referral
    # The volunteer sees their match; the referral follows (the referrals
    # service's handler of match.confirmed).
    assert [m["id"] for m in ok(api.call("GET", "/api/v1/matches", volunteer_token))] == [
        match["id"]]
    wait_until(lambda: api.call("GET", f"/api/v1/referrals/{referral}", essex).json()[
        "status"] == "matched", what="the referral to be matched")

    # 6. The volunteer's last place, two coordinators at once: one 201, one 409.
    _, second = new_user(api, admin, "site_coordinator", site)
    waiting = [accepted_referral(api, essex, key) for _ in range(2)]
    for referral_id in waiting:
        suggestions_for(api, essex, referral_id, lambda b: b["candidates"] == 1)
    pool = eventlet.GreenPool(2)
    answers = list(pool.starmap(lambda token, referral_id: api.call(
        "POST", "/api/v1/matches", token,
        json={"referral_id": referral_id, "volunteer_id": volunteer}),
        zip((essex, second), waiting)))
    assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]
    refused = next(a for a in answers if a.status_code == 409)
    assert assert_problem(refused, 409)["errors"] in (
        {"volunteer_id": ["no capacity left"]}, {"hard_rules": ["capacity_left"]})
    shown = ok(api.call("GET", f"/api/v1/volunteers/{volunteer}/matching-profile", essex))
    assert shown["active"] == shown["capacity"] == 2
    won = next(a for a in answers if a.status_code == 201).json()["referral_id"]
    lost = next(r for r in waiting if r != won)
    wait_until(lambda: api.call("GET", f"/api/v1/referrals/{won}", essex).json()[
        "status"] == "matched", what="the second referral to be matched")
    assert api.call("GET", f"/api/v1/referrals/{lost}", essex).json()["status"] == "accepted"
    body = suggestions_for(api, essex, lost, lambda b: True)
    assert body["status"] == "waiting" and body["candidates"] == 0
