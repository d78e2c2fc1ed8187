"""Training rules with worked dates: eligibility rules at their boundaries,
the pathway state machine, and the reconcile step the daily check runs."""
from datetime import date, datetime, timezone

import pytest

from services.training import domain
from services.training.schemas import (TrainingCompletionSchema, DbsCheckSchema,
                                       NewVolunteerSchema, TrainingPolicySchema)
from shared.errors import Conflict, ValidationFailed
from shared.events import load_event
from shared.validation import load_or_fail

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
POLICY = {"dbs_renewal_months": 36, "safeguarding_refresher_months": 12,
          "supervision_weeks": 8, "dbs_expiring_notice_days": 30}


def record(stage="active", completions=(), dbs=(), supervisions=(), eligible=False):
    return {"_id": "v1", "site_id": "essex", "stage": stage, "role": "volunteer",
            "history": [], "completions": list(completions), "dbs_checks": list(dbs),
            "supervisions": list(supervisions),
            "eligibility": {"eligible": eligible, "reasons": [], "since": None},
            "version": 3}


def core(on, kind="core"):
    return {"id": f"c-{on}-{kind}", "kind": kind, "completed_on": on}


def dbs(on, level="enhanced", update_service=False, notices=()):
    return {"id": f"d-{on}-{level}", "level": level, "issued_on": on,
            "update_service": update_service, "expiring_notices": list(notices)}


def supervision(on):
    return {"id": f"s-{on}", "supervised_on": on, "supervisor_id": "u1", "notes": None}


def good(**overrides):
    fields = dict(completions=[core("2025-06-01")], dbs=[dbs("2024-01-15")],
                  supervisions=[supervision("2026-02-01")])
    fields.update(overrides)
    return record(**fields)


def check(rec, today, policy=POLICY):
    return domain.evaluate(rec, policy, date.fromisoformat(today))


def rule(result, name):
    return next(r for r in result["rules"] if r["rule"] == name)


def test_everything_in_order_is_eligible_with_no_reasons():
    result = check(good(), "2026-03-01")
    assert result["eligible"] is True and result["reasons"] == []
    assert all(r["passed"] for r in result["rules"])
    assert rule(result, "enhanced_dbs_current")["valid_until"] == "2027-01-14"
    assert rule(result, "safeguarding_training_current")["valid_until"] == "2026-05-31"
    assert rule(result, "supervision_recent")["valid_until"] == "2026-03-28"


def test_nothing_done_names_every_reason():
    result = check(record(stage="applicant"), "2026-03-01")
    assert result["eligible"] is False
    assert result["reasons"] == ["core_course_missing", "dbs_enhanced_missing",
                                 "safeguarding_training_missing",
                                 "supervision_missing", "stage_not_active"]


@pytest.mark.parametrize("stage", ["applicant", "in_training", "paused", "left"])
def test_only_the_active_stage_is_eligible(stage):
    assert check(good(stage=stage), "2026-03-01")["reasons"] == ["stage_not_active"]


def test_core_course_rule_needs_a_core_completion_on_or_before_today():
    other = good(completions=[core("2025-06-01", "birth_buddy"),
                              core("2025-07-01", "safeguarding_refresher")])
    assert check(other, "2026-03-01")["reasons"] == ["core_course_missing"]
    later = good(completions=[core("2026-03-02")])
    assert "core_course_missing" in check(later, "2026-03-01")["reasons"]
    assert check(later, "2026-03-02")["eligible"]


def test_enhanced_dbs_lapses_on_the_renewal_anniversary():
    rec = good(dbs=[dbs("2023-01-15")], completions=[core("2025-06-01")],
               supervisions=[supervision("2025-12-20")])
    assert check(rec, "2026-01-14")["eligible"]
    assert check(rec, "2026-01-15")["reasons"] == ["dbs_enhanced_expired"]


def test_renewal_period_comes_from_the_site_policy_and_month_ends_clamp():
    rec = good(dbs=[dbs("2024-01-31")])
    short = dict(POLICY, dbs_renewal_months=1)
    # 31 January + 1 month = 29 February 2024 (leap year): current to the 28th.
    assert domain.add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)
    assert domain.dbs_status(rec, short, date(2024, 2, 28))[0] is not None
    assert domain.dbs_status(rec, short, date(2024, 2, 29))[2] == "dbs_enhanced_expired"


