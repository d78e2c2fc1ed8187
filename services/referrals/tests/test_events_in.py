"""What other services' events do to a referral, fast: every status against
match.confirmed, journey.started, match.ended (with and without rematch) and
journey.ended; duplicates and stale events change nothing; illegal ones are
noted, never applied. Volunteers' concerns and the self-harm concern."""
from datetime import datetime, timezone

import pytest

from services.referrals import domain
from shared.events import CATALOGUE

from services.referrals.tests.test_domain import referral_in

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)
EVENT = {"id": "e-1", "type": "match.confirmed"}


def confirmed(match_id="m-1", user="u-vol"):
    return {"match_id": match_id, "referral_id": "r-1", "volunteer_id": "v-1",
            "volunteer_user_id": user, "score": 0.8, "confirmed_at": "2026-11-19T09:00:00"}


def started(match_id="m-1"):
    return {"journey_id": "j-1", "referral_id": "r-1", "volunteer_id": "v-1",
            "match_id": match_id, "started_at": "2026-11-19T10:00:00"}


def ended(rematch, match_id="m-1", reason=None):
    return {"match_id": match_id, "referral_id": "r-1", "volunteer_id": "v-1",
            "reason": reason or ("volunteer_left" if rematch else "completed"),
            "rematch": rematch, "ended_at": "2026-12-01T09:00:00"}


def journey_ended(reason, volunteer_id="v-1"):
    return {"journey_id": "j-1", "referral_id": "r-1", "volunteer_id": volunteer_id,
            "reason": reason, "ended_at": "2026-12-01T09:00:00"}


def apply(referral, effect):
    """The referral as the update leaves it (the $set/$push subset used)."""
    after = dict(referral)
    for key, value in (effect.update or {}).get("$set", {}).items():
        if "." in key:
            top, sub = key.split(".", 1)
            after[top] = dict(after[top] or {}, **{sub: value})
        else:
            after[key] = value
    for key, value in (effect.update or {}).get("$push", {}).items():
        after[key] = list(after.get(key) or []) + [value]
    return after


def matched(match=None):
    referral = referral_in("matched")
    referral["match"] = match or {"match_id": "m-1", "volunteer_id": "v-1",
                                  "volunteer_user_id": "u-vol", "confirmed_at": "x",
                                  "ended_at": None}
    return referral


def test_a_confirmed_match_moves_an_accepted_referral_and_remembers_the_volunteer():
    referral = referral_in("accepted")
    effect = domain.on_match_confirmed(referral, EVENT, confirmed(), NOW)
    assert effect.outcome == domain.APPLIED and effect.events == []
    after = apply(referral, effect)
    assert after["status"] == "matched" and after["version"] == referral["version"] + 1
    assert after["match"]["volunteer_user_id"] == "u-vol"
    assert after["status_history"][-1] == {"status": "matched", "at": NOW,
                                           "by": domain.SYSTEM, "event": "match.confirmed"}
    again = domain.on_match_confirmed(after, EVENT, confirmed(), NOW)
    assert again.outcome == domain.DUPLICATE and again.update is None


@pytest.mark.parametrize("status", ["received", "in_triage", "declined", "signposted",
                                    "withdrawn", "closed"])
def test_a_match_for_a_referral_not_waiting_is_noted_never_applied(status):
    referral = referral_in(status)
    effect = domain.on_match_confirmed(referral, EVENT, confirmed(), NOW)
    assert effect.outcome == domain.REFUSED and effect.events == []
    assert set(effect.update) == {"$push"}   # the status and version stay
    note = effect.update["$push"]["event_anomalies"]
    assert note["event_id"] == "e-1" and note["status"] == status
    assert status in note["detail"]


def test_a_second_open_match_is_refused_an_ended_one_is_replaced():
    assert domain.on_match_confirmed(matched(), EVENT, confirmed("m-2"),
                                     NOW).outcome == domain.REFUSED
    old = matched({"match_id": "m-1", "volunteer_id": "v-1", "volunteer_user_id": None,
                   "confirmed_at": "x", "ended_at": "y"})
    effect = domain.on_match_confirmed(old, EVENT, confirmed("m-2"), NOW)
    assert effect.outcome == domain.APPLIED
    assert apply(old, effect)["match"]["match_id"] == "m-2"
    assert apply(old, effect)["status"] == "matched"


def test_a_journey_activates_a_matched_referral_or_an_accepted_one_whose_match_is_late():
    effect = domain.on_journey_started(matched(), EVENT, started(), NOW)
    assert apply(matched(), effect)["status"] == "active"
    early = referral_in("accepted")
    effect = domain.on_journey_started(early, EVENT, started(), NOW)
    after = apply(early, effect)
    assert after["status"] == "active" and after["match"]["match_id"] == "m-1"
    # The late match.confirmed then only adds the volunteer's login.
    late = domain.on_match_confirmed(after, EVENT, confirmed(), NOW)
    assert late.outcome == domain.APPLIED
    assert apply(after, late)["match"]["volunteer_user_id"] == "u-vol"
    assert apply(after, late)["status"] == "active"
    assert domain.on_journey_started(after, EVENT, started(), NOW).outcome == domain.DUPLICATE
    for status in ("received", "withdrawn", "closed", "declined"):
        assert domain.on_journey_started(referral_in(status), EVENT, started(),
                                         NOW).outcome == domain.REFUSED


