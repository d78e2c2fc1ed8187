"""A made-up site's 2026Q3, event by event, with every figure worked by hand.

Used by the unit tests (folded in memory) and by the integration tests
(published on the real broker). Ids are fresh per call so that two tests
sharing a datastore never collide.
"""
import uuid
from datetime import datetime

from shared.events import new_event


def at(day, hour=9):
    """2026-<day> (MM-DD) at <hour>:00 UTC."""
    return datetime.fromisoformat(f"2026-{day}T{hour:02d}:00:00+00:00")


def build(site="essex"):
    """(events in publication order, ids). Figures (2026Q3, 1 Jul - 30 Sep):

    referrals received in Q3: R1 midwife, R2 gp, R3 self, R4 midwife,
    R6 health_visitor = 5 (R5 came in Q2); accepted R1, R2 (R5's was in
    Q2); declined R3; signposted R4 -> conversion 2 / 4 = 0.5.
    First contact: R1 1 Jul -> 8 Jul = 7 days, R2 10 Jul -> 31 Jul = 21
    days: median 14, mean 14. Families matched: R1, R2. Contacts: R1 3
    (home visit 60 min, phone 30, group 90), R2 1 (video 45): per family
    mean 2, median 2; hours 225 / 60 = 3.75 -> 3.8. Journey j1 6 Jul -> 28
    Sep = 84 days = 12 weeks. Goals: g1 set 8 Jul, achieved 1 Sep; g2 set
    15 Jul, in progress.
    Volunteers: v1 (registered Jan, eligible Feb), v2 (registered Mar,
    eligible Mar, not eligible 10 Sep), v3 (registered May, left 15 Aug),
    v4 (registered 1 Aug, never eligible). At 1 Jul: v1 v2 v3 (3); at the
    end: v1 v2 v4 (3) of whom eligible v1 (1); retained 2 of 3 = 0.667;
    active (logged contacts) v1 v2 (2).
    WEMWBS: j1 40 -> 50, j2 45 -> 46: mean change 5.5, improved by more
    than 3: 1 of 2. Safeguarding: R2 has a concern raised and resolved on
    1 Sep; R6 one raised 29 Sep, still open.
    """
    ids = {name: str(uuid.uuid4()) for name in (
        "r1", "r2", "r3", "r4", "r5", "r6", "v1", "v2", "v3", "v4", "m1", "m2",
        "j1", "j2", "g1", "g2", "s1", "s2")}
    events = []

    def add(kind, data, when):
        events.append(new_event(kind, data, site_id=site, now=when,
                                subject=data.get("referral_id") or data.get("volunteer_id")))

    def received(r, source, day):
        add("referral.received", {"referral_id": ids[r], "source": source,
                                  "preferred_language": "en", "area": "CM1",
                                  "received_at": at(day).isoformat()}, at(day))

    def accepted(r, day):
        add("referral.accepted", {"referral_id": ids[r], "preferred_language": "en",
                                  "interpreter_needed": False, "area": "CM1",
                                  "needs": ["isolation"], "preferred_support": ["home_visit"],
                                  "accepted_at": at(day).isoformat()}, at(day))

    for v, registered in (("v1", "01-10"), ("v2", "03-01"), ("v3", "05-01"),
                          ("v4", "08-01")):
        add("volunteer.registered", {"volunteer_id": ids[v], "role": "volunteer",
                                     "stage": "applicant", "area": "CM1",
                                     "registered_at": at(registered).isoformat()},
            at(registered))
    for v, day, eligible in (("v1", "02-01", True), ("v2", "03-15", True),
                             ("v3", "05-20", True), ("v2", "09-10", False)):
        add("volunteer.eligibility_changed", {
            "volunteer_id": ids[v], "eligible": eligible,
            "reasons": [] if eligible else ["supervision_overdue"],
            "evaluated_on": f"2026-{day}"}, at(day))
    add("volunteer.left", {"volunteer_id": ids["v3"], "previous_stage": "active",
                           "left_on": "2026-08-15"}, at("08-15"))

    received("r5", "midwife", "06-20")
    accepted("r5", "06-25")
    received("r1", "midwife", "07-01")
    accepted("r1", "07-02")
    received("r2", "gp", "07-10")
    accepted("r2", "07-11")
    received("r3", "self", "08-01")
    add("referral.declined", {"referral_id": ids["r3"], "reason": "not_eligible",
                              "declined_at": at("08-02").isoformat()}, at("08-02"))
    received("r4", "midwife", "08-05")
    add("referral.signposted", {"referral_id": ids["r4"],
                                "signposted_at": at("08-06").isoformat()}, at("08-06"))
    received("r6", "health_visitor", "09-29")

    for m, r, v, j, day, start in (("m1", "r1", "v1", "j1", "07-05", "07-06"),
                                   ("m2", "r2", "v2", "j2", "07-20", "07-21")):
        add("match.confirmed", {"match_id": ids[m], "referral_id": ids[r],
                                "volunteer_id": ids[v], "score": 0.8,
                                "confirmed_at": at(day).isoformat()}, at(day))
        add("journey.started", {"journey_id": ids[j], "referral_id": ids[r],
                                "volunteer_id": ids[v], "match_id": ids[m],
                                "started_at": at(start).isoformat()}, at(start))

    def journey(j):
        r, v = ("r1", "v1") if j == "j1" else ("r2", "v2")
        return {"journey_id": ids[j], "referral_id": ids[r], "volunteer_id": ids[v]}

    for j, day, mode, minutes in (("j1", "07-08", "home_visit", 60),
                                  ("j1", "07-15", "phone", 30),
                                  ("j1", "08-01", "group", 90),
                                  ("j2", "07-31", "video", 45)):
        add("contact.logged", dict(journey(j), contact_id=str(uuid.uuid4()),
                                   date=f"2026-{day}", mode=mode,
                                   duration_minutes=minutes), at(day, 18))
    add("goal.set", dict(journey("j1"), goal_id=ids["g1"], category="wellbeing",
                         set_on="2026-07-08"), at("07-08"))
    add("goal.set", dict(journey("j1"), goal_id=ids["g2"], category="social",
                         set_on="2026-07-15"), at("07-15"))
    add("goal.reviewed", dict(journey("j1"), goal_id=ids["g1"], category="wellbeing",
                              status="in_progress", reviewed_on="2026-08-01"), at("08-01"))
    add("goal.reviewed", dict(journey("j1"), goal_id=ids["g1"], category="wellbeing",
                              status="achieved", reviewed_on="2026-09-01"), at("09-01"))
    add("goal.reviewed", dict(journey("j1"), goal_id=ids["g2"], category="social",
                              status="in_progress", reviewed_on="2026-09-01"), at("09-01"))
    for j, point, day, total in (("j1", "baseline", "07-08", 40), ("j1", "exit", "09-20", 50),
                                 ("j2", "baseline", "07-31", 45), ("j2", "exit", "09-25", 46)):
        add("outcome.recorded", dict(journey(j), outcome_id=str(uuid.uuid4()),
                                     instrument="wemwbs", time_point=point,
                                     recorded_on=f"2026-{day}", scores={"total": total}),
            at(day))
    add("journey.ended", dict(journey("j1"), reason="completed",
                              ended_at=at("09-28").isoformat()), at("09-28"))
    add("safeguarding.concern_raised", {"concern_id": ids["s1"], "referral_id": ids["r2"],
                                        "severity": "medium", "raised_at":
                                        at("09-01").isoformat()}, at("09-01"))
    add("safeguarding.concern_resolved", {"concern_id": ids["s1"], "referral_id": ids["r2"],
                                          "severity": "medium", "resolved_at":
                                          at("09-01", 12).isoformat()}, at("09-01", 12))
    add("safeguarding.concern_raised", {"concern_id": ids["s2"], "referral_id": ids["r6"],
                                        "severity": "high", "raised_at":
                                        at("09-29", 10).isoformat()}, at("09-29", 10))
    return events, ids


