import random
from datetime import date, datetime, timedelta, timezone

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
    values = domain.components(referral(), volunteer(active=1, available_days=["mon"]))
    assert values == {"area": 1.0, "language": 1.0, "shared_experience": 0.5,
                      "modes": 0.5, "load": 0.5, "birth_buddy": None,
                      "availability": pytest.approx(1 / 3)}
    total = domain.weighted_score(values, W)
    # Not pregnant: birth buddy is left out of the mean (weight 1).
    assert total == pytest.approx((3 + 2 + 1 + 0.5 + 0.5 + 0.5 / 3) / 9.5)
    parts = domain.breakdown(values, W)
    assert parts["area"] == {"value": 1.0, "weight": 3.0, "points": 3.0, "applies": True}
    assert parts["birth_buddy"] == {"value": None, "weight": 1.0, "points": 0.0,
                                    "applies": False}
    assert sum(p["points"] for p in parts.values()) / 9.5 == pytest.approx(total, abs=1e-4)
    # Weights change the ranking: only load counts, so the emptier wins.
    only_load = dict.fromkeys(domain.COMPONENTS, 0.0) | {"load": 1.0}
    assert domain.weighted_score(values, only_load) == 0.5


# -- each hard rule --------------------------------------------------------------

@pytest.mark.parametrize("due_month, today, expected", [
    ("2027-03", date(2026, 11, 2), True), ("2026-11", date(2026, 11, 30), True),
    ("2026-10", date(2026, 11, 1), False), (None, date(2026, 11, 1), False),
])
def test_a_parent_is_pregnant_until_the_due_month_is_past(due_month, today, expected):
    assert domain.is_pregnant(due_month, today) is expected
    assert domain.with_pregnancy(referral(due_month=due_month), today)["pregnant"] is expected


def test_a_pregnant_parent_gets_a_bonus_for_a_birth_buddy():
    pregnant = domain.with_pregnancy(referral(), date(2026, 11, 2))
    buddy, other = volunteer(_id="buddy", birth_buddy=True), volunteer(_id="other")
    assert domain.components(pregnant, buddy)["birth_buddy"] == 1.0
    assert domain.components(pregnant, other)["birth_buddy"] == 0.0
    with_buddy = domain.weighted_score(domain.components(pregnant, buddy), W)
    without = domain.weighted_score(domain.components(pregnant, other), W)
    assert with_buddy - without == pytest.approx(1.0 / 10.5)   # weight 1 of 10.5
    _, ranked = domain.suggest(pregnant, [other, buddy], W, limit=2)
    assert [s["volunteer_id"] for s in ranked] == ["buddy", "other"]
    assert ranked[0]["breakdown"]["birth_buddy"] == {"value": 1.0, "weight": 1.0,
                                                     "points": 1.0, "applies": True}
    # The baby is born: no bonus, a tie broken by id.
    born = domain.with_pregnancy(referral(due_month="2026-01"), date(2026, 11, 2))
    _, ranked = domain.suggest(born, [other, buddy], W, limit=2)
    assert ranked[0]["score"] == ranked[1]["score"]
    assert ranked[0]["breakdown"]["birth_buddy"]["applies"] is False


@pytest.mark.parametrize("days, expected", [
    ([], 0.0), (["mon"], 1 / 3), (["mon", "thu"], 2 / 3), (["mon", "tue", "wed"], 1.0),
    (list(domain.DAYS), 1.0), (None, 0.0),
])
def test_availability_counts_days_up_to_three(days, expected):
    assert domain.availability_score(days) == pytest.approx(expected)


def test_every_hard_rule_passes_for_a_good_candidate():
    rules = domain.hard_rules(referral(), volunteer())
    assert rules == dict.fromkeys(domain.HARD_RULES, domain.PASSED)


@pytest.mark.parametrize("change, rule", [
    ({"eligible": False}, "eligible"), ({"has_profile": False}, "eligible"),
    ({"left": True}, "eligible"), ({"site_id": "derby"}, "same_site"),
    ({"active": 2}, "capacity_left"), ({"languages": ["pl"]}, "language"),
    ({"_id": "declined-it"}, "not_declined_before"),
])
def test_each_hard_rule_fails_on_its_own(change, rule):
    rules = domain.hard_rules(referral(declined_by=["declined-it"]), volunteer(**change))
    assert domain.failed_rules(rules) == [rule]


