"""Safeguarding concerns beyond the coordinator's own, through the real
gateway, broker and datastore: the volunteer matched to a parent raises one
(and only about their own parents); an outcome measure whose self-harm item
scored above 0 raises an urgent one at once, once per outcome; a
coordinator's acknowledgement is announced."""
import uuid
from datetime import datetime, timezone

from services.referrals import domain
from shared.events import new_event
from tests.integration.test_referral_lifecycle import (accepted_referral, becomes,
                                                       match_confirmed, match_ended)
from tests.support import assert_problem, wait_until

PASSWORD = "a long enough pw"


def volunteer_login(world, email="vol@essex.test"):
    api, _, _, coordinators = world
    answer = api.call("POST", "/api/v1/users", coordinators["essex"], json={
        "email": email, "name": "Val Volunteer", "password": PASSWORD,
        "role": "volunteer"})
    assert answer.status_code == 201, answer.text
    return answer.json()["id"], api.login(email, PASSWORD)


def concerns(api, token, **query):
    answer = api.call("GET", "/api/v1/safeguarding-concerns", token, params=query)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_the_matched_volunteer_raises_a_concern_about_their_parent_only(world, broker):
    api, _, sites, coordinators = world
    essex, coordinator = sites["essex"], coordinators["essex"]
    user_id, volunteer = volunteer_login(world)
    listener = broker.listen("safeguarding.*")
    mine = accepted_referral(world)
    other = accepted_referral(world, name="Bo Other", phone="07700 900555",
                              date_of_birth="1990-01-01")
    path = f"/api/v1/referrals/{mine['id']}/safeguarding-concerns"
    body = {"severity": "high", "notes": "Parent said she feels unsafe at home"}
    # Before the match, the parent is not the volunteer's: not found.
    assert_problem(api.call("POST", path, volunteer, json=body), 404)

    broker.publish(match_confirmed(essex, mine["id"], "m-1", user_id=user_id))
    broker.publish(match_confirmed(essex, other["id"], "m-2", user_id="someone-else"))
    becomes(api, coordinator, other["id"], lambda r: r["status"] == "matched", "matched")
    becomes(api, coordinator, mine["id"], lambda r: r["status"] == "matched", "matched")
    answer = api.call("POST", path, volunteer, json=body)
    assert answer.status_code == 201, answer.text
    concern = answer.json()
    assert concern["raised_by"] == {"id": user_id, "role": "volunteer"}
    assert concern["referral_status"] == "matched" and concern["status"] == "open"
    raised = broker.get(listener)
    assert raised["type"] == "safeguarding.concern_raised"
    assert raised["data"]["raised_by_role"] == "volunteer" and "unsafe" not in str(raised)

    # Not their parent, another site's, bad input, and the coordinator's own views.
    assert_problem(api.call("POST", f"/api/v1/referrals/{other['id']}/safeguarding-concerns",
                            volunteer, json=body), 404)
    problem = assert_problem(api.call("POST", path, volunteer, json={"severity": "dire"}), 422)
    assert set(problem["errors"]) == {"severity", "notes"}
    assert_problem(api.call("GET", "/api/v1/safeguarding-concerns", volunteer), 403)
    assert_problem(api.call("POST", f"/api/v1/safeguarding-concerns/{concern['id']}/"
                            "acknowledge", volunteer, json={}), 403)
    assert_problem(api.call("GET", f"/api/v1/referrals/{mine['id']}", volunteer), 403)
    assert concerns(api, coordinator, unacknowledged="true")["unacknowledged"] == 1

    # The coordinator acknowledges: announced, without the notes.
    answer = api.call("POST", f"/api/v1/safeguarding-concerns/{concern['id']}/acknowledge",
                      coordinator, json={"notes": "Spoke to the volunteer"})
    assert answer.status_code == 200, answer.text
    acknowledged = broker.get(listener)
    assert acknowledged["type"] == "safeguarding.concern_acknowledged"
    assert acknowledged["data"] == {"concern_id": concern["id"], "referral_id": mine["id"],
                                    "severity": "high",
                                    "acknowledged_at": acknowledged["data"]["acknowledged_at"]}
    assert concerns(api, coordinator, unacknowledged="true")["unacknowledged"] == 0

    # Once the match has ended, the parent is no longer the volunteer's.
    broker.publish(match_ended(essex, mine["id"], "m-1", False, "completed"))
    becomes(api, coordinator, mine["id"], lambda r: (r["match"] or {}).get("ended_at"),
            "the match ended")
    assert_problem(api.call("POST", path, volunteer, json=body), 404)


def outcome(site_id, referral_id, outcome_id, self_harm_risk=True):
    now = datetime.now(timezone.utc)
    return new_event("outcome.recorded", {
        "journey_id": "j-1", "referral_id": referral_id, "volunteer_id": "v-1",
        "outcome_id": outcome_id, "instrument": "epds", "time_point": "review",
        "recorded_on": now.date().isoformat(), "scores": {"total": 14.0},
        "flags": ["possible_depression"], "self_harm_risk": self_harm_risk},
        site_id=site_id, subject=referral_id, now=now)


def test_a_self_harm_answer_raises_one_urgent_concern_per_outcome(world, broker):
    api, _, sites, coordinators = world
    essex, coordinator = sites["essex"], coordinators["essex"]
    listener = broker.listen("safeguarding.concern_raised")
    referral = accepted_referral(world)
    calm = broker.publish(outcome(essex, referral["id"], "o-0", self_harm_risk=False))
    flagged = outcome(essex, referral["id"], "o-1")
    broker.publish(flagged)
    broker.publish(flagged)   # redelivered
    # Announced again under a new event id (say, a replayed outbox): still once.
    broker.publish(outcome(essex, referral["id"], "o-1"))
    found = wait_until(lambda: concerns(api, coordinator)["items"], timeout=15,
                       what="the concern")
    [concern] = found
    assert concern["severity"] == "urgent" and concern["status"] == "open"
    assert concern["raised_by"] == {"id": None, "role": "system"}
    assert concern["notes"] == "EPDS item 10 answered above 0 (outcome o-1)"
    assert concern["outcome_id"] == "o-1" and concern["referral_id"] == referral["id"]
    assert concern["referral_status"] == "accepted"
    assert concern["id"] == domain.self_harm_concern_id(essex, "o-1")
    raised = broker.get(listener)
    assert raised["data"]["concern_id"] == concern["id"]
    assert raised["data"]["raised_by_role"] == "system" and raised["data"]["severity"] == "urgent"
    assert "EPDS" not in str(raised) and calm["id"] not in str(raised)
    # A later outcome with the flag is another concern; nothing else was raised.
    broker.publish(outcome(essex, referral["id"], "o-2"))
    second = broker.get(listener)
    assert second["data"]["concern_id"] == domain.self_harm_concern_id(essex, "o-2")
    listing = concerns(api, coordinator, referral_id=referral["id"])
    assert listing["count"] == 2 and listing["unacknowledged"] == 2
    assert concerns(api, coordinators["derby"])["count"] == 0
    assert broker.depth(listener) == 0


def test_a_self_harm_answer_about_an_unknown_referral_is_still_raised(world, broker):
    api, _, sites, coordinators = world
    unknown = str(uuid.uuid4())
    broker.publish(outcome(sites["essex"], unknown, "o-x"))
    [concern] = wait_until(lambda: concerns(api, coordinators["essex"])["items"],
                           timeout=15, what="the concern")
    assert concern["referral_id"] == unknown and concern["referral_status"] is None