def test_update_service_keeps_an_old_enhanced_check_current():
    rec = good(dbs=[dbs("2019-05-01", update_service=True)])
    assert check(rec, "2026-03-01")["eligible"]
    assert rule(check(rec, "2026-03-01"), "enhanced_dbs_current")["valid_until"] is None


def test_only_an_enhanced_check_counts():
    rec = good(dbs=[dbs("2025-01-01", level="standard"),
                    dbs("2025-01-01", level="basic", update_service=True)])
    assert check(rec, "2026-03-01")["reasons"] == ["dbs_enhanced_missing"]


def test_a_newer_enhanced_check_renews_an_expired_one():
    rec = good(dbs=[dbs("2022-01-01"), dbs("2026-02-01")])
    assert check(rec, "2026-03-01")["eligible"]
    assert check(good(dbs=[dbs("2022-01-01")]), "2026-03-01")["reasons"] == [
        "dbs_enhanced_expired"]


def test_safeguarding_lapses_a_period_after_core_or_the_latest_refresher():
    rec = good(completions=[core("2025-03-01")])
    assert check(rec, "2026-02-28")["eligible"]
    assert check(rec, "2026-03-01")["reasons"] == ["safeguarding_training_overdue"]
    refreshed = good(completions=[core("2024-01-01"),
                                  core("2026-02-15", "safeguarding_refresher")],
                     dbs=[dbs("2024-01-15", update_service=True)])
    assert check(refreshed, "2026-03-01")["eligible"]
    assert check(refreshed, "2027-02-14")["reasons"] == ["supervision_overdue"]
    assert "safeguarding_training_overdue" in check(refreshed, "2027-02-15")["reasons"]


def test_supervision_within_the_last_n_weeks():
    rec = good(supervisions=[supervision("2026-01-01")])
    assert check(rec, "2026-02-25")["eligible"]           # 55 days later
    assert check(rec, "2026-02-26")["reasons"] == ["supervision_overdue"]   # 8 weeks
    weekly = dict(POLICY, supervision_weeks=4)
    assert check(rec, "2026-01-28", weekly)["eligible"]
    assert check(rec, "2026-01-29", weekly)["reasons"] == ["supervision_overdue"]
    two = good(supervisions=[supervision("2025-10-01"), supervision("2026-02-20")])
    assert check(two, "2026-04-16")["eligible"]


def test_effective_policy_overrides_field_by_field():
    assert domain.effective_policy(POLICY, None) == POLICY
    assert domain.effective_policy(POLICY, {"supervision_weeks": 4, "site_id": "x",
                                            "dbs_renewal_months": None}) == dict(
        POLICY, supervision_weeks=4)


# -- the pathway -------------------------------------------------------------------------

LEGAL = [("applicant", "in_training"), ("applicant", "left"),
         ("in_training", "active"), ("in_training", "paused"), ("in_training", "left"),
         ("active", "paused"), ("active", "left"),
         ("paused", "active"), ("paused", "in_training"), ("paused", "left")]


@pytest.mark.parametrize("start", domain.VOLUNTEER_STAGES)
@pytest.mark.parametrize("target", domain.VOLUNTEER_STAGES)
def test_stage_moves(start, target):
    rec = record(stage=start)
    if (start, target) in LEGAL:
        moved, events = domain.change_stage(rec, target, "coord-1", NOW)
        assert moved["stage"] == target and rec["stage"] == start
        assert moved["history"][-1] == {"change": "stage", "from": start, "to": target,
                                        "at": NOW, "by": "coord-1"}
        assert [e["type"] for e in events] == (["volunteer.left"] if target == "left" else [])
    else:
        with pytest.raises(Conflict):
            domain.change_stage(rec, target, "coord-1", NOW)


