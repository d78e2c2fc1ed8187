"""The journeys rules, pure: opening and ending, dates within a journey,
contacts and volunteer hours, goals and reviews, outcome measures."""
from datetime import date, datetime, timezone

import pytest

from services.journeys import domain
from services.journeys.schemas import NewContactSchema, OutcomeMeasureSchema
from shared.errors import Conflict, ValidationFailed
from shared.events import load_event
from shared.validation import load_or_fail

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)
TODAY = NOW.date()
MATCH = {"match_id": "m1", "referral_id": "r1", "volunteer_id": "v1",
         "volunteer_user_id": "u1", "score": 0.8,
         "confirmed_at": "2026-11-02T09:00:00+00:00"}


def journey(**changes):
    record, _ = domain.open_journey("essex", "j1", MATCH, NOW)
    return dict(record, **changes)


def ended():
    changes, _ = domain.end_journey(journey(), "completed", "coord",
                                    datetime(2026, 11, 10, 12, tzinfo=timezone.utc))
    return journey(**changes)


def _reload(event):
    return load_event(event, {event["type"]})[1]


def test_a_journey_opens_on_a_confirmed_match_from_when_it_was_confirmed():
    record, event = domain.open_journey("essex", "j1", MATCH, NOW)
    assert record["status"] == "open" and record["volunteer_user_id"] == "u1"
    assert record["started_at"] == datetime(2026, 11, 2, 9, tzinfo=timezone.utc)
    assert event["type"] == "journey.started" and event["siteid"] == "essex"
    assert _reload(event) == {"journey_id": "j1", "referral_id": "r1", "volunteer_id": "v1",
                              "match_id": "m1", "started_at": "2026-11-02T09:00:00+00:00"}


def test_a_journey_ends_once_with_its_reason():
    changes, event = domain.end_journey(journey(), "moved_away", "coord", NOW)
    assert changes["status"] == "ended" and changes["end_reason"] == "moved_away"
    assert _reload(event)["reason"] == "moved_away"
    with pytest.raises(Conflict):
        domain.end_journey(journey(**changes), "completed", "coord", NOW)


@pytest.mark.parametrize("reason,rematch,expected", [
    ("completed", False, "completed"), ("parent_ended", False, "parent_ended"),
    ("parent_moved", False, "moved_away"), ("safeguarding", False, "safeguarding"),
    ("other", False, "other"), ("volunteer_left", True, "rematched"),
    ("relationship_breakdown", True, "rematched"), ("volunteer_unavailable", True,
                                                    "rematched")])
def test_a_match_ending_maps_to_a_journey_end_reason(reason, rematch, expected):
    assert domain.end_reason_for_match(reason, rematch) == expected


def test_dates_fall_within_the_journey_and_not_in_the_future():
    assert domain.date_errors(journey(), "date", date(2026, 11, 2), TODAY) == {}
    assert domain.date_errors(journey(), "date", TODAY, TODAY) == {}
    assert domain.date_errors(journey(), "date", date(2026, 11, 21), TODAY) == {
        "date": ["Cannot be in the future."]}
    assert domain.date_errors(journey(), "date", date(2026, 11, 1), TODAY) == {
        "date": ["Before the journey started (2026-11-02)."]}
    assert domain.date_errors(ended(), "date", date(2026, 11, 10), TODAY) == {}
    assert domain.date_errors(ended(), "date", date(2026, 11, 11), TODAY) == {
        "date": ["After the journey ended (2026-11-10)."]}


def contact_form(**changes):
    form = {"date": "2026-11-05", "mode": "home_visit", "duration_minutes": 90,
            "notes": "Talked about feeding."}
    form.update(changes)
    return load_or_fail(NewContactSchema(), form)


