import copy
import math
import random
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pytest

from services.reporting import domain
from services.reporting.tests.worked_example import (assert_matches_expected, at,
                                                     build)
from shared.errors import ValidationFailed
from shared.events import load_event, new_event

NOW = datetime(2026, 11, 2, 10, 0, tzinfo=timezone.utc)
Q3 = domain.parse_quarter("2026Q3")


def received(source="gp"):
    return load_event(new_event("referral.received", {
        "referral_id": "r1", "source": source, "preferred_language": "en",
        "area": "DE22", "received_at": NOW.isoformat()},
        site_id="derby", subject="r1", now=NOW, correlation_id="c1"))


def fold(events):
    """The projections, in memory, as the live handlers and the rebuild make
    them (through the same rules)."""
    documents = {}
    for event in events:
        envelope, _ = load_event(copy.deepcopy(event))
        for change in domain.changes_for(envelope, envelope["data"]):
            key = (change.kind, change.key)
            document = documents.setdefault(key, {"_id": change.key,
                                                  "site_id": envelope["siteid"]})
            domain.apply_sets(document, change.sets)
    for (kind, _), document in documents.items():
        if kind == domain.REFERRAL:
            document.update(domain.derived_fields(document))
    return documents


def split(documents):
    referrals = [d for (k, _), d in documents.items() if k == domain.REFERRAL]
    volunteers = [d for (k, _), d in documents.items() if k == domain.VOLUNTEER]
    messages = [d for (k, _), d in documents.items() if k == domain.MESSAGE]
    return referrals, volunteers, messages


def test_archive_record_keeps_the_event_whole_under_its_id():
    envelope, data = received()
    record = domain.archive_record(envelope, data, archived_at=NOW)
    assert record["_id"] == envelope["id"]
    assert record["site_id"] == "derby" and record["type"] == "referral.received"
    assert record["data"] == envelope["data"] and record["correlationid"] == "c1"


# -- quarters -------------------------------------------------------------------

@pytest.mark.parametrize("text, start, end", [
    ("2026Q1", date(2026, 1, 1), date(2026, 4, 1)),
    ("2026q3", date(2026, 7, 1), date(2026, 10, 1)),
    ("2026Q4", date(2026, 10, 1), date(2027, 1, 1)),
])
def test_quarters_are_calendar_quarters(text, start, end):
    quarter = domain.parse_quarter(text)
    assert (quarter.start, quarter.end) == (start, end)
    assert quarter.holds(start) and not quarter.holds(end)
    assert quarter.holds(datetime.combine(end, datetime.min.time()) - timedelta(seconds=1))


@pytest.mark.parametrize("text", ["2026Q5", "2026-Q3", "Q3", "", None, "1999Q1"])
def test_a_bad_quarter_is_refused_naming_the_field(text):
    with pytest.raises(ValidationFailed) as refused:
        domain.parse_quarter(text)
    assert "quarter" in refused.value.errors


# -- projections ----------------------------------------------------------------

def test_the_worked_example_gives_every_figure_worked_by_hand():
    events, _ = build()
    referrals, volunteers, _ = split(fold(events))
    report = domain.quarterly_report("essex", Q3, referrals, volunteers)
    assert report["period"] == {"start": "2026-07-01", "end": "2026-09-30"}
    assert_matches_expected(report)


def test_an_event_applied_twice_or_out_of_order_changes_nothing():
    events, _ = build()
    once = fold(events)
    shuffled = events * 2
    random.Random(7).shuffle(shuffled)
    assert fold(shuffled) == once


def test_a_referral_waits_for_triage_until_decided_and_for_a_match_until_matched():
    events, ids = build()
    docs = fold(events)
    r6 = docs[(domain.REFERRAL, ids["r6"])]
    r5 = docs[(domain.REFERRAL, ids["r5"])]
    r1 = docs[(domain.REFERRAL, ids["r1"])]
    assert domain.awaiting_triage(r6) and not domain.awaiting_triage(r5)
    assert domain.waiting_for_match(r5) and not domain.waiting_for_match(r1)
    assert r6["live"] and r5["live"] and not r1["live"]