def test_leaving_says_from_where_and_closes_the_record():
    moved, [event] = domain.change_stage(record(stage="active"), "left", "c", NOW)
    _, data = load_event(event)
    assert data == {"volunteer_id": "v1", "previous_stage": "active",
                    "left_on": date(2026, 3, 1)}
    for change in (lambda r: domain.change_role(r, "trainer", "c", NOW),
                   lambda r: domain.record_dbs_check(
                       r, "d", {"level": "enhanced", "issued_on": date(2026, 1, 1),
                                "update_service": False}, "enc", date(2026, 3, 1), NOW)):
        with pytest.raises(Conflict):
            change(moved)


def test_role_changes_keep_history_and_refuse_no_change():
    changed, events = domain.change_role(record(), "peer_support_worker", "c", NOW)
    assert changed["role"] == "peer_support_worker" and events == []
    assert changed["history"][-1]["from"] == "volunteer"
    with pytest.raises(Conflict):
        domain.change_role(changed, "peer_support_worker", "c", NOW)


def test_dates_in_the_future_are_refused_field_by_field():
    today = date(2026, 3, 1)
    with pytest.raises(ValidationFailed) as refused:
        domain.record_completion(record(), "c", {"kind": "core", "course_id": None,
                                                 "completed_on": date(2026, 3, 2)},
                                 None, today, NOW)
    assert set(refused.value.errors) == {"completed_on"}
    with pytest.raises(ValidationFailed) as refused:
        domain.record_supervision(record(), "s", {"supervised_on": date(2026, 3, 2),
                                                  "supervisor_id": "u"}, None, today, NOW)
    assert set(refused.value.errors) == {"supervised_on"}


def test_completion_takes_its_kind_from_the_course():
    form = {"course_id": "k1", "kind": None, "completed_on": date(2026, 2, 1)}
    course = {"_id": "k1", "kind": "core"}
    done, [event] = domain.record_completion(record(), "c1", form, course,
                                             date(2026, 3, 1), NOW)
    assert done["completions"][-1]["kind"] == "core"
    assert event["data"]["course_id"] == "k1" and event["data"]["kind"] == "core"
    with pytest.raises(ValidationFailed) as refused:
        domain.record_completion(record(), "c1", form, None, date(2026, 3, 1), NOW)
    assert set(refused.value.errors) == {"course_id"}
    with pytest.raises(ValidationFailed) as refused:
        domain.record_completion(record(), "c1", dict(form, kind="other"), course,
                                 date(2026, 3, 1), NOW)
    assert set(refused.value.errors) == {"kind"}


def test_events_carry_no_personal_detail():
    form = load_or_fail(NewVolunteerSchema(), {
        "name": "Ada Lovelace", "email": "ada@example.org", "phone": "07700 900123",
        "postcode": "cm1 2ab"})
    rec, [event] = domain.register_volunteer("essex", "v1", form, {"name": "enc1:x"}, NOW)
    assert event["data"] == {"volunteer_id": "v1", "role": "volunteer",
                             "stage": "applicant", "area": "CM1",
                             "registered_at": NOW.isoformat()}
    dbs_form = load_or_fail(DbsCheckSchema(), {
        "level": "enhanced", "issued_on": "2026-01-01", "certificate_number": "001234567890"})
    _, [recorded] = domain.record_dbs_check(rec, "d1", dbs_form, "enc1:sealed",
                                            date(2026, 3, 1), NOW)
    _, [supervised] = domain.record_supervision(
        rec, "s1", {"supervised_on": date(2026, 2, 1), "supervisor_id": "u9",
                    "notes": "enc1:notes"}, "enc1:notes", date(2026, 3, 1), NOW)
    text = str([event, recorded, supervised])
    for secret in ("Ada", "ada@", "07700", "2AB", "001234567890", "enc1:"):
        assert secret not in text


