"""Courses, cohorts and attendance, fast: module ids, who may train, places,
sessions checked field by field, and completion following from attendance
of every module (on the day of the last one, once per cohort)."""
from datetime import date, datetime, timezone

import pytest

from services.training import domain
from services.training.schemas import AttendanceSchema, NewCohortSchema
from shared.errors import Conflict, ValidationFailed
from shared.validation import load_or_fail

NOW = datetime(2026, 3, 20, 9, 0, tzinfo=timezone.utc)
TODAY = NOW.date()


def course(kind="core"):
    return domain.new_course("essex", "k1", {"name": "Core", "kind": kind, "modules": [
        {"title": "Listening", "hours": 3}, {"title": "Safeguarding", "hours": None},
        {"title": "Boundaries", "hours": 2}]}, NOW)


def volunteer(vid, stage="active", role="volunteer"):
    return {"_id": vid, "site_id": "essex", "stage": stage, "role": role,
            "history": [], "completions": [], "dbs_checks": [], "supervisions": [],
            "eligibility": {"eligible": False, "reasons": [], "since": None},
            "version": 1}


def cohort(places=3, enrolled=("v1", "v2")):
    form = load_or_fail(NewCohortSchema(), {"start_date": "2026-03-01",
                                            "trainer_id": "t1", "places": places})
    made = domain.new_cohort(course(), "h1", form, volunteer("t1", role="trainer"), NOW)
    for vid in enrolled:
        made = domain.enrol(made, volunteer(vid), NOW)
    return made


def session(made, module, day, present, sid="s"):
    form = load_or_fail(AttendanceSchema(), {"module_id": module, "session_date": day,
                                             "present": list(present)})
    return domain.record_session(made, course(), sid, form, TODAY, NOW)


def test_modules_get_ids_in_order_and_old_courses_by_position():
    assert [m["id"] for m in course()["modules"]] == ["m1", "m2", "m3"]
    assert domain.module_ids({"modules": [{"title": "a"}, {"title": "b"}]}) == ["m1", "m2"]


@pytest.mark.parametrize("trainer, ok", [
    (volunteer("t1", role="trainer"), True), (volunteer("t1", role="coordinator"), True),
    (volunteer("t1", role="volunteer"), False),
    (volunteer("t1", role="trainer", stage="left"), False), (None, False)])
def test_a_cohort_needs_a_current_trainer(trainer, ok):
    form = {"start_date": date(2026, 3, 1), "trainer_id": "t1", "places": 2}
    if ok:
        made = domain.new_cohort(course(), "h1", form, trainer, NOW)
        assert made["places"] == 2 and made["enrolled"] == [] and made["start_date"] == "2026-03-01"
    else:
        with pytest.raises(ValidationFailed) as error:
            domain.new_cohort(course(), "h1", form, trainer, NOW)
        assert set(error.value.errors) == {"trainer_id"}


def test_enrolment_respects_places_and_refuses_twice_or_a_leaver():
    made = cohort(places=2)
    with pytest.raises(Conflict, match="full"):
        domain.enrol(made, volunteer("v3"), NOW)
    with pytest.raises(Conflict, match="already"):
        domain.enrol(cohort(places=3), volunteer("v1"), NOW)
    with pytest.raises(Conflict, match="left"):
        domain.enrol(cohort(places=3), volunteer("v9", stage="left"), NOW)
    assert domain.cohort_view(made, course())["places_left"] == 0


@pytest.mark.parametrize("module, day, present, fields", [
    ("m9", "2026-03-05", ["v1"], {"module_id"}),
    ("m1", "2026-03-21", ["v1"], {"session_date"}),
    ("m1", "2026-02-28", ["v1"], {"session_date"}),
    ("m1", "2026-03-05", ["v1", "stranger"], {"present"}),
    ("m1", "2026-03-05", ["v1", "v1"], {"present"}),
    ("m9", "2026-03-21", ["x"], {"module_id", "session_date", "present"}),
])
def test_a_session_is_checked_field_by_field(module, day, present, fields):
    with pytest.raises(ValidationFailed) as error:
        session(cohort(), module, day, present)
    assert set(error.value.errors) == fields


