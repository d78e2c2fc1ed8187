"""A referral follows matching's and journeys' events, through the real
gateway, broker and datastore: matched, active, back to the waiting list on a
rematch, closed when the journey ends; duplicates change nothing; an event
the referral's status does not allow is noted and changes nothing, and does
not end in the dead letters. Matching and journeys are not running: their
events are published as they would publish them."""
import uuid
from datetime import datetime, timezone

import pytest

from shared.deadletters import count as dead_letters
from shared.events import new_event
from tests.support import referral_form, wait_until




def now():
    return datetime.now(timezone.utc)


def event(type_, site_id, referral_id, **data):
    return new_event(type_, dict(data, referral_id=referral_id), site_id=site_id,
                     subject=referral_id, now=now())


def match_confirmed(site_id, referral_id, match_id, volunteer_id="v-1", user_id=None):
    return event("match.confirmed", site_id, referral_id, match_id=match_id,
                 volunteer_id=volunteer_id, volunteer_user_id=user_id, score=0.7,
                 confirmed_at=now().isoformat())


def journey_started(site_id, referral_id, match_id, volunteer_id="v-1"):
    return event("journey.started", site_id, referral_id, journey_id=str(uuid.uuid4()),
                 volunteer_id=volunteer_id, match_id=match_id, started_at=now().isoformat())


def match_ended(site_id, referral_id, match_id, rematch, reason, volunteer_id="v-1"):
    return event("match.ended", site_id, referral_id, match_id=match_id,
                 volunteer_id=volunteer_id, reason=reason, rematch=rematch,
                 ended_at=now().isoformat())


def journey_ended(site_id, referral_id, reason, volunteer_id="v-1"):
    return event("journey.ended", site_id, referral_id, journey_id=str(uuid.uuid4()),
                 volunteer_id=volunteer_id, reason=reason, ended_at=now().isoformat())


def refer(api, token, **changes):
    answer = api.call("POST", "/api/v1/referrals", token, json=referral_form(**changes))
    assert answer.status_code == 201, answer.text
    return answer.json()


def triage(api, token, referral, *actions):
    for action in actions:
        answer = api.call("POST", f"/api/v1/referrals/{referral['id']}/triage", token,
                          json={"action": action, "version": referral["version"]})
        assert answer.status_code == 200, answer.text
        referral = answer.json()
    return referral


def read(api, token, referral_id):
    answer = api.call("GET", f"/api/v1/referrals/{referral_id}", token)
    assert answer.status_code == 200, answer.text
    return answer.json()


def becomes(api, token, referral_id, check, what):
    return wait_until(lambda: (lambda r: r if check(r) else None)(
        read(api, token, referral_id)), timeout=15, what=what)


def accepted_referral(world, **changes):
    api, _, sites, coordinators = world
    referral = refer(api, coordinators["essex"], **changes)
    return triage(api, coordinators["essex"], referral, "start_triage", "accept")


def test_matched_active_rematched_and_closed_by_events(world, broker, rabbit_config):
    api, _, sites, coordinators = world
    essex, token = sites["essex"], coordinators["essex"]
    listener = broker.listen("referral.closed")
    referral = accepted_referral(world)
    rid = referral["id"]

    first = broker.publish(match_confirmed(essex, rid, "m-1", user_id="u-1"))
    matched = becomes(api, token, rid, lambda r: r["status"] == "matched", "matched")
    assert matched["match"]["volunteer_user_id"] == "u-1"
    assert matched["status_history"][-1]["event"] == "match.confirmed"
    assert matched["version"] == referral["version"] + 1
    broker.publish(journey_started(essex, rid, "m-1"))
    active = becomes(api, token, rid, lambda r: r["status"] == "active", "active")

    # The same event again (a redelivery) changes nothing.
    broker.publish(first)
    broker.publish(match_ended(essex, rid, "m-0", True, "volunteer_left"))  # an older match
    broker.publish(match_ended(essex, rid, "m-1", True, "volunteer_left"))
    back = becomes(api, token, rid, lambda r: r["status"] == "accepted", "rematch")
    assert back["match"] is None and back["version"] == active["version"] + 1
    assert [h["status"] for h in back["status_history"]] == [
        "received", "in_triage", "accepted", "matched", "active", "accepted"]

    broker.publish(match_confirmed(essex, rid, "m-2", volunteer_id="v-2"))
    becomes(api, token, rid, lambda r: r["status"] == "matched", "matched again")
    broker.publish(journey_started(essex, rid, "m-2", volunteer_id="v-2"))
    becomes(api, token, rid, lambda r: r["status"] == "active", "active again")
    broker.publish(match_ended(essex, rid, "m-2", False, "completed", volunteer_id="v-2"))
    still = becomes(api, token, rid, lambda r: (r["match"] or {}).get("ended_at"),
                    "the match's end noted")
    assert still["status"] == "active"   # without a rematch the coordinator closes
    broker.publish(journey_ended(essex, rid, "moved_away", volunteer_id="v-2"))
    closed = becomes(api, token, rid, lambda r: r["status"] == "closed", "closed")
    assert closed["close_reason"] == "moved_away" and closed["event_anomalies"] == []
    announced = broker.get(listener)
    assert announced["data"] == {"referral_id": rid, "reason": "moved_away",
                                 "closed_at": announced["data"]["closed_at"]}
    assert dead_letters(rabbit_config["AMQP_URI"], "referrals") == 0


def test_an_event_the_status_does_not_allow_is_noted_not_applied_not_dead(
        world, broker, rabbit_config):
    api, _, sites, coordinators = world
    essex, token = sites["essex"], coordinators["essex"]
    referral = refer(api, token)
    referral = triage(api, token, referral, "withdraw")
    stray = broker.publish(match_confirmed(essex, referral["id"], "m-9"))
    noted = becomes(api, token, referral["id"], lambda r: r["event_anomalies"],
                    "the stray event noted")
    assert noted["status"] == "withdrawn" and noted["version"] == referral["version"]
    [anomaly] = noted["event_anomalies"]
    assert anomaly["event_id"] == stray["id"] and anomaly["status"] == "withdrawn"
    assert "withdrawn" in anomaly["detail"] and noted["match"] is None
    # Other sites' events never reach this site's referral; unknown ones are skipped.
    broker.publish(journey_started(sites["derby"], referral["id"], "m-9"))
    broker.publish(journey_started(essex, "no-such-referral", "m-9"))
    broker.publish(stray)   # redelivered: noted once
    marker = broker.publish(journey_ended(essex, referral["id"], "completed"))
    last = becomes(api, token, referral["id"], lambda r: len(r["event_anomalies"]) == 2,
                   "the second stray event noted")
    assert [a["event_id"] for a in last["event_anomalies"]] == [stray["id"], marker["id"]]
    assert last["status"] == "withdrawn"
    assert dead_letters(rabbit_config["AMQP_URI"], "referrals") == 0


@pytest.mark.parametrize("journey_first", [True, False])
def test_events_out_of_order_end_in_the_same_place(world, broker, journey_first):
    api, _, sites, coordinators = world
    essex, token = sites["essex"], coordinators["essex"]
    rid = accepted_referral(world)["id"]
    events = [match_confirmed(essex, rid, "m-1", user_id="u-7"),
              journey_started(essex, rid, "m-1")]
    for item in (reversed(events) if journey_first else events):
        broker.publish(item)
    done = becomes(api, token, rid, lambda r: r["status"] == "active"
                   and (r["match"] or {}).get("volunteer_user_id") == "u-7", "active")
    assert done["match"]["match_id"] == "m-1" and done["event_anomalies"] == []
