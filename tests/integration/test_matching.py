"""Matching through the real gateway over HTTP, with the matching service on
the real broker and datastore: profiles, eligibility by event, demand by
event, suggestions, confirming (and the capacity race), declining, ending,
rematch flags, the match plan, bad input and site isolation."""
import json
import uuid
from datetime import datetime, timezone

import eventlet
import pytest
from kombu import Producer

from services.matching.service import MatchingService
from shared.events import exchange_name_for, new_event
from shared.messaging import declare_event_topology, event_exchange
from tests.support import assert_problem, wait_until

PASSWORD = "a long enough pw"


def publish(broker, event):
    """Publish an event on its owning service's exchange, as that service would."""
    owner = exchange_name_for(event["type"]).split(".")[0]
    channel = broker.connection.default_channel
    declare_event_topology(channel, owner)
    Producer(channel).publish(json.dumps(event), exchange=event_exchange(owner),
                              routing_key=event["type"], content_type="application/json",
                              content_encoding="utf-8", delivery_mode=2)


def accepted(broker, site_id, **data):
    now = datetime.now(timezone.utc)
    referral_id = data.pop("referral_id", str(uuid.uuid4()))
    body = {"referral_id": referral_id, "preferred_language": "en",
            "interpreter_needed": False, "area": "CM1", "needs": ["isolation"],
            "preferred_support": ["home_visit"], "due_month": "2027-03",
            "accepted_at": now.isoformat()}
    body.update(data)
    publish(broker, new_event("referral.accepted", body, site_id=site_id,
                              subject=referral_id, now=now))
    return referral_id


def eligibility(broker, site_id, volunteer_id, eligible):
    now = datetime.now(timezone.utc)
    publish(broker, new_event("volunteer.eligibility_changed", {
        "volunteer_id": volunteer_id, "eligible": eligible,
        "reasons": [] if eligible else ["supervision_overdue"],
        "evaluated_on": now.date().isoformat()}, site_id=site_id,
        subject=volunteer_id, now=now))


def volunteer_left(broker, site_id, volunteer_id):
    now = datetime.now(timezone.utc)
    publish(broker, new_event("volunteer.left", {
        "volunteer_id": volunteer_id, "previous_stage": "active",
        "left_on": now.date().isoformat()}, site_id=site_id, subject=volunteer_id, now=now))


PROFILE = {"languages": ["en"], "districts": ["CM1"], "lived_experience": ["isolation"],
           "support_modes": ["home_visit", "phone"], "capacity": 1, "birth_buddy": True,
           "available_days": ["mon", "wed"]}


def put_profile(api, token, volunteer_id, **changes):
    answer = api.call("PUT", f"/api/v1/volunteers/{volunteer_id}/matching-profile", token,
                      json=dict(PROFILE, **changes))
    assert answer.status_code == 200, answer.text
    return answer.json()


def suggestions(api, token, referral_id, **params):
    return api.call("GET", f"/api/v1/referrals/{referral_id}/match-suggestions", token,
                    params=params)


def wait_for_suggestions(api, token, referral_id, check=lambda body: True):
    def ready():
        answer = suggestions(api, token, referral_id)
        return answer.status_code == 200 and check(answer.json()) and answer.json()
    return wait_until(ready, what=f"suggestions for {referral_id}")


def volunteer_user(api, coordinator, name):
    email = f"{name}-{uuid.uuid4().hex[:6]}@essex.test"
    answer = api.call("POST", "/api/v1/users", coordinator, json={
        "email": email, "name": name, "password": PASSWORD, "role": "volunteer"})
    assert answer.status_code == 201, answer.text
    return answer.json()["id"], api.login(email, PASSWORD)


@pytest.fixture
def matching(world, start_service, broker):
    start_service(MatchingService)
    return world