def test_a_volunteer_logs_their_own_contacts_and_they_count_as_hours():
    contact, event = domain.new_contact(journey(), contact_form(), "c1", "u1",
                                        "volunteer", "sealed", TODAY, NOW)
    assert contact["made_by"] == "volunteer" and contact["volunteer_minutes"] == 90
    assert contact["date"] == "2026-11-05" and contact["notes"] == "sealed"
    data = _reload(event)
    assert data["made_by"] == "volunteer" and data["logged_by_role"] == "volunteer"
    assert "notes" not in data and "sealed" not in str(event)
    with pytest.raises(ValidationFailed) as refused:
        domain.new_contact(journey(), contact_form(made_by="coordinator"), "c2", "u1",
                           "volunteer", None, TODAY, NOW)
    assert set(refused.value.errors) == {"made_by"}


def test_a_coordinator_logs_on_the_volunteers_behalf_or_their_own_contact():
    on_behalf, _ = domain.new_contact(journey(), contact_form(), "c1", "k1",
                                      "coordinator", None, TODAY, NOW)
    assert on_behalf["made_by"] == "volunteer" and on_behalf["volunteer_minutes"] == 90
    own, event = domain.new_contact(journey(), contact_form(made_by="coordinator",
                                                            duration_minutes=30),
                                    "c2", "k1", "coordinator", None, TODAY, NOW)
    assert own["volunteer_minutes"] == 0 and _reload(event)["made_by"] == "coordinator"
    with pytest.raises(ValidationFailed) as refused:
        domain.new_contact(journey(), contact_form(date="2026-12-01"), "c3", "k1",
                           "coordinator", None, TODAY, NOW)
    assert set(refused.value.errors) == {"date"}


def test_contact_totals_give_volunteer_hours_and_modes():
    contacts = [
        {"mode": "home_visit", "duration_minutes": 90, "volunteer_minutes": 90,
         "date": "2026-11-05"},
        {"mode": "phone", "duration_minutes": 15, "volunteer_minutes": 15,
         "date": "2026-11-03"},
        {"mode": "phone", "duration_minutes": 20, "volunteer_minutes": 0,
         "date": "2026-11-09"}]
    assert domain.contact_totals(contacts) == {
        "contacts": 3, "minutes": 125, "hours": 2.08, "volunteer_minutes": 105,
        "volunteer_hours": 1.75,
        "by_mode": {"home_visit": {"contacts": 1, "minutes": 90},
                    "phone": {"contacts": 2, "minutes": 35}},
        "first_contact_on": "2026-11-03", "last_contact_on": "2026-11-09"}
    assert domain.contact_totals([])["hours"] == 0


def test_goals_are_set_on_open_journeys_and_reviewed():
    form = {"words": "Go to a baby group", "category": "social", "set_on": None,
            "target_date": date(2026, 12, 1)}
    goal, event = domain.new_goal(journey(), form, "g1", "u1", "sealed", TODAY, NOW)
    assert goal["status"] == "set" and goal["set_on"] == "2026-11-20"
    assert _reload(event) == {"journey_id": "j1", "referral_id": "r1",
                              "volunteer_id": "v1", "goal_id": "g1",
                              "category": "social", "set_on": "2026-11-20"}
    with pytest.raises(ValidationFailed):
        domain.new_goal(journey(), dict(form, set_on=date(2026, 11, 10),
                                        target_date=date(2026, 11, 9)),
                        "g2", "u1", None, TODAY, NOW)
    with pytest.raises(Conflict):
        domain.new_goal(ended(), form, "g3", "u1", None, TODAY, NOW)

    changes, review, event = domain.review_goal(
        journey(), goal, {"status": "achieved", "reviewed_on": None, "note": "x"},
        "rv1", "u1", "sealed", TODAY, NOW)
    assert changes == {"status": "achieved", "achieved_on": "2026-11-20"}
    assert review["status"] == "achieved" and review["note"] == "sealed"
    assert _reload(event)["status"] == "achieved"
    with pytest.raises(ValidationFailed) as refused:
        domain.review_goal(journey(), dict(goal, set_on="2026-11-15"),
                           {"status": "in_progress", "reviewed_on": date(2026, 11, 14)},
                           "rv2", "u1", None, TODAY, NOW)
    assert set(refused.value.errors) == {"reviewed_on"}