@pytest.mark.parametrize("status", ["matched", "active"])
def test_a_match_ended_for_rematch_puts_the_referral_back_on_the_waiting_list(status):
    referral = dict(matched(), status=status)
    effect = domain.on_match_ended(referral, EVENT, ended(True), NOW)
    after = apply(referral, effect)
    assert after["status"] == "accepted" and after["match"] is None
    assert after["status_history"][-1]["reason"] == "volunteer_left"
    assert domain.on_match_ended(after, EVENT, ended(True), NOW).outcome == domain.DUPLICATE


def test_a_match_ended_without_rematch_stays_for_the_coordinator_to_close():
    referral = dict(matched(), status="active")
    effect = domain.on_match_ended(referral, EVENT, ended(False), NOW)
    after = apply(referral, effect)
    assert after["status"] == "active" and after["match"]["ended_at"]
    assert after["match"]["end_reason"] == "completed"
    assert domain.on_match_ended(after, EVENT, ended(False), NOW).outcome == domain.DUPLICATE
    # An earlier match's end changes nothing.
    assert domain.on_match_ended(matched(), EVENT, ended(True, "m-0"),
                                 NOW).outcome == domain.DUPLICATE
    assert domain.on_match_ended(referral_in("withdrawn"), EVENT, ended(True),
                                 NOW).outcome == domain.REFUSED


@pytest.mark.parametrize("reason, close_reason", [
    ("completed", "completed"), ("parent_ended", "parent_ended"),
    ("moved_away", "moved_away"), ("no_contact", "no_contact"),
    ("safeguarding", "safeguarding"), ("other", "other")])
def test_a_journey_ended_closes_the_referral_with_its_reason(reason, close_reason):
    referral = dict(matched(), status="active")
    effect = domain.on_journey_ended(referral, EVENT, journey_ended(reason), NOW)
    after = apply(referral, effect)
    assert after["status"] == "closed" and after["close_reason"] == close_reason
    [closed] = effect.events
    assert closed["type"] == "referral.closed"
    assert CATALOGUE["referral.closed"].schema().load(closed["data"])["reason"] == close_reason
    assert domain.on_journey_ended(after, EVENT, journey_ended(reason),
                                   NOW).outcome == domain.DUPLICATE


def test_every_journey_end_reason_maps_onto_a_close_reason_or_a_rematch():
    from shared.events.types.journeys import JOURNEY_END_REASONS
    assert set(domain.JOURNEY_CLOSE_REASONS) == set(JOURNEY_END_REASONS)
    assert set(domain.JOURNEY_CLOSE_REASONS.values()) - {None} <= set(domain.CLOSE_REASONS)


def test_a_journey_ended_for_rematch_or_by_an_earlier_volunteer_closes_nothing():
    referral = dict(matched(), status="active")
    assert domain.on_journey_ended(referral, EVENT, journey_ended("rematched"),
                                   NOW).outcome == domain.DUPLICATE
    assert domain.on_journey_ended(referral, EVENT, journey_ended("completed", "v-0"),
                                   NOW).outcome == domain.DUPLICATE
    assert domain.on_journey_ended(referral_in("accepted"), EVENT,
                                   journey_ended("completed"), NOW).outcome == domain.REFUSED


def test_only_the_matched_volunteer_may_raise_a_concern():
    coordinator = {"id": "u-c", "role": "site_coordinator"}
    volunteer = {"id": "u-vol", "role": "volunteer"}
    assert domain.may_raise_concern(referral_in("received"), coordinator)
    assert not domain.may_raise_concern(referral_in("received"), volunteer)
    assert domain.may_raise_concern(matched(), volunteer)
    assert not domain.may_raise_concern(matched(), {"id": "u-other", "role": "volunteer"})
    ended_match = matched(dict(matched()["match"], ended_at="2026-12-01"))
    assert not domain.may_raise_concern(ended_match, volunteer)
    no_login = matched(dict(matched()["match"], volunteer_user_id=None))
    assert not domain.may_raise_concern(no_login, {"id": None, "role": "volunteer"})


def test_a_self_harm_answer_raises_one_urgent_system_concern_per_outcome():
    referral = matched()
    concern, [raised] = domain.self_harm_concern(referral, "essex", "r-1", "o-9", NOW)
    assert concern["_id"] == domain.self_harm_concern_id("essex", "o-9")
    assert concern["_id"] != domain.self_harm_concern_id("essex", "o-10")
    assert concern["_id"] != domain.self_harm_concern_id("derby", "o-9")
    assert concern["severity"] == "urgent" and concern["outcome_id"] == "o-9"
    assert concern["notes"] == "EPDS item 10 answered above 0 (outcome o-9)"
    assert concern["raised_by"] == {"id": None, "role": "system"}
    assert CATALOGUE[raised["type"]].schema().load(raised["data"])["raised_by_role"] == "system"
    assert "EPDS" not in str(raised)
    unknown, _ = domain.self_harm_concern(None, "essex", "r-x", "o-9", NOW)
    assert unknown["referral_id"] == "r-x" and unknown["referral_status"] is None