def test_profile_eligibility_suggestions_confirm_decline_end(matching, broker):
    api, _, sites, coordinators = matching
    essex, site = coordinators["essex"], sites["essex"]
    listener = broker.listen("match.*", exchange=event_exchange("matching"))
    anna_user, anna_token = volunteer_user(api, essex, "anna")
    anna, ben = str(uuid.uuid4()), str(uuid.uuid4())
    profile = put_profile(api, essex, anna, user_id=anna_user, districts=["cm1", "CM2"])
    assert profile["districts"] == ["CM1", "CM2"] and profile["matchable"] is False
    put_profile(api, essex, ben, districts=["CM2"], capacity=2)

    referral = accepted(broker, site, area="CM1")
    body = wait_for_suggestions(api, essex, referral)
    assert body["candidates"] == 0 and body["status"] == "waiting"   # nobody eligible yet
    eligibility(broker, site, anna, True)
    eligibility(broker, site, ben, True)
    body = wait_for_suggestions(api, essex, referral, lambda b: b["candidates"] == 2)
    ranked = body["suggestions"]
    assert [s["volunteer_id"] for s in ranked] == [anna, ben]   # anna covers CM1
    assert ranked[0]["hard_rules"] == {"eligible": "passed", "same_site": "passed",
                                       "capacity_left": "passed", "language": "passed"}
    assert ranked[0]["breakdown"]["area"]["value"] == 1.0
    assert ranked[1]["breakdown"]["area"]["value"] == 0.5
    assert set(ranked[0]["breakdown"]) == {"area", "language", "shared_experience",
                                           "modes", "load"}
    got = api.call("GET", f"/api/v1/volunteers/{anna}/matching-profile", essex).json()
    assert got["eligible"] is True and got["matchable"] is True and got["active"] == 0

    # The weights are the site's: only load counts now, and Ben has more room.
    answer = api.call("PUT", f"/api/v1/sites/{site}/matching-weights", essex, json={
        "area": 0, "language": 0, "shared_experience": 0, "modes": 0, "load": 1})
    assert answer.status_code == 200, answer.text
    ranked = suggestions(api, essex, referral).json()["suggestions"]
    assert {s["score"] for s in ranked} == {1.0}   # both empty: a tie, by id
    api.call("PUT", f"/api/v1/sites/{site}/matching-weights", essex, json={
        "area": 3, "language": 2, "shared_experience": 2, "modes": 1, "load": 1})

    # Confirm: match.confirmed, anna is full, the referral is matched.
    answer = api.call("POST", "/api/v1/matches", essex,
                      json={"referral_id": referral, "volunteer_id": anna})
    assert answer.status_code == 201, answer.text
    match = answer.json()
    assert match["status"] == "open" and match["score"] > 0
    event = broker.get(listener)
    assert event["type"] == "match.confirmed" and event["siteid"] == site
    assert event["data"]["match_id"] == match["id"]
    assert_problem(api.call("POST", "/api/v1/matches", essex,
                            json={"referral_id": referral, "volunteer_id": ben}), 409)
    other = accepted(broker, site, area="CM1")
    body = wait_for_suggestions(api, essex, other)
    assert [s["volunteer_id"] for s in body["suggestions"]] == [ben]   # anna is full
    problem = assert_problem(api.call("POST", "/api/v1/matches", essex,
                                      json={"referral_id": other, "volunteer_id": anna}), 409)
    assert problem["errors"]["hard_rules"] == ["capacity_left"]

    # Decline: only by anna herself; the referral waits again, anna has room again.
    ben_user, ben_token = volunteer_user(api, essex, "ben")
    assert_problem(api.call("POST", f"/api/v1/matches/{match['id']}/decline", ben_token,
                            json={}), 404)
    assert_problem(api.call("POST", f"/api/v1/matches/{match['id']}/decline", essex,
                            json={}), 403)
    mine = api.call("GET", "/api/v1/matches", anna_token).json()
    assert [m["id"] for m in mine] == [match["id"]]
    assert api.call("GET", "/api/v1/matches", ben_token).json() == []
    answer = api.call("POST", f"/api/v1/matches/{match['id']}/decline", anna_token,
                      json={"reason": "unavailable"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "declined"
    event = broker.get(listener)
    assert event["type"] == "match.declined" and event["data"]["reason"] == "unavailable"
    assert suggestions(api, essex, referral).json()["status"] == "waiting"
    assert api.call("GET", f"/api/v1/volunteers/{anna}/matching-profile",
                    essex).json()["active"] == 0
    assert_problem(api.call("POST", f"/api/v1/matches/{match['id']}/decline", anna_token,
                            json={}), 409)

    # End, with a reason: completed closes the referral's wait.
    answer = api.call("POST", "/api/v1/matches", essex,
                      json={"referral_id": referral, "volunteer_id": ben})
    assert answer.status_code == 201, answer.text
    second = answer.json()
    assert broker.get(listener)["type"] == "match.confirmed"
    answer = api.call("POST", f"/api/v1/matches/{second['id']}/end", essex,
                      json={"reason": "completed"})
    assert answer.status_code == 200 and answer.json()["status"] == "ended"
    event = broker.get(listener)
    assert event["type"] == "match.ended" and event["data"]["rematch"] is False
    assert suggestions(api, essex, referral).json()["status"] == "closed"
    assert_problem(api.call("POST", f"/api/v1/matches/{second['id']}/end", essex,
                            json={"reason": "completed"}), 409)
    audit = api.call("GET", "/api/v1/audit", essex, params={"action": "match.confirm"}).json()
    assert len(audit) == 4 and {a["outcome"] for a in audit} == {201, 409}


@pytest.mark.stress
def test_capacity_holds_when_coordinators_confirm_at_once(matching, broker):
    api, _, sites, coordinators = matching
    essex, site = coordinators["essex"], sites["essex"]
    volunteer = str(uuid.uuid4())
    put_profile(api, essex, volunteer, capacity=2)
    eligibility(broker, site, volunteer, True)
    referrals = [accepted(broker, site) for _ in range(10)]
    for referral in referrals:
        wait_for_suggestions(api, essex, referral, lambda b: b["candidates"] == 1)

    def confirm(referral):
        return api.call("POST", "/api/v1/matches", essex,
                        json={"referral_id": referral, "volunteer_id": volunteer})

    pool = eventlet.GreenPool(10)
    answers = list(pool.imap(confirm, referrals))
    codes = sorted(a.status_code for a in answers)
    assert codes == [201] * 2 + [409] * 8, [a.text for a in answers]
    for answer in answers:
        if answer.status_code == 409:
            assert_problem(answer, 409)
    profile = api.call("GET", f"/api/v1/volunteers/{volunteer}/matching-profile",
                       essex).json()
    assert profile["active"] == 2 and profile["capacity"] == 2
    open_matches = api.call("GET", "/api/v1/matches", essex,
                            params={"status": "open"}).json()
    assert len(open_matches) == 2
    # One referral, two coordinators at once, two volunteers: one match only.
    spare = [str(uuid.uuid4()) for _ in range(2)]
    for volunteer_id in spare:
        put_profile(api, essex, volunteer_id)
        eligibility(broker, site, volunteer_id, True)
    referral = accepted(broker, site)
    wait_for_suggestions(api, essex, referral, lambda b: b["candidates"] == 2)
    answers = list(pool.imap(lambda v: api.call("POST", "/api/v1/matches", essex, json={
        "referral_id": referral, "volunteer_id": v}), spare))
    assert sorted(a.status_code for a in answers) == [201, 409]
    profiles = [api.call("GET", f"/api/v1/volunteers/{v}/matching-profile", essex).json()
                for v in spare]
    assert sorted(p["active"] for p in profiles) == [0, 1]


def test_losing_eligibility_or_leaving_flags_open_matches_for_rematch(matching, broker):
    api, _, sites, coordinators = matching
    essex, site = coordinators["essex"], sites["essex"]
    anna, ben = str(uuid.uuid4()), str(uuid.uuid4())
    for volunteer_id in (anna, ben):
        put_profile(api, essex, volunteer_id, capacity=2)
        eligibility(broker, site, volunteer_id, True)
    matches = {}
    for volunteer_id in (anna, ben):
        referral = accepted(broker, site)
        wait_for_suggestions(api, essex, referral, lambda b: b["candidates"] >= 1)
        answer = api.call("POST", "/api/v1/matches", essex,
                          json={"referral_id": referral, "volunteer_id": volunteer_id})
        assert answer.status_code == 201, answer.text
        matches[volunteer_id] = answer.json()["id"]

    eligibility(broker, site, anna, False)
    volunteer_left(broker, site, ben)

    def flagged():
        found = api.call("GET", "/api/v1/matches", essex,
                         params={"needs_rematch": "true"}).json()
        return len(found) == 2 and found
    found = {m["volunteer_id"]: m for m in wait_until(flagged, what="rematch flags")}
    assert found[anna]["rematch_reason"] == "volunteer_not_eligible"
    assert found[ben]["rematch_reason"] == "volunteer_left"
    ben_profile = api.call("GET", f"/api/v1/volunteers/{ben}/matching-profile", essex).json()
    assert ben_profile["left"] is True and ben_profile["matchable"] is False
    # Ending with a rematch reason puts the referral back on the waiting list.
    answer = api.call("POST", f"/api/v1/matches/{matches[ben]}/end", essex,
                      json={"reason": "volunteer_left"})
    assert answer.status_code == 200, answer.text
    referral = answer.json()["referral_id"]
    assert suggestions(api, essex, referral).json()["status"] == "waiting"
    # Eligible again: anna's flag clears; ben stays gone.
    eligibility(broker, site, anna, True)
    wait_until(lambda: api.call("GET", "/api/v1/matches", essex,
                                params={"needs_rematch": "true"}).json() == [],
               what="anna's flag to clear")


def test_match_plan_assigns_the_waiting_list_within_capacity(matching, broker):
    api, _, sites, coordinators = matching
    essex, site = coordinators["essex"], sites["essex"]
    # The crafted case of the unit test, through the whole path: greedy would
    # leave the English-speaking parent without anybody.
    anna, ben = str(uuid.uuid4()), str(uuid.uuid4())
    put_profile(api, essex, anna, languages=["en", "pl"], capacity=1)
    put_profile(api, essex, ben, languages=["pl"], districts=["CM2"], capacity=1,
                lived_experience=[])
    for volunteer_id in (anna, ben):
        eligibility(broker, site, volunteer_id, True)
    polish = accepted(broker, site, preferred_language="pl")
    english = accepted(broker, site, area="CM9")
    wait_for_suggestions(api, essex, polish, lambda b: b["candidates"] == 2)
    wait_for_suggestions(api, essex, english, lambda b: b["candidates"] == 1)
    answer = api.call("POST", f"/api/v1/sites/{site}/match-plan", essex, json={})
    assert answer.status_code == 200, answer.text
    plan = answer.json()
    assert {p["referral_id"]: p["volunteer_id"] for p in plan["pairs"]} == {
        polish: ben, english: anna}
    assert plan["unmatched"] == [] and plan["waiting"] == 2 and plan["places"] == 2
    assert plan["total_score"] == pytest.approx(sum(p["score"] for p in plan["pairs"]),
                                                abs=1e-3)
    # It stores nothing: both still wait; a part of the list can be planned.
    assert suggestions(api, essex, polish).json()["status"] == "waiting"
    part = api.call("POST", f"/api/v1/sites/{site}/match-plan", essex,
                    json={"referral_ids": [english]}).json()
    assert [p["referral_id"] for p in part["pairs"]] == [english]


def test_bad_input_on_every_endpoint_is_422(matching, broker):
    api, _, sites, coordinators = matching
    essex, site = coordinators["essex"], sites["essex"]
    volunteer = str(uuid.uuid4())
    put_profile(api, essex, volunteer)
    eligibility(broker, site, volunteer, True)
    referral = accepted(broker, site)
    wait_for_suggestions(api, essex, referral, lambda b: b["candidates"] == 1)
    match = api.call("POST", "/api/v1/matches", essex,
                     json={"referral_id": referral, "volunteer_id": volunteer}).json()
    user_id, volunteer_token = volunteer_user(api, essex, "vic")
    cases = [
        ("PUT", f"/api/v1/volunteers/{volunteer}/matching-profile", essex,
         dict(PROFILE, capacity=0, support_modes=["telepathy"]), None,
         {"capacity", "support_modes"}),
        ("PUT", f"/api/v1/volunteers/{volunteer}/matching-profile", essex,
         dict(PROFILE, user_id="no-such-user"), None, {"user_id"}),
        ("PUT", f"/api/v1/sites/{site}/matching-weights", essex,
         {"area": -1, "language": 2, "shared_experience": 2, "modes": 1}, None,
         {"area", "load"}),
        ("GET", f"/api/v1/referrals/{referral}/match-suggestions", essex, None,
         {"limit": "0"}, {"limit"}),
        ("GET", f"/api/v1/referrals/{referral}/match-suggestions", essex, None,
         {"colour": "blue"}, {"colour"}),
        ("POST", "/api/v1/matches", essex, {"referral_id": referral, "site_id": "x"}, None,
         {"volunteer_id", "site_id"}),
        ("GET", "/api/v1/matches", essex, None, {"status": "happy"}, {"status"}),
        ("POST", f"/api/v1/matches/{match['id']}/decline", volunteer_token,
         {"reason": "bored"}, None, {"reason"}),
        ("POST", f"/api/v1/matches/{match['id']}/end", essex, {}, None, {"reason"}),
        ("POST", f"/api/v1/matches/{match['id']}/end", essex, {"reason": "tired"}, None,
         {"reason"}),
        ("POST", f"/api/v1/sites/{site}/match-plan", essex, {"referral_ids": "all"}, None,
         {"referral_ids"}),
        ("POST", f"/api/v1/sites/{site}/match-plan", essex,
         {"referral_ids": [referral, "unknown"]}, None, {"referral_ids"}),
    ]
    for method, path, token, body, params, fields in cases:
        answer = api.call(method, path, token, json=body, params=params)
        problem = assert_problem(answer, 422)
        assert set(problem["errors"]) == fields, (path, problem)
    # An array body, and no body at all.
    assert_problem(api.call("POST", "/api/v1/matches", essex, json=["x"]), 422)
    assert_problem(api.call("POST", "/api/v1/matches", essex), 400)
    # Nothing was changed by any of them.
    profile = api.call("GET", f"/api/v1/volunteers/{volunteer}/matching-profile",
                       essex).json()
    assert profile["capacity"] == 1 and profile["active"] == 1
    assert [m["status"] for m in api.call("GET", "/api/v1/matches", essex).json()] == ["open"]


def test_another_site_sees_nothing_and_roles_are_checked(matching, broker):
    api, admin, sites, coordinators = matching
    essex, derby, site = coordinators["essex"], coordinators["derby"], sites["essex"]
    volunteer = str(uuid.uuid4())
    put_profile(api, essex, volunteer)
    eligibility(broker, site, volunteer, True)
    referral = accepted(broker, site)
    wait_for_suggestions(api, essex, referral, lambda b: b["candidates"] == 1)
    match = api.call("POST", "/api/v1/matches", essex,
                     json={"referral_id": referral, "volunteer_id": volunteer}).json()
    # Derby's coordinator: every essex record is "not found".
    assert_problem(suggestions(api, derby, referral), 404)
    assert_problem(api.call("GET", f"/api/v1/volunteers/{volunteer}/matching-profile",
                            derby), 404)
    assert_problem(api.call("PUT", f"/api/v1/volunteers/{volunteer}/matching-profile",
                            derby, json=PROFILE), 404)
    assert_problem(api.call("POST", "/api/v1/matches", derby,
                            json={"referral_id": referral, "volunteer_id": volunteer}), 404)
    assert_problem(api.call("POST", f"/api/v1/matches/{match['id']}/end", derby,
                            json={"reason": "completed"}), 404)
    assert_problem(api.call("POST", f"/api/v1/sites/{site}/match-plan", derby, json={}), 404)
    assert_problem(api.call("GET", f"/api/v1/sites/{site}/matching-weights", derby), 404)
    assert_problem(api.call("PUT", f"/api/v1/sites/{site}/matching-weights", derby, json={
        "area": 1, "language": 1, "shared_experience": 1, "modes": 1, "load": 1}), 404)
    assert api.call("GET", "/api/v1/matches", derby).json() == []
    # An event of derby's changes nothing in essex.
    eligibility(broker, sites["derby"], volunteer, False)
    # The national admin sees no parents; a volunteer manages nothing.
    assert_problem(suggestions(api, admin, referral), 403)
    _, volunteer_token = volunteer_user(api, essex, "val")
    assert_problem(suggestions(api, volunteer_token, referral), 403)
    assert_problem(api.call("POST", "/api/v1/matches", volunteer_token,
                            json={"referral_id": referral, "volunteer_id": volunteer}), 403)
    assert_problem(api.call("GET", "/api/v1/matches", admin), 403)
    eventlet.sleep(0.5)
    profile = api.call("GET", f"/api/v1/volunteers/{volunteer}/matching-profile",
                       essex).json()
    assert profile["eligible"] is True and profile["active"] == 1