def test_a_match_ended_with_rematch_puts_the_parent_back_and_a_final_end_does_not():
    r = {"accepted_at": at("07-01"), "matches": {"m1": {"confirmed_at": at("07-02")}}}
    assert not domain.waiting_for_match(r)
    r["matches"]["m1"].update(ended_at=at("07-09"), rematch=True)
    assert domain.waiting_for_match(r)
    r["matches"]["m2"] = {"confirmed_at": at("07-12")}
    assert not domain.waiting_for_match(r)
    r["matches"]["m2"].update(ended_at=at("07-20"), rematch=False)
    assert not domain.waiting_for_match(r)
    assert not domain.waiting_for_match({"accepted_at": at("07-01"),
                                         "withdrawn_at": at("07-02")})


def test_eligibility_at_a_date_is_the_last_decision_before_it():
    volunteer = {"registered_on": "2026-01-01", "eligibility": {
        "e1": {"on": "2026-02-01", "at": at("02-01"), "eligible": True},
        "e2": {"on": "2026-09-10", "at": at("09-10"), "eligible": False},
        "e3": {"on": "2026-09-10", "at": at("09-10", 15), "eligible": True}}}
    assert not domain.eligible_on(volunteer, date(2026, 2, 1))
    assert domain.eligible_on(volunteer, date(2026, 2, 2))
    assert domain.eligible_on(volunteer, date(2026, 10, 1))   # later the same day wins


# -- business metrics ---------------------------------------------------------------

def test_business_metrics_of_the_worked_example():
    events, _ = build()
    # Add a failed message and a referral over its triage target.
    due = new_event("referral.received", {
        "referral_id": "late", "source": "gp", "preferred_language": "en", "area": "CM1",
        "received_at": at("09-20").isoformat(), "triage_due_at": at("09-25").isoformat()}
        if _has_triage_due() else {
        "referral_id": "late", "source": "gp", "preferred_language": "en", "area": "CM1",
        "received_at": at("09-20").isoformat()}, site_id="essex", now=at("09-20"))
    failed = new_event("message.failed", {
        "message_id": "msg1", "kind": "referral_received", "channel": "sms",
        "recipient_kind": "parent", "error_code": "temporary-failure", "attempts": 5,
        "failed_at": at("09-29", 12).isoformat()}, site_id="essex", now=at("09-29", 12))
    old = new_event("message.failed", dict(failed["data"], message_id="msg0",
                                           failed_at=at("09-20").isoformat()),
                    site_id="essex", now=at("09-20"))
    referrals, _, messages = split(fold(events + [due, failed, old]))
    now = at("09-30", 10)   # a Wednesday: the week began Monday 28 Sep
    metrics = domain.business_metrics({"derby"}, referrals, messages, now)
    essex = metrics["essex"]
    assert essex["alongside_referrals_awaiting_triage"] == 2          # R6, late
    assert essex["alongside_referrals_awaiting_triage_oldest_seconds"] == (
        now - at("09-20")).total_seconds()
    assert essex["alongside_referrals_over_triage_target"] == (1 if _has_triage_due() else 0)
    assert essex["alongside_safeguarding_concerns_unacknowledged"] == 1   # s2; s1 resolved
    assert essex["alongside_safeguarding_concern_oldest_unacknowledged_seconds"] == 24 * 3600
    assert essex["alongside_parents_waiting_for_match"] == 1             # R5
    assert essex["alongside_matches_confirmed_this_week"] == 0
    assert essex["alongside_contacts_logged_this_week"] == 0
    assert essex["alongside_messages_failed_last_24h"] == 1
    assert set(metrics["derby"].values()) == {0.0}
    later = domain.business_metrics(set(), referrals, messages, at("07-21", 20))
    assert later["essex"]["alongside_matches_confirmed_this_week"] == 1   # m2, Mon 20 Jul
    assert domain.week_start(at("07-26")) == at("07-20", 0)


