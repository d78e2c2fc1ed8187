import random
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from services.matching import domain
from services.matching.schemas import (ConfirmMatchSchema, PlanRequestSchema,
                                       ProfileSchema, WeightsSchema)
from shared.errors import Conflict, ValidationFailed
from shared.events import load_event
from shared.events.types.referrals import NEEDS, SUPPORT_MODES
from shared.validation import load_or_fail

NOW = datetime(2026, 11, 2, 10, 0, tzinfo=timezone.utc)
W = dict(domain.DEFAULT_WEIGHTS)


def referral(**overrides):
    base = {"_id": "r1", "site_id": "essex", "status": domain.WAITING,
            "preferred_language": "en", "interpreter_needed": False, "area": "CM1",
            "needs": ["isolation", "anxiety"], "preferred_support": ["home_visit", "phone"],
            "due_month": "2027-03"}
    return dict(base, **overrides)


def volunteer(**overrides):
    base = {"_id": "v1", "site_id": "essex", "languages": ["en"], "districts": ["CM1"],
            "lived_experience": ["isolation"], "support_modes": ["home_visit"],
            "capacity": 2, "active": 0, "eligible": True, "has_profile": True,
            "left": False, "birth_buddy": False}
    return dict(base, **overrides)


# -- each score component ------------------------------------------------------

@pytest.mark.parametrize("area, districts, expected", [
    ("CM1", ["CM1", "CM2"], 1.0), ("CM1", ["CM2"], 0.5), ("CM1", ["DE22"], 0.0),
    ("SW1A", ["SW1A"], 1.0), ("SW1A", ["SW2"], 0.5), ("M1", ["ME1"], 0.0),
])
def test_area_score(area, districts, expected):
    assert domain.area_score(area, districts) == expected


@pytest.mark.parametrize("language, languages, expected", [
    ("pl", ["en", "pl"], 1.0), ("pl", ["en"], 0.0), ("pa-IN", ["pa"], 1.0),
    ("pa", ["PA-pk"], 1.0), ("en", [], 0.0),
])
def test_language_score(language, languages, expected):
    assert domain.language_score(language, languages) == expected


@pytest.mark.parametrize("needs, lived, expected", [
    (["isolation", "anxiety"], ["isolation"], 0.5), (["anxiety"], ["anxiety", "low_mood"], 1.0),
    (["anxiety"], [], 0.0), ([], ["anxiety"], 0.0),
])
def test_shared_experience_score(needs, lived, expected):
    assert domain.shared_experience_score(needs, lived) == expected


@pytest.mark.parametrize("preferred, offered, expected", [
    (["home_visit", "phone"], ["home_visit"], 0.5), (["video"], ["video", "phone"], 1.0),
    (["group"], ["phone"], 0.0), ([], ["phone"], 1.0),
])
def test_modes_score(preferred, offered, expected):
    assert domain.modes_score(preferred, offered) == expected


@pytest.mark.parametrize("active, capacity, expected", [
    (0, 2, 1.0), (1, 2, 0.5), (2, 2, 0.0), (3, 2, 0.0), (0, 0, 0.0), (1, 4, 0.75),
])
def test_load_score(active, capacity, expected):
    assert domain.load_score(active, capacity) == expected


def test_weighted_score_and_its_breakdown():
    values = domain.components(referral(), volunteer(active=1))
    assert values == {"area": 1.0, "language": 1.0, "shared_experience": 0.5,
                      "modes": 0.5, "load": 0.5}
    total = domain.weighted_score(values, W)
    assert total == pytest.approx((3 + 2 + 1 + 0.5 + 0.5) / 9)
    parts = domain.breakdown(values, W)
    assert parts["area"] == {"value": 1.0, "weight": 3.0, "points": 3.0}
    assert sum(p["points"] for p in parts.values()) / 9 == pytest.approx(total)
    # Weights change the ranking: only load counts, so the emptier wins.
    only_load = dict.fromkeys(domain.COMPONENTS, 0.0) | {"load": 1.0}
    assert domain.weighted_score(values, only_load) == 0.5


# -- each hard rule --------------------------------------------------------------

def test_every_hard_rule_passes_for_a_good_candidate():
    rules = domain.hard_rules(referral(), volunteer())
    assert rules == dict.fromkeys(domain.HARD_RULES, domain.PASSED)