def test_a_volunteer_who_declined_is_never_suggested_or_planned_again():
    declined = referral(declined_by=["v1"])
    count, ranked = domain.suggest(declined, [volunteer(), volunteer(_id="v2")], W, 10)
    assert count == 1 and [s["volunteer_id"] for s in ranked] == ["v2"]
    pairs, unmatched = domain.plan([declined], [volunteer()], W)
    assert pairs == [] and unmatched == ["r1"]
    with pytest.raises(Conflict) as refused:
        domain.confirm_match(declined, volunteer(), W, "m", "u", NOW)
    assert refused.value.errors["hard_rules"] == ["not_declined_before"]


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
    match, event = domain.confirm_match(referral(), volunteer(user_id="user-7"), W, "m1",
                                        "u9", NOW)
    assert match["status"] == domain.OPEN and match["volunteer_id"] == "v1"
    assert match["confirmed_at"] == NOW and match["proposed_at"] is None
    envelope, data = load_event(event)
    assert envelope["type"] == "match.confirmed" and envelope["siteid"] == "essex"
    assert data["match_id"] == "m1" and data["referral_id"] == "r1"
    assert data["volunteer_user_id"] == "user-7"
    assert 0 < data["score"] <= 1
    _, event = domain.confirm_match(referral(), volunteer(), W, "m1", "u9", NOW)
    assert load_event(event)[1]["volunteer_user_id"] is None


def test_a_proposed_match_is_accepted_or_declined_by_the_volunteer():
    match, event = domain.confirm_match(referral(), volunteer(user_id="user-7"), W, "m1",
                                        "u9", NOW, propose=True)
    assert match["status"] == domain.PROPOSED and match["confirmed_at"] is None
    envelope, data = load_event(event)
    assert envelope["type"] == "match.proposed"
    assert data == {"match_id": "m1", "referral_id": "r1", "volunteer_id": "v1",
                    "volunteer_user_id": "user-7", "proposed_at": NOW.isoformat()}
    later = NOW + timedelta(hours=2)
    changes, event = domain.accept_match(match, "user-7", later)
    assert changes == {"status": domain.OPEN, "confirmed_at": later}
    envelope, data = load_event(event)
    assert envelope["type"] == "match.confirmed" and data["confirmed_at"] == later.isoformat()
    assert data["volunteer_user_id"] == "user-7" and data["score"] == match["score"]
    with pytest.raises(Conflict):
        domain.accept_match(dict(match, **changes), "user-7", later)
    # Declining a proposal closes it; so does ending it.
    changes, event = domain.decline_match(match, "unavailable", later)
    assert changes["status"] == domain.DECLINED and event["type"] == "match.declined"
    with pytest.raises(Conflict):
        domain.accept_match(dict(match, **changes), "user-7", later)
    assert domain.end_match(match, "other", later)[0]["status"] == domain.ENDED


@pytest.mark.parametrize("reason, expected", [
    ("completed", "completed"), ("moved_away", "parent_moved"), ("no_contact", "other"),
    ("safeguarding", "safeguarding"), (None, "other"),
])
def test_a_closed_referral_ends_its_match_with_a_reason_of_the_list(reason, expected):
    from shared.events.types.matching import MATCH_END_REASONS
    ended = domain.match_end_reason_for_closed_referral(reason)
    assert ended == expected and ended in MATCH_END_REASONS


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
    # Weights of the first five components only (as saved before birth buddy
    # and availability were scored): those two take their defaults.
    five = {name: W[name] for name in ("area", "language", "shared_experience", "modes",
                                       "load")}
    loaded = load_or_fail(WeightsSchema(), five)
    assert loaded["birth_buddy"] == 1.0 and loaded["availability"] == 0.5
    assert load_or_fail(ConfirmMatchSchema(), {"referral_id": "r", "volunteer_id": "v"})[
        "propose"] is False
    with pytest.raises(ValidationFailed) as refused:
        load_or_fail(ConfirmMatchSchema(), {"referral_id": "r", "volunteer_id": "v",
                                            "propose": [1]})
    assert set(refused.value.errors) == {"propose"}
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
                                support_modes=rng.sample(SUPPORT_MODES, 2),
                                birth_buddy=rng.random() < 0.5,
                                available_days=rng.sample(domain.DAYS, rng.randint(0, 4)))
                      for i in range(3)]
        referrals = [referral(_id=f"p{i}", area=rng.choice(["CM1", "CM3", "DE22"]),
                              preferred_language=rng.choice(["en", "pl"]),
                              interpreter_needed=rng.random() < 0.3,
                              needs=rng.sample(NEEDS, 2),
                              preferred_support=rng.sample(SUPPORT_MODES, 1),
                              pregnant=rng.random() < 0.5)
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
                            eligible=rng.random() < 0.8, birth_buddy=rng.random() < 0.3,
                            available_days=rng.sample(domain.DAYS, rng.randint(0, 5)))
                  for i in range(40)]
    referrals = [referral(_id=f"p{i}", area=rng.choice(["CM1", "CM7", "SW1A", "B1"]),
                          preferred_language=rng.choice(["en", "pl", "pa", "ro"]),
                          interpreter_needed=rng.random() < 0.5,
                          needs=rng.sample(NEEDS, rng.randint(0, 3)),
                          preferred_support=rng.sample(SUPPORT_MODES, rng.randint(0, 2)),
                          pregnant=rng.random() < 0.5, declined_by=rng.sample(
                              [f"v{k}" for k in range(40)], rng.randint(0, 2)))
                 for i in range(25)]
    base, feasible, totals = domain.pair_matrices(referrals, volunteers, W)
    for i, r in enumerate(referrals):
        for j, v in enumerate(volunteers):
            values = domain.components(r, v)
            expected = domain.weighted_score(dict(values, load=0.0), W)
            assert base[i, j] / totals[i] == pytest.approx(expected)
            assert bool(feasible[i, j]) == (not domain.failed_rules(domain.hard_rules(r, v)))
    assert isinstance(base, np.ndarray)