def _has_triage_due():
    from shared.events.types.referrals import ReferralReceivedV1
    return "triage_due_at" in ReferralReceivedV1._declared_fields


def test_a_missing_triage_target_is_no_target():
    r = {"site_id": "s", "received_at": at("07-01")}
    metrics = domain.business_metrics(set(), [r], [], at("12-01"))
    assert metrics["s"]["alongside_referrals_awaiting_triage"] == 1
    assert metrics["s"]["alongside_referrals_over_triage_target"] == 0


def test_an_acknowledged_concern_is_no_longer_unacknowledged():
    r = {"site_id": "s", "concerns": {"c": {"raised_at": at("07-01")}}}
    assert domain.business_metrics(set(), [r], [], at("07-02"))["s"][
        "alongside_safeguarding_concerns_unacknowledged"] == 1
    r["concerns"]["c"]["acknowledged_at"] = at("07-01", 10)
    assert domain.business_metrics(set(), [r], [], at("07-02"))["s"][
        "alongside_safeguarding_concerns_unacknowledged"] == 0


# -- statistics ------------------------------------------------------------------------

# Student's sleep data (Cushny and Peebles), the worked paired example of R's
# t.test documentation: t.test(extra ~ group, sleep, paired = TRUE) gives
# t = -4.0621, df = 9, p-value = 0.002833, 95% CI -2.4598858 -0.7001142,
# mean difference -1.58 (group 1 - group 2). Here baseline = group 1.
SLEEP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def test_paired_statistics_match_the_published_worked_example():
    measure = domain.Measure("wemwbs", "total", True, 1.0, "test")
    result = domain.paired_change(list(zip(SLEEP_1, SLEEP_2)), measure)
    assert result["n_pairs"] == 10 and result["mean_change"] == 1.58
    assert result["t"] == pytest.approx(4.0621, abs=1e-3)
    assert result["p_value"] == pytest.approx(0.002833, abs=1e-6)
    assert result["ci95"] == pytest.approx([0.7001142, 2.4598858], abs=1e-3)
    # Changes 1.2 2.4 1.3 1.3 0 1 1.8 0.8 4.6 1.4: more than 1.0 in 7 of 10.
    assert result["improved"] == 7 and result["improved_share"] == 0.7


def test_paired_statistics_match_an_independent_numpy_computation():
    rng = np.random.default_rng(11)
    baseline = rng.integers(14, 71, 40).astype(float)
    exit_ = np.clip(baseline + rng.normal(2.5, 6, 40).round(), 14, 70)
    measure = domain.MEASURES[0]
    result = domain.paired_change(list(zip(baseline.tolist(), exit_.tolist())), measure)
    diff = exit_ - baseline
    n, mean, sd = len(diff), diff.mean(), diff.std(ddof=1)
    se = sd / math.sqrt(n)
    t_critical_39 = 2.0226909   # the t table's two-sided 5% point for 39 df
    assert result["mean_change"] == pytest.approx(mean, abs=1e-3)
    assert result["sd_change"] == pytest.approx(sd, abs=1e-3)
    assert result["t"] == pytest.approx(mean / se, abs=1e-3)
    assert result["ci95"] == pytest.approx([mean - t_critical_39 * se,
                                            mean + t_critical_39 * se], abs=1e-3)
    assert result["effect_size"]["value"] == pytest.approx(mean / sd, abs=1e-3)
    # The two-sided p from the t density integrated numerically (trapezium).
    x = np.linspace(abs(mean / se), 60, 400001)
    df = n - 1
    density = (math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))
               * (1 + x ** 2 / df) ** (-(df + 1) / 2))
    p = 2 * float(np.sum((density[1:] + density[:-1]) / 2 * np.diff(x)))
    assert result["p_value"] == pytest.approx(p, rel=1e-3)
    assert result["improved"] == int(np.sum(diff > 3))