@pytest.mark.parametrize("change, rule", [
    ({"eligible": False}, "eligible"), ({"has_profile": False}, "eligible"),
    ({"left": True}, "eligible"), ({"site_id": "derby"}, "same_site"),
    ({"active": 2}, "capacity_left"), ({"languages": ["pl"]}, "language"),
])
def test_each_hard_rule_fails_on_its_own(change, rule):
    rules = domain.hard_rules(referral(), volunteer(**change))
    assert domain.failed_rules(rules) == [rule]


def test_language_is_a_hard_rule_only_without_an_interpreter():
    polish = referral(preferred_language="pl")
    assert domain.failed_rules(domain.hard_rules(polish, volunteer())) == ["language"]
    with_interpreter = referral(preferred_language="pl", interpreter_needed=True)
    rules = domain.hard_rules(with_interpreter, volunteer())
    assert rules["language"] == domain.NOT_APPLICABLE and not domain.failed_rules(rules)
    # ... but speaking it still scores.
    assert domain.components(with_interpreter, volunteer(languages=["en", "pl"]))[
        "language"] == 1.0


def test_suggestions_rank_candidates_and_leave_out_those_failing_a_rule():
    candidates = [
        volunteer(_id="near", districts=["CM1"]),
        volunteer(_id="same-area", districts=["CM2"]),
        volunteer(_id="far", districts=["DE22"]),
        volunteer(_id="full", active=2),
        volunteer(_id="ineligible", eligible=False),
        volunteer(_id="other-site", site_id="derby"),
        volunteer(_id="polish-only", languages=["pl"]),
    ]
    count, ranked = domain.suggest(referral(), candidates, W, limit=10)
    assert count == 3
    assert [s["volunteer_id"] for s in ranked] == ["near", "same-area", "far"]
    assert ranked[0]["hard_rules"] == dict.fromkeys(domain.HARD_RULES, domain.PASSED)
    assert set(ranked[0]["breakdown"]) == set(domain.COMPONENTS)
    assert ranked[0]["score"] > ranked[1]["score"] > ranked[2]["score"]
    assert domain.suggest(referral(), candidates, W, limit=1)[1][0]["volunteer_id"] == "near"


# -- confirm, decline, end ------------------------------------------------------------

def test_confirm_makes_an_open_match_and_its_event():
    match, event = domain.confirm_match(referral(), volunteer(), W, "m1", "u9", NOW)
    assert match["status"] == domain.OPEN and match["volunteer_id"] == "v1"
    envelope, data = load_event(event)
    assert envelope["type"] == "match.confirmed" and envelope["siteid"] == "essex"
    assert data["match_id"] == "m1" and data["referral_id"] == "r1"
    assert 0 < data["score"] <= 1


def test_confirm_refuses_a_failed_hard_rule_or_a_referral_not_waiting():
    with pytest.raises(Conflict) as refused:
        domain.confirm_match(referral(), volunteer(active=2, eligible=False), W, "m", "u", NOW)
    assert refused.value.errors["hard_rules"] == ["eligible", "capacity_left"]
    with pytest.raises(Conflict):
        domain.confirm_match(referral(status=domain.MATCHED), volunteer(), W, "m", "u", NOW)


def test_decline_and_end_only_an_open_match():
    match, _ = domain.confirm_match(referral(), volunteer(), W, "m1", "u9", NOW)
    changes, event = domain.decline_match(match, "unavailable", NOW)
    assert changes["status"] == domain.DECLINED and event["type"] == "match.declined"
    assert changes["needs_rematch"] is False   # a closed match needs nothing more
    with pytest.raises(Conflict):
        domain.decline_match(dict(match, **changes), "unavailable", NOW)
    changes, event, rematch = domain.end_match(match, "completed", NOW)
    assert changes["status"] == domain.ENDED and not rematch
    assert event["data"]["rematch"] is False
    assert domain.end_match(match, "volunteer_left", NOW)[2] is True
    with pytest.raises(Conflict):
        domain.end_match(dict(match, **changes), "completed", NOW)


def test_only_a_newer_eligibility_verdict_counts():
    assert domain.eligibility_is_newer(None, NOW)
    assert domain.eligibility_is_newer({"eligibility_as_of": None}, NOW)
    known = {"eligibility_as_of": NOW}
    assert domain.eligibility_is_newer(known, NOW + timedelta(seconds=1))
    assert not domain.eligibility_is_newer(known, NOW - timedelta(seconds=1))


def test_first_write_defaults_leave_what_is_being_set():
    defaults = domain.insert_defaults("v1", {"eligible": True})
    assert "eligible" not in defaults and defaults["active"] == 0
    assert defaults["has_profile"] is False and defaults["volunteer_id"] == "v1"