def test_bad_inputs_are_refused_field_by_field():
    with pytest.raises(ValidationFailed) as refused:
        load_or_fail(NewVolunteerSchema(), {"name": "", "email": "no", "phone": "x",
                                            "postcode": "nowhere", "role": "boss",
                                            "site_id": "derby"})
    assert set(refused.value.errors) == {"name", "email", "phone", "postcode", "role",
                                         "site_id"}
    with pytest.raises(ValidationFailed) as refused:
        load_or_fail(TrainingCompletionSchema(), {"completed_on": "2026-01-01"})
    assert set(refused.value.errors) == {"kind"}
    with pytest.raises(ValidationFailed) as refused:
        load_or_fail(DbsCheckSchema(), {"level": "super", "issued_on": "yesterday",
                                        "certificate_number": "12", "update_service": "?"})
    assert set(refused.value.errors) == {"level", "issued_on", "certificate_number",
                                         "update_service"}
    with pytest.raises(ValidationFailed) as refused:
        load_or_fail(TrainingPolicySchema(), {"dbs_renewal_months": 0, "supervision_weeks": 99})
    assert set(refused.value.errors) == set(domain.POLICY_FIELDS)


# -- reconcile: what the daily check does for each volunteer ----------------------------------

def run(rec, today, policy=POLICY):
    return domain.reconcile(rec, policy, date.fromisoformat(today), NOW)


def test_reconcile_announces_a_flip_once_and_then_nothing():
    rec, events, changed = run(good(eligible=False), "2026-03-01")
    assert changed and [e["type"] for e in events] == ["volunteer.eligibility_changed"]
    _, data = load_event(events[0])
    assert data == {"volunteer_id": "v1", "eligible": True, "reasons": [],
                    "evaluated_on": date(2026, 3, 1)}
    assert rec["eligibility"] == {"eligible": True, "reasons": [], "since": "2026-03-01"}
    again, events, changed = run(rec, "2026-03-01")
    assert (events, changed) == ([], False) and again == rec
    assert run(rec, "2026-03-28")[1:] == ([], False)      # still supervised


def test_time_passing_flips_eligibility_back_with_the_reason():
    rec, _, _ = run(good(), "2026-03-01")
    lapsed, [event], changed = run(rec, "2026-03-29")       # 8 weeks after 1 Feb
    assert changed and event["data"] == {
        "volunteer_id": "v1", "eligible": False, "reasons": ["supervision_overdue"],
        "evaluated_on": "2026-03-29"}
    assert run(lapsed, "2026-03-30")[1:] == ([], False)


def test_new_reasons_without_a_flip_are_stored_but_not_announced():
    rec, events, changed = run(record(stage="applicant"), "2026-03-01")
    assert events == [] and changed
    assert rec["eligibility"]["reasons"][0] == "core_course_missing"
    assert run(rec, "2026-03-01")[1:] == ([], False)


def test_dbs_expiring_once_per_certificate_per_notice_window():
    rec = good(dbs=[dbs("2023-04-15")], supervisions=[supervision("2026-03-01")],
               completions=[core("2026-01-01")], eligible=True)
    # Expires on 2026-04-15: the 30-day window opens on 2026-03-16.
    assert run(rec, "2026-03-15")[1] == []
    noticed, [event], changed = run(rec, "2026-03-16")
    assert event["type"] == "dbs.expiring" and event["data"] == {
        "volunteer_id": "v1", "dbs_check_id": "d-2023-04-15-enhanced",
        "expires_on": "2026-04-15"}
    assert run(noticed, "2026-03-16")[1:] == ([], False)
    assert run(noticed, "2026-04-01")[1:] == ([], False)
    # A longer renewal period (site policy) is a new window: noticed again.
    longer = dict(POLICY, dbs_renewal_months=37)
    assert [e["type"] for e in run(noticed, "2026-04-20", longer)[1]] == ["dbs.expiring"]
    # On the update service, nothing is expiring.
    assert run(good(dbs=[dbs("2023-04-15", update_service=True)], eligible=True),
               "2026-03-20")[1] == []


def test_expired_dbs_flips_and_is_not_noticed_as_expiring():
    rec = good(dbs=[dbs("2023-04-15", notices=["2026-04-15"])],
               supervisions=[supervision("2026-03-20")],
               completions=[core("2026-01-01")], eligible=True)
    _, events, _ = run(rec, "2026-04-15")
    assert [(e["type"], e["data"]["reasons"]) for e in events] == [
        ("volunteer.eligibility_changed", ["dbs_enhanced_expired"])]