def test_lower_is_better_measures_count_a_fall_as_improvement():
    epds = next(m for m in domain.MEASURES if m.instrument == "epds")
    result = domain.paired_change([(18, 10), (15, 12), (20, 21)], epds)
    assert result["mean_change"] == pytest.approx(-3.333, abs=1e-3)
    assert result["improved"] == 1   # only 18 -> 10 fell by more than 4
    assert result["direction"] == "lower is better"


def test_too_few_pairs_give_means_but_no_test():
    measure = domain.MEASURES[0]
    one = domain.paired_change([(40, 45)], measure)
    assert one["mean_change"] == 5 and one["p_value"] is None and one["ci95"] is None
    none = domain.paired_change([], measure)
    assert none["n_pairs"] == 0 and none["baseline_mean"] is None
    same = domain.paired_change([(40, 44), (50, 54)], measure)
    assert same["ci95"] == [4, 4] and same["p_value"] is None


def test_pairs_take_each_journeys_first_baseline_and_last_exit_in_the_quarter():
    def o(journey, point, day, total):
        return {"journey_id": journey, "instrument": "wemwbs", "time_point": point,
                "recorded_on": f"2026-{day}", "scores": {"total": total}}
    referral = {"outcomes": {
        "a": o("j", "baseline", "05-01", 30), "b": o("j", "baseline", "06-01", 35),
        "c": o("j", "exit", "07-15", 40), "d": o("j", "exit", "09-01", 44),
        "e": o("k", "baseline", "05-01", 50), "f": o("k", "exit", "10-02", 60),
        "g": o("l", "exit", "08-01", 60)}}
    assert domain.outcome_pairs([referral], Q3, domain.MEASURES[0]) == [(30, 44)]


# -- suppression -------------------------------------------------------------------------

def test_counts_under_5_are_hidden_and_no_hidden_count_follows_from_a_total():
    rows = {"a": {"x": 3, "y": 10, "z": 12}, "b": {"x": 8, "y": 9, "z": 20},
            "c": {"x": 7, "y": 6, "z": 30}}
    table = domain.suppress_table(rows, ("x", "y", "z"), additive=True)
    assert table["rows"]["a"]["x"] is None and table["flags"]["a"]["x"] == "<5"
    # Row a: 3 is hidden, so its smallest visible cell (y=10) is hidden too;
    # column x: 3 hidden, so the smallest other (c's 7) too; that in turn
    # makes row c hide its smallest (y=6); column y then has a, c hidden.
    assert_no_line_has_one_hidden(table, ("x", "y", "z"))
    assert table["rows"]["a"]["y"] is None and table["flags"]["a"]["y"] == "<5"
    assert table["totals"]["x"] == 18 and table["grand_total"] == 105


def test_a_table_of_small_sites_hides_the_national_total_too():
    rows = {"a": {"x": 1}, "b": {"x": 2}}
    table = domain.suppress_table(rows, ("x",), additive=False)
    assert table["rows"] == {"a": {"x": None}, "b": {"x": None}}
    assert table["totals"] == {"x": None} and table["total_flags"] == {"x": "<5"}


def test_suppression_holds_on_random_tables():
    rng = random.Random(3)
    columns = ("p", "q", "r", "s")
    for _ in range(200):
        rows = {f"site{i}": {c: rng.choice([0, 1, 2, 4, 5, 6, 9, 15, 30]) for c in columns}
                for i in range(rng.randint(1, 5))}
        for additive in (True, False):
            table = domain.suppress_table(rows, columns, additive)
            for site, values in table["rows"].items():
                for column, value in values.items():
                    assert value is None or value >= 5
                    assert value is None or value == rows[site][column]
            if additive:
                assert_no_line_has_one_hidden(table, columns)


def assert_no_line_has_one_hidden(table, columns):
    for site, values in table["rows"].items():
        line = list(values.values()) + [table["row_totals"][site]]
        assert sum(v is None for v in line) != 1, (site, line)
    for column in columns:
        line = [table["rows"][s][column] for s in table["rows"]] + [table["totals"][column]]
        assert sum(v is None for v in line) != 1, (column, line)
    line = list(table["row_totals"].values()) + [table["grand_total"]]
    assert sum(v is None for v in line) != 1
    line = list(table["totals"].values()) + [table["grand_total"]]
    assert sum(v is None for v in line) != 1