# -- schemas ---------------------------------------------------------------------

def test_profile_is_normalised_and_bad_profiles_are_refused_field_by_field():
    form = load_or_fail(ProfileSchema(), {
        "languages": ["pl", "en", "pl"], "districts": ["cm2", "CM1"],
        "lived_experience": ["anxiety"], "support_modes": ["phone", "home_visit"],
        "capacity": 3, "available_days": ["fri", "mon"]})
    assert form["districts"] == ["CM1", "CM2"] and form["languages"] == ["en", "pl"]
    assert form["available_days"] == ["mon", "fri"] and form["birth_buddy"] is False
    with pytest.raises(ValidationFailed) as refused:
        load_or_fail(ProfileSchema(), {
            "languages": [], "districts": ["nowhere"], "lived_experience": ["sadness"],
            "support_modes": ["carrier_pigeon"], "capacity": 11,
            "available_days": ["someday"], "site_id": "derby"})
    assert set(refused.value.errors) == {
        "languages", "districts", "lived_experience", "support_modes", "capacity",
        "available_days", "site_id"}
    with pytest.raises(ValidationFailed) as refused:
        load_or_fail(ProfileSchema(), {"languages": ["en"], "districts": ["CM1"],
                                       "support_modes": ["phone"], "capacity": "2"})
    assert set(refused.value.errors) == {"capacity"}   # strictly an integer


def test_weights_and_other_inputs_are_checked():
    assert load_or_fail(WeightsSchema(), dict(W))["area"] == 3.0
    with pytest.raises(ValidationFailed) as refused:
        load_or_fail(WeightsSchema(), dict(W, area=-1, load=11))
    assert set(refused.value.errors) == {"area", "load"}
    with pytest.raises(ValidationFailed) as refused:
        load_or_fail(WeightsSchema(), dict.fromkeys(domain.COMPONENTS, 0))
    assert "_schema" in refused.value.errors
    with pytest.raises(ValidationFailed):
        load_or_fail(ConfirmMatchSchema(), {"referral_id": ""})
    with pytest.raises(ValidationFailed):
        load_or_fail(PlanRequestSchema(), {"referral_ids": []})


# -- the match plan ---------------------------------------------------------------

def greedy(referrals, volunteers, weights):
    """Best pair first, as a coordinator going down the list would."""
    given = {v["_id"]: 0 for v in volunteers}
    pairs = sorted(((domain.weighted_score(domain.components(r, v), weights), i, j)
                    for i, r in enumerate(referrals) for j, v in enumerate(volunteers)
                    if not domain.failed_rules(domain.hard_rules(r, v))), reverse=True)
    taken, total = set(), 0.0
    for _, i, j in pairs:
        v = volunteers[j]
        if i in taken or v["active"] + given[v["_id"]] >= v["capacity"]:
            continue
        taken.add(i)
        total += domain.weighted_score(domain.components(referrals[i], v, given[v["_id"]]),
                                       weights)
        given[v["_id"]] += 1
    return total


def plan_total(pairs, weights):
    return sum(domain.weighted_score(values, weights) for _, _, _, values in pairs)


def test_the_plan_beats_greedy_on_a_crafted_case():
    # Anna (Polish and English, CM1) is the best fit for P1 (Polish, CM1);
    # Ben (Polish only, CM2) can take P1 only: P2 needs English, no interpreter.
    # Greedy gives P1 to Anna first, and P2 is left without anybody.
    p1 = referral(_id="p1", preferred_language="pl")
    p2 = referral(_id="p2", preferred_language="en", area="CM9")
    anna = volunteer(_id="anna", languages=["en", "pl"], capacity=1)
    ben = volunteer(_id="ben", languages=["pl"], districts=["CM2"], capacity=1,
                    lived_experience=[])
    score = {(r["_id"], v["_id"]): domain.weighted_score(domain.components(r, v), W)
             for r in (p1, p2) for v in (anna, ben)}
    assert score["p1", "anna"] > score["p2", "anna"] > score["p1", "ben"]
    assert domain.failed_rules(domain.hard_rules(p2, ben)) == ["language"]
    assert greedy([p1, p2], [anna, ben], W) == pytest.approx(score["p1", "anna"])
    pairs, unmatched = domain.plan([p1, p2], [anna, ben], W)
    assert {r["_id"]: v["_id"] for r, v, _, _ in pairs} == {"p1": "ben", "p2": "anna"}
    assert unmatched == []
    assert plan_total(pairs, W) == pytest.approx(score["p1", "ben"] + score["p2", "anna"])
    assert plan_total(pairs, W) > greedy([p1, p2], [anna, ben], W) + 0.3