def seal(name, value):
    return f"sealed {name}"


def outcome_form(**changes):
    form = {"instrument": "epds", "time_point": "baseline", "recorded_on": None,
            "answers": [0, 0, 3, 0, 3, 3, 3, 3, 3, 2]}
    form.update(changes)
    return form


def test_an_outcome_is_scored_here_and_item_10_raises_the_risk_in_the_event():
    outcome, event = domain.record_outcome(journey(), outcome_form(), "o1", "u1",
                                           ["epds"], seal, TODAY, NOW)
    assert outcome["scores"] == {"total": 1} and outcome["self_harm_risk"] is True
    assert outcome["answers"] == "sealed answers" and outcome["once"] is True
    data = _reload(event)
    assert data["self_harm_risk"] is True and data["scores"] == {"total": 1.0}
    assert data["instrument"] == "epds" and data["time_point"] == "baseline"
    assert "answers" not in data and "item_scores" not in data
    review, _ = domain.record_outcome(journey(), outcome_form(time_point="review"), "o2",
                                      "u1", ["epds"], seal, TODAY, NOW)
    assert "once" not in review


def test_an_unlicensed_measure_or_bad_answers_are_refused():
    with pytest.raises(ValidationFailed) as refused:
        domain.record_outcome(journey(), outcome_form(), "o1", "u1", ["hads"], seal,
                              TODAY, NOW)
    assert set(refused.value.errors) == {"instrument"}
    with pytest.raises(ValidationFailed) as refused:
        domain.record_outcome(journey(), outcome_form(answers=[0] * 9 + [7]), "o1", "u1",
                              ["epds"], seal, TODAY, NOW)
    assert set(refused.value.errors) == {"answers.10"}
    with pytest.raises(ValidationFailed) as refused:
        domain.record_outcome(journey(), outcome_form(recorded_on=date(2026, 10, 1)),
                              "o1", "u1", ["epds"], seal, TODAY, NOW)
    assert set(refused.value.errors) == {"recorded_on"}


def test_the_outcome_schema_names_each_bad_item_with_the_other_fields():
    with pytest.raises(ValidationFailed) as refused:
        load_or_fail(OutcomeMeasureSchema(), {"instrument": "hads", "time_point": "later",
                                              "answers": [0] * 12 + [4]})
    assert set(refused.value.errors) == {"time_point", "answers.13", "answers.14"}
    with pytest.raises(ValidationFailed) as refused:
        load_or_fail(OutcomeMeasureSchema(), {"instrument": "gad7", "time_point": "exit",
                                              "answers": [0]})
    assert set(refused.value.errors) == {"instrument"}
    form = load_or_fail(OutcomeMeasureSchema(), {"instrument": "swemwbs",
                                                 "time_point": "exit",
                                                 "answers": [4] * 7})
    assert form["answers"] == [4] * 7


def test_volunteer_hours_per_volunteer_and_periods_in_order():
    assert domain.volunteer_hours([("v2", 1, 30, 0), ("v1", 2, 150, 150)]) == [
        {"volunteer_id": "v1", "contacts": 2, "minutes": 150, "hours": 2.5,
         "volunteer_minutes": 150, "volunteer_hours": 2.5},
        {"volunteer_id": "v2", "contacts": 1, "minutes": 30, "hours": 0.5,
         "volunteer_minutes": 0, "volunteer_hours": 0.0}]
    domain.check_period({"from": date(2026, 1, 1), "to": date(2026, 1, 1)})
    domain.check_period({"from": None, "to": date(2026, 1, 1)})
    with pytest.raises(ValidationFailed) as refused:
        domain.check_period({"from": date(2026, 1, 2), "to": date(2026, 1, 1)})
    assert set(refused.value.errors) == {"to"}