def test_a_national_roles_site_report_hides_small_numbers():
    events, _ = build()
    referrals, volunteers, _ = split(fold(events))
    report = domain.quarterly_report("essex", Q3, referrals, volunteers)
    hidden = domain.suppressed_report(report)
    assert hidden["referrals"]["received"] == 5
    assert hidden["referrals"]["by_source"]["midwife"] is None
    assert hidden["suppressed"]["referrals_by_source.midwife"] == "<5"
    assert hidden["referrals"]["accepted"] is None and hidden["families_matched"] is None
    assert hidden["time_to_first_contact_days"]["mean"] is None
    assert all(o["mean_change"] is None for o in hidden["outcomes"])
    assert hidden["volunteers"]["retention"]["rate"] is None
    assert report["referrals"]["by_source"]["midwife"] == 2   # the original is untouched


def test_the_national_view_pools_outcomes_and_suppresses_per_site_rows():
    events_a, _ = build("a")
    events_b, _ = build("b")
    ra, va, _ = split(fold(events_a))
    rb, vb, _ = split(fold(events_b))
    reports = [domain.quarterly_report("a", Q3, ra, va),
               domain.quarterly_report("b", Q3, rb, vb)]
    national = domain.national_report(Q3, reports, domain.pooled_outcomes([ra, rb], Q3))
    by_source = national["tables"]["referrals_by_source"]
    assert by_source["row_totals"] == {"a": 5, "b": 5} and by_source["grand_total"] == 10
    assert by_source["rows"]["a"]["midwife"] is None and by_source["totals"]["midwife"] is None
    pathway = national["tables"]["pathway"]
    assert pathway["rows"]["a"]["accepted"] is None and pathway["totals"]["accepted"] is None
    [wemwbs] = [o for o in national["outcomes"] if o["instrument"] == "wemwbs"]
    assert wemwbs["n_pairs"] is None and wemwbs["flag"] == "<5"   # 4 pairs


def test_a_coordinators_own_contact_counts_as_a_contact_but_not_volunteer_hours():
    events, ids = build()
    coordinator_contact = new_event("contact.logged", {
        "journey_id": ids["j1"], "referral_id": ids["r1"], "volunteer_id": ids["v1"],
        "contact_id": "c-coord", "date": "2026-08-10", "mode": "phone",
        "duration_minutes": 120, "made_by": "coordinator"}, site_id="essex", now=at("08-10"))
    referrals, volunteers, _ = split(fold(events + [coordinator_contact]))
    report = domain.quarterly_report("essex", Q3, referrals, volunteers)
    assert report["contacts"]["total"] == 5 and report["contacts"]["by_mode"]["phone"] == 2
    assert report["volunteers"]["hours"] == 3.8


def test_referrals_quiet_since_the_quarter_began_change_no_figure():
    events, ids = build()
    referrals, volunteers, _ = split(fold(events))
    active = [r for r in referrals if r["last_activity_at"] >= Q3.starts_at]
    assert len(active) < len(referrals)                       # R5 is left out
    assert ids["r5"] not in {r["_id"] for r in active}
    assert (domain.quarterly_report("essex", Q3, active, volunteers)
            == domain.quarterly_report("essex", Q3, referrals, volunteers))


def test_a_national_view_of_no_sites_or_one_category_gives_nothing_away():
    empty = domain.national_report(Q3, [], domain.pooled_outcomes([], Q3))
    assert empty["tables"]["pathway"]["rows"] == {}
    assert empty["tables"]["referrals_by_source"]["grand_total"] is None
    single = domain.suppress_table({"a": {"x": 3}, "b": {"x": 9}}, ("x",), additive=True)
    # a's only cell is its row total: both hidden, and b's too for the column.
    assert single["rows"] == {"a": {"x": None}, "b": {"x": None}}
    assert single["row_totals"] == {"a": None, "b": None} and single["totals"]["x"] == 12