def test_attending_every_module_completes_on_the_day_of_the_last_one():
    made = cohort()
    made, due = session(made, "m1", "2026-03-02", ["v1", "v2"], "s1")
    assert due == []
    made, due = session(made, "m3", "2026-03-09", ["v1"], "s2")
    assert due == []
    made, due = session(made, "m2", "2026-03-05", ["v1"], "s3")
    assert due == [("v1", "2026-03-09")]
    # A catch-up session for v2; an earlier repeat of a module does not move the date.
    made, due = session(made, "m2", "2026-03-16", ["v2"], "s4")
    made["completed"] = {"v1": "2026-03-09"}
    made, due = session(made, "m3", "2026-03-18", ["v2", "v1"], "s5")
    assert due == [("v2", "2026-03-18")]
    view = domain.cohort_view(made, course())
    rows = {row["volunteer_id"]: row for row in view["progress"]}
    assert rows["v1"]["completed_on"] == "2026-03-09" and rows["v1"]["modules_missing"] == []
    assert rows["v2"]["modules_attended"] == ["m1", "m2", "m3"]
    assert rows["v2"]["completed_on"] is None


def test_nobody_present_and_partial_attendance_complete_nothing():
    made, due = session(cohort(), "m1", "2026-03-02", [])
    assert due == [] and made["sessions"][0]["present"] == []
    made, due = session(made, "m1", "2026-03-03", ["v1"])
    attended, missing = domain.progress(made, course(), "v1")
    assert attended == {"m1": "2026-03-03"} and missing == ["m2", "m3"]


def test_the_completion_a_cohort_earns_is_recorded_once_with_its_kind():
    record = volunteer("v1")
    done, [event] = domain.complete_from_cohort(record, "c1", course(), "h1",
                                                "2026-03-09", TODAY, NOW)
    [completion] = done["completions"]
    assert completion["cohort_id"] == "h1" and completion["kind"] == "core"
    assert completion["completed_on"] == "2026-03-09" and completion["course_id"] == "k1"
    assert event["type"] == "training.course_completed"
    again, events = domain.complete_from_cohort(done, "c2", course(), "h1",
                                                "2026-03-09", TODAY, NOW)
    assert events == [] and len(again["completions"]) == 1
    assert domain.evaluate(done, {"dbs_renewal_months": 36,
                                  "safeguarding_refresher_months": 12,
                                  "supervision_weeks": 8,
                                  "dbs_expiring_notice_days": 30},
                           TODAY)["rules"][0]["passed"] is True
    with pytest.raises(Conflict):
        domain.complete_from_cohort(volunteer("v2", stage="left"), "c3", course(), "h1",
                                    "2026-03-09", TODAY, NOW)


def test_a_volunteers_language_defaults_to_english_and_is_a_language_tag():
    from services.training.schemas import NewVolunteerSchema
    base = {"name": "Ada", "email": "ada@example.org", "postcode": "cm1 2ab"}
    assert load_or_fail(NewVolunteerSchema(), base)["preferred_language"] == "en"
    assert load_or_fail(NewVolunteerSchema(), dict(
        base, preferred_language="pa-IN"))["preferred_language"] == "pa-IN"
    with pytest.raises(ValidationFailed) as error:
        load_or_fail(NewVolunteerSchema(), dict(base, preferred_language="Polish!"))
    assert set(error.value.errors) == {"preferred_language"}
    record, _ = domain.register_volunteer("essex", "v1", load_or_fail(
        NewVolunteerSchema(), dict(base, preferred_language="pl")), {}, NOW)
    assert record["preferred_language"] == "pl"