def test_the_plan_respects_every_capacity_and_hard_rule():
    referrals = [referral(_id=f"p{i}") for i in range(5)]
    volunteers = [volunteer(_id="a", capacity=2), volunteer(_id="b", capacity=3, active=2),
                  volunteer(_id="c", eligible=False), volunteer(_id="d", languages=["pl"])]
    pairs, unmatched = domain.plan(referrals, volunteers, W)
    per_volunteer = {}
    for _, v, extra, _ in pairs:
        per_volunteer[v["_id"]] = per_volunteer.get(v["_id"], 0) + 1
    assert per_volunteer == {"a": 2, "b": 1}
    assert len(unmatched) == 2
    # a volunteer's places fill in order, each with its own load.
    loads = sorted(values["load"] for _, v, _, values in pairs if v["_id"] == "a")
    assert loads == [0.5, 1.0]


def test_the_plan_is_optimal_against_brute_force_on_small_random_cases():
    import itertools
    rng = random.Random(7)
    for _ in range(30):
        volunteers = [volunteer(_id=f"v{i}", capacity=rng.randint(1, 2),
                                districts=[rng.choice(["CM1", "CM2", "DE22"])],
                                languages=rng.sample(["en", "pl"], rng.randint(1, 2)),
                                lived_experience=rng.sample(NEEDS, 2),
                                support_modes=rng.sample(SUPPORT_MODES, 2))
                      for i in range(3)]
        referrals = [referral(_id=f"p{i}", area=rng.choice(["CM1", "CM3", "DE22"]),
                              preferred_language=rng.choice(["en", "pl"]),
                              interpreter_needed=rng.random() < 0.3,
                              needs=rng.sample(NEEDS, 2),
                              preferred_support=rng.sample(SUPPORT_MODES, 1))
                     for i in range(4)]
        slots = [(v, k) for v in volunteers for k in range(v["capacity"])]
        best = 0.0
        for choice in itertools.product([None] + list(range(len(slots))), repeat=len(referrals)):
            used = [c for c in choice if c is not None]
            if len(used) != len(set(used)):
                continue
            total = 0.0
            ok = True
            for r, c in zip(referrals, choice):
                if c is None:
                    continue
                v, k = slots[c]
                if domain.failed_rules(domain.hard_rules(r, v)):
                    ok = False
                    break
                total += domain.weighted_score(domain.components(r, v, k), W)
            if ok:
                best = max(best, total)
        pairs, _ = domain.plan(referrals, volunteers, W)
        assert plan_total(pairs, W) == pytest.approx(best)
        assert plan_total(pairs, W) >= greedy(referrals, volunteers, W) - 1e-9


def test_the_vectorised_scores_equal_the_per_pair_ones():
    rng = random.Random(3)
    volunteers = [volunteer(_id=f"v{i}", districts=rng.sample(["CM1", "CM2", "SW1A", "DE22"], 2),
                            languages=rng.sample(["en", "pl", "pa-IN", "ur"], 2),
                            lived_experience=rng.sample(NEEDS, rng.randint(0, 4)),
                            support_modes=rng.sample(SUPPORT_MODES, rng.randint(1, 4)),
                            active=rng.randint(0, 3), capacity=3,
                            eligible=rng.random() < 0.8)
                  for i in range(40)]
    referrals = [referral(_id=f"p{i}", area=rng.choice(["CM1", "CM7", "SW1A", "B1"]),
                          preferred_language=rng.choice(["en", "pl", "pa", "ro"]),
                          interpreter_needed=rng.random() < 0.5,
                          needs=rng.sample(NEEDS, rng.randint(0, 3)),
                          preferred_support=rng.sample(SUPPORT_MODES, rng.randint(0, 2)))
                 for i in range(25)]
    base, feasible = domain.pair_matrices(referrals, volunteers, W)
    for i, r in enumerate(referrals):
        for j, v in enumerate(volunteers):
            values = domain.components(r, v)
            expected = domain.weighted_score(dict(values, load=0.0), W)
            assert base[i, j] == pytest.approx(expected)
            assert bool(feasible[i, j]) == (not domain.failed_rules(domain.hard_rules(r, v)))
    assert isinstance(base, np.ndarray)


def test_an_empty_plan():
    assert domain.plan([], [volunteer()], W) == ([], [])
    assert domain.plan([referral()], [], W) == ([], ["r1"])