EXPECTED = {
    "referrals": {"received": 5, "accepted": 2, "declined": 1, "signposted": 1,
                  "withdrawn": 0, "conversion_rate": 0.5},
    "by_source": {"midwife": 2, "gp": 1, "self": 1, "health_visitor": 1},
    "time_to_first_contact_days": {"n": 2, "median": 14, "mean": 14},
    "families_matched": 2, "families_supported": 2,
    "contacts": {"total": 4, "home_visit": 1, "phone": 1, "group": 1, "video": 1},
    "per_family": {"n": 2, "median": 2, "mean": 2},
    "weeks_of_support": {"n": 1, "median": 12.0, "mean": 12.0},
    "volunteers": {"pool_at_quarter_end": 3, "eligible_at_quarter_end": 1,
                   "active_in_quarter": 2, "hours": 3.8},
    "retention": {"at_quarter_start": 3, "retained": 2, "rate": 0.667},
    "goals": {"set": 2, "achieved": 1},
    "wemwbs": {"n_pairs": 2, "baseline_mean": 42.5, "exit_mean": 48.0,
               "mean_change": 5.5, "improved": 1, "improved_share": 0.5},
}


def assert_matches_expected(report):
    e = EXPECTED
    r = report["referrals"]
    assert {k: r[k] for k in e["referrals"]} == e["referrals"]
    assert {k: v for k, v in r["by_source"].items() if v} == e["by_source"]
    assert report["time_to_first_contact_days"] == e["time_to_first_contact_days"]
    assert report["families_matched"] == e["families_matched"]
    assert report["families_supported"] == e["families_supported"]
    c = report["contacts"]
    assert c["total"] == e["contacts"]["total"]
    assert {k: v for k, v in c["by_mode"].items() if v} == {
        k: v for k, v in e["contacts"].items() if k != "total"}
    assert c["per_family"] == e["per_family"]
    assert report["weeks_of_support"] == e["weeks_of_support"]
    v = report["volunteers"]
    assert {k: v[k] for k in e["volunteers"]} == e["volunteers"]
    assert v["retention"] == e["retention"]
    assert {k: report["goals"][k] for k in ("set", "achieved")} == e["goals"]
    assert report["goals"]["by_category"]["wellbeing"] == {"set": 1, "achieved": 1}
    [wemwbs] = [o for o in report["outcomes"] if o["instrument"] == "wemwbs"]
    assert {k: wemwbs[k] for k in e["wemwbs"]} == e["wemwbs"]
    assert all(o["n_pairs"] == 0 for o in report["outcomes"] if o["instrument"] != "wemwbs")