def test_an_empty_plan():
    assert domain.plan([], [volunteer()], W) == ([], [])
    assert domain.plan([referral()], [], W) == ([], ["r1"])


def test_suggestions_scored_as_arrays_rank_as_one_by_one_would():
    rng = random.Random(11)
    volunteers = [volunteer(_id=f"v{i:03d}", districts=rng.sample(["CM1", "CM2", "DE22"], 1),
                            languages=rng.sample(["en", "pl"], rng.randint(1, 2)),
                            lived_experience=rng.sample(NEEDS, rng.randint(0, 2)),
                            support_modes=rng.sample(SUPPORT_MODES, rng.randint(1, 2)),
                            active=rng.randint(0, 2), capacity=2,
                            birth_buddy=rng.random() < 0.3,
                            available_days=rng.sample(domain.DAYS, rng.randint(0, 3)))
                  for i in range(200)]
    for trial in range(20):
        r = referral(area=rng.choice(["CM1", "CM5", "DE22"]),
                     preferred_language=rng.choice(["en", "pl"]),
                     interpreter_needed=rng.random() < 0.3,
                     needs=rng.sample(NEEDS, rng.randint(0, 2)),
                     pregnant=rng.random() < 0.5,
                     declined_by=rng.sample([v["_id"] for v in volunteers], 3))
        expected = sorted(
            ((-round(domain.weighted_score(domain.components(r, v), W), 4), v["_id"])
             for v in volunteers if not domain.failed_rules(domain.hard_rules(r, v))))
        pool = domain.Pool(volunteers)
        count, ranked = domain.suggest(r, pool, W, limit=7)
        assert count == len(expected)
        assert [(-s["score"], s["volunteer_id"]) for s in ranked] == expected[:7]


def test_a_pool_changed_row_by_row_scores_as_a_pool_built_afresh():
    rng = random.Random(5)

    def someone(i, **changes):
        return volunteer(_id=f"v{i:02d}", districts=rng.sample(["CM1", "CM2", "DE22"], 1),
                         languages=rng.sample(["en", "pl"], rng.randint(1, 2)),
                         lived_experience=rng.sample(NEEDS, rng.randint(0, 2)),
                         active=rng.randint(0, 1), capacity=2, **changes)
    volunteers = {f"v{i:02d}": someone(i) for i in range(30)}
    pool = domain.Pool(volunteers.values())
    for _ in range(5):
        changed = rng.sample(sorted(volunteers), 4)
        fresh = []
        for volunteer_id in changed:
            index = int(volunteer_id[1:])
            now = someone(index, birth_buddy=rng.random() < 0.5)
            if rng.random() < 0.3:
                now["active"] = 2                     # full now: out of the pool
            volunteers[volunteer_id] = now
            if now["active"] < now["capacity"]:
                fresh.append(now)
        pool = pool.changed(changed, fresh)
        afresh = domain.Pool([v for v in volunteers.values() if v["active"] < v["capacity"]])
        assert pool.count() == afresh.count() and pool.places() == afresh.places()
        for r in (referral(), referral(area="DE22", pregnant=True, declined_by=["v03"]),
                  referral(preferred_language="pl", interpreter_needed=True)):
            assert domain.suggest(r, pool, W, 30) == domain.suggest(r, afresh, W, 30)
        referrals = [referral(_id=f"p{i}", area=rng.choice(["CM1", "DE22"])) for i in range(6)]
        assert plan_total(domain.plan(referrals, pool, W)[0], W) == pytest.approx(
            plan_total(domain.plan(referrals, afresh, W)[0], W))
    assert pool.stale > 0
