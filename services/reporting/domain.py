"""Reporting rules, pure: how each event changes the projections, and every
report figure computed from them. No nameko, no pymongo, no clock read.

Projections are small documents per site, built from the append-only
archive:

- a referral's facts (``referral``): when it was received, decided, matched,
  the journeys, contacts, goals, outcome measures and safeguarding concerns
  on it;
- a volunteer's facts (``volunteer``): registered, eligibility over time, left;
- a message's facts (``message``): sent or failed, when.

Each event becomes ``$set`` changes at paths keyed by the ids the event
carries (``contacts.<contact id>.mode`` ...), never increments or pushes:
applying an event twice, or two events in either order, gives the same
document. Everything that depends on several facts (a referral's status, a
volunteer's eligibility at a date) is worked out here when a figure is
asked for, so the projections never hold a value that the order of
delivery could have made wrong.
"""
import math
import re
import statistics
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from scipy import stats as scipy_stats

from shared.errors import ValidationFailed
from shared.events.catalogue import REFERRAL_SOURCES
from shared.events.types.journeys import CONTACT_MODES, GOAL_CATEGORIES

REFERRAL, VOLUNTEER, MESSAGE = "referral", "volunteer", "message"


def archive_record(envelope, data, archived_at):
    """The append-only archive keeps every event whole, keyed by its id."""
    return {
        "_id": envelope["id"],
        "site_id": envelope["siteid"],
        "type": envelope["type"],
        "time": envelope["time"],
        "subject": envelope["subject"],
        "correlationid": envelope["correlationid"],
        "causationid": envelope["causationid"],
        "data": envelope["data"],
        "archived_at": archived_at,
    }


# -- time ---------------------------------------------------------------------

def as_datetime(value):
    """An ISO date or timestamp (or a datetime) as an aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time())
    else:
        text = str(value).replace("Z", "+00:00")
        moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def as_date(value):
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return as_datetime(value).date()
    if isinstance(value, date):
        return value
    text = str(value)
    if len(text) == 10:
        return date.fromisoformat(text)
    return as_datetime(text).date()


QUARTER = re.compile(r"^(\d{4})Q([1-4])$")


@dataclass(frozen=True)
class Quarter:
    label: str
    start: date       # first day
    end: date         # the day after the last day

    def holds(self, value):
        day = as_date(value)
        return day is not None and self.start <= day < self.end

    @property
    def last_day(self):
        return self.end - timedelta(days=1)

    @property
    def starts_at(self):
        return datetime.combine(self.start, time(), tzinfo=timezone.utc)


def parse_quarter(text):
    """``2026Q3`` -> July to September 2026 (calendar quarters)."""
    match = QUARTER.match(str(text or "").strip().upper())
    if not match:
        raise ValidationFailed("The quarter is not valid.",
                               {"quarter": ["expected YYYYQn, e.g. 2026Q3"]})
    year, number = int(match.group(1)), int(match.group(2))
    if year < 2000 or year > 2100:
        raise ValidationFailed("The quarter is not valid.",
                               {"quarter": ["year out of range"]})
    start = date(year, 3 * number - 2, 1)
    end = date(year + 1, 1, 1) if number == 4 else date(year, 3 * number + 1, 1)
    return Quarter(f"{year}Q{number}", start, end)


# -- projections: events become $set changes ---------------------------------

@dataclass(frozen=True)
class Change:
    kind: str        # REFERRAL, VOLUNTEER or MESSAGE
    key: str         # the document's id (referral, volunteer or message id)
    sets: dict       # dotted path -> value


def _path(*parts):
    # Ids become field names: MongoDB field names may hold neither '.' nor a
    # leading '$'.
    return ".".join(str(p).replace(".", "_").lstrip("$") for p in parts)


def changes_for(envelope, data):
    """The projection changes one event makes (an empty list if none)."""
    kind = envelope["type"]
    at = envelope["time"]
    rule = _RULES.get(kind)
    return rule(envelope, data, at) if rule else []


def _received(envelope, d, at):
    return [Change(REFERRAL, d["referral_id"], {
        "source": d["source"], "area": d.get("area"),
        "preferred_language": d.get("preferred_language"),
        "received_at": as_datetime(d["received_at"]),
        "triage_due_at": as_datetime(d.get("triage_due_at")),
    })]


def _referral_stamp(field, data_field):
    def rule(envelope, d, at):
        sets = {field: as_datetime(d[data_field])}
        if "reason" in d:
            sets[field.replace("_at", "_reason")] = d["reason"]
        return [Change(REFERRAL, d["referral_id"], sets)]
    return rule


def _concern(field, data_field):
    def rule(envelope, d, at):
        sets = {_path("concerns", d["concern_id"], field): as_datetime(d[data_field])}
        if d.get("severity"):
            sets[_path("concerns", d["concern_id"], "severity")] = d["severity"]
        return [Change(REFERRAL, d["referral_id"], sets)]
    return rule


def _match_confirmed(envelope, d, at):
    m = ("matches", d["match_id"])
    return [Change(REFERRAL, d["referral_id"], {
        _path(*m, "confirmed_at"): as_datetime(d["confirmed_at"]),
        _path(*m, "volunteer_id"): d["volunteer_id"]})]


def _match_ended(envelope, d, at):
    m = ("matches", d["match_id"])
    return [Change(REFERRAL, d["referral_id"], {
        _path(*m, "ended_at"): as_datetime(d["ended_at"]),
        _path(*m, "rematch"): bool(d["rematch"]),
        _path(*m, "volunteer_id"): d["volunteer_id"]})]


def _journey_started(envelope, d, at):
    j = ("journeys", d["journey_id"])
    return [Change(REFERRAL, d["referral_id"], {
        _path(*j, "started_at"): as_datetime(d["started_at"]),
        _path(*j, "volunteer_id"): d["volunteer_id"]})]


def _journey_ended(envelope, d, at):
    j = ("journeys", d["journey_id"])
    return [Change(REFERRAL, d["referral_id"], {
        _path(*j, "ended_at"): as_datetime(d["ended_at"]),
        _path(*j, "end_reason"): d["reason"],
        _path(*j, "volunteer_id"): d["volunteer_id"]})]


def _contact(envelope, d, at):
    return [Change(REFERRAL, d["referral_id"], {_path("contacts", d["contact_id"]): {
        "journey_id": d["journey_id"], "volunteer_id": d["volunteer_id"],
        "date": str(as_date(d["date"])), "mode": d["mode"],
        "minutes": int(d["duration_minutes"]), "logged_at": at,
        # Only the volunteer's own contacts count as volunteer hours.
        "made_by": d.get("made_by") or "volunteer"}})]


def _goal_set(envelope, d, at):
    g = ("goals", d["goal_id"])
    return [Change(REFERRAL, d["referral_id"], {
        _path(*g, "category"): d["category"], _path(*g, "journey_id"): d["journey_id"],
        _path(*g, "set_on"): str(as_date(d["set_on"]))})]


def _goal_reviewed(envelope, d, at):
    g = ("goals", d["goal_id"])
    return [Change(REFERRAL, d["referral_id"], {
        _path(*g, "category"): d["category"], _path(*g, "journey_id"): d["journey_id"],
        _path(*g, "reviews", envelope["id"]): {
            "on": str(as_date(d["reviewed_on"])), "status": d["status"], "at": at}})]


def _outcome(envelope, d, at):
    return [Change(REFERRAL, d["referral_id"], {_path("outcomes", d["outcome_id"]): {
        "journey_id": d["journey_id"], "instrument": d["instrument"],
        "time_point": d["time_point"], "recorded_on": str(as_date(d["recorded_on"])),
        "scores": {k: float(v) for k, v in d["scores"].items()}, "at": at}})]


def _volunteer_registered(envelope, d, at):
    return [Change(VOLUNTEER, d["volunteer_id"], {
        "registered_on": str(as_date(d["registered_at"])), "role": d["role"]})]


def _eligibility(envelope, d, at):
    return [Change(VOLUNTEER, d["volunteer_id"], {_path("eligibility", envelope["id"]): {
        "on": str(as_date(d["evaluated_on"])), "at": at, "eligible": bool(d["eligible"])}})]


def _volunteer_left(envelope, d, at):
    return [Change(VOLUNTEER, d["volunteer_id"], {"left_on": str(as_date(d["left_on"]))})]


def _message(outcome):
    def rule(envelope, d, at):
        return [Change(MESSAGE, d["message_id"], {
            "kind": d["kind"], "channel": d["channel"],
            f"{outcome}_at": as_datetime(d[f"{outcome}_at"])})]
    return rule


_RULES = {
    "referral.received": _received,
    "referral.accepted": _referral_stamp("accepted_at", "accepted_at"),
    "referral.declined": _referral_stamp("declined_at", "declined_at"),
    "referral.signposted": _referral_stamp("signposted_at", "signposted_at"),
    "referral.withdrawn": _referral_stamp("withdrawn_at", "withdrawn_at"),
    "referral.closed": _referral_stamp("closed_at", "closed_at"),
    "safeguarding.concern_raised": _concern("raised_at", "raised_at"),
    "safeguarding.concern_acknowledged": _concern("acknowledged_at", "acknowledged_at"),
    "safeguarding.concern_resolved": _concern("resolved_at", "resolved_at"),
    "match.confirmed": _match_confirmed,
    "match.ended": _match_ended,
    "journey.started": _journey_started,
    "journey.ended": _journey_ended,
    "contact.logged": _contact,
    "goal.set": _goal_set,
    "goal.reviewed": _goal_reviewed,
    "outcome.recorded": _outcome,
    "volunteer.registered": _volunteer_registered,
    "volunteer.eligibility_changed": _eligibility,
    "volunteer.left": _volunteer_left,
    "message.sent": _message("sent"),
    "message.failed": _message("failed"),
}
PROJECTED_TYPES = frozenset(_RULES)


def apply_sets(document, sets):
    """``$set`` in memory (the rebuild folds the archive this way)."""
    for path, value in sets.items():
        *parents, leaf = path.split(".")
        node = document
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return document


# -- what a referral's facts mean --------------------------------------------

DECISIONS = ("accepted_at", "declined_at", "signposted_at", "withdrawn_at", "closed_at")


def awaiting_triage(r):
    return bool(r.get("received_at")) and not any(r.get(f) for f in DECISIONS)


def waiting_for_match(r):
    """Accepted, not withdrawn or closed, with no live match: a match that
    ended with ``rematch`` puts the parent back on the list."""
    if not r.get("accepted_at") or r.get("withdrawn_at") or r.get("closed_at"):
        return False
    for match in (r.get("matches") or {}).values():
        if not match.get("ended_at"):
            if match.get("confirmed_at"):
                return False      # matched now
        elif not match.get("rematch"):
            return False          # ended for good
    return True


def unacknowledged_concerns(r):
    return [c for c in (r.get("concerns") or {}).values()
            if c.get("raised_at") and not c.get("acknowledged_at")
            and not c.get("resolved_at")]


def is_live(r):
    """Whether the referral can count in the waiting / unacknowledged
    gauges: the service keeps this flag on the document so a scrape reads
    only live ones (an index on it)."""
    return awaiting_triage(r) or waiting_for_match(r) or bool(unacknowledged_concerns(r))


def last_activity(r):
    """The latest moment any fact on the referral happened or is dated: a
    report for a quarter reads only referrals active since it began, and
    the weekly gauges only those active this week."""
    moments = [r.get(f) for f in ("received_at",) + DECISIONS]
    for match in (r.get("matches") or {}).values():
        moments += [match.get("confirmed_at"), match.get("ended_at")]
    for journey in (r.get("journeys") or {}).values():
        moments += [journey.get("started_at"), journey.get("ended_at")]
    for contact in (r.get("contacts") or {}).values():
        moments += [contact.get("logged_at"), contact.get("date")]
    for goal in (r.get("goals") or {}).values():
        moments.append(goal.get("set_on"))
        moments += [v.get("on") for v in (goal.get("reviews") or {}).values()]
    for outcome in (r.get("outcomes") or {}).values():
        moments += [outcome.get("recorded_on"), outcome.get("at")]
    for concern in (r.get("concerns") or {}).values():
        moments += [concern.get(f) for f in ("raised_at", "acknowledged_at", "resolved_at")]
    moments = [as_datetime(m) for m in moments if m]
    return max(moments) if moments else None


def derived_fields(r):
    return {"live": is_live(r), "last_activity_at": last_activity(r)}


# -- business metrics (the ops dashboards) -----------------------------------

METRIC_NAMES = (
    "alongside_referrals_awaiting_triage",
    "alongside_referrals_awaiting_triage_oldest_seconds",
    "alongside_referrals_over_triage_target",
    "alongside_safeguarding_concerns_unacknowledged",
    "alongside_safeguarding_concern_oldest_unacknowledged_seconds",
    "alongside_parents_waiting_for_match",
    "alongside_matches_confirmed_this_week",
    "alongside_contacts_logged_this_week",
    "alongside_messages_failed_last_24h",
)


def week_start(now):
    """Monday 00:00 UTC of ``now``'s ISO week."""
    now = as_datetime(now)
    monday = now.date() - timedelta(days=now.weekday())
    return datetime.combine(monday, time(), tzinfo=timezone.utc)


def business_metrics(sites, referrals, messages, now):
    """{site: {metric name: value}} for every site named in ``sites`` or in
    the documents. ``referrals``: the live ones and those active this
    week; ``messages``: those failed in the last day (more are ignored)."""
    now = as_datetime(now)
    monday = week_start(now)
    day_ago = now - timedelta(hours=24)
    result = {}

    def site(site_id):
        return result.setdefault(site_id, {name: 0.0 for name in METRIC_NAMES})

    for site_id in sites:
        site(site_id)
    for r in referrals:
        row = site(r["site_id"])
        if awaiting_triage(r):
            row["alongside_referrals_awaiting_triage"] += 1
            age = (now - as_datetime(r["received_at"])).total_seconds()
            row["alongside_referrals_awaiting_triage_oldest_seconds"] = max(
                row["alongside_referrals_awaiting_triage_oldest_seconds"], age)
            due = as_datetime(r.get("triage_due_at"))
            if due is not None and due < now:
                row["alongside_referrals_over_triage_target"] += 1
        for concern in unacknowledged_concerns(r):
            row["alongside_safeguarding_concerns_unacknowledged"] += 1
            age = (now - as_datetime(concern["raised_at"])).total_seconds()
            row["alongside_safeguarding_concern_oldest_unacknowledged_seconds"] = max(
                row["alongside_safeguarding_concern_oldest_unacknowledged_seconds"], age)
        if waiting_for_match(r):
            row["alongside_parents_waiting_for_match"] += 1
        for match in (r.get("matches") or {}).values():
            confirmed = as_datetime(match.get("confirmed_at"))
            if confirmed and monday <= confirmed <= now:
                row["alongside_matches_confirmed_this_week"] += 1
        for contact in (r.get("contacts") or {}).values():
            logged = as_datetime(contact.get("logged_at"))
            if logged and monday <= logged <= now:
                row["alongside_contacts_logged_this_week"] += 1
    for m in messages:
        failed = as_datetime(m.get("failed_at"))
        if failed and day_ago <= failed <= now:
            site(m["site_id"])["alongside_messages_failed_last_24h"] += 1
    return result


# -- statistics ---------------------------------------------------------------

@dataclass(frozen=True)
class Measure:
    instrument: str
    score: str
    higher_is_better: bool
    meaningful_change: float
    why: str


# The change a measure must exceed to count a parent as improved: the
# published minimal important / reliable change where there is one.
MEASURES = (
    Measure("wemwbs", "total", True, 3.0,
            "3 points: the WEMWBS user guide's meaningful change"),
    Measure("swemwbs", "metric", True, 2.0,
            "2 metric points: within the 1-3 the SWEMWBS guidance gives as "
            "meaningful (we take its middle)"),
    Measure("hads", "anxiety", False, 1.5,
            "1.5 points: the HADS subscale minimal important difference "
            "(Puhan et al. 2008)"),
    Measure("hads", "depression", False, 1.5,
            "1.5 points: the HADS subscale minimal important difference "
            "(Puhan et al. 2008)"),
    Measure("epds", "total", False, 4.0,
            "4 points: the EPDS reliable change (Matthey 2004)"),
)

TEST_NAME = "paired t-test, two-sided (scipy.stats.ttest_rel)"
EFFECT_NAME = "Cohen's d for paired samples (d_z = mean change / SD of changes)"
CI_NAME = "95% confidence interval of the mean change (t distribution, n-1 df)"


def _round(value, places=3):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return round(float(value), places)


def paired_change(pairs, measure):
    """Baseline -> exit statistics of one measure over paired scores."""
    n = len(pairs)
    result = {
        "instrument": measure.instrument, "score": measure.score, "n_pairs": n,
        "direction": "higher is better" if measure.higher_is_better else "lower is better",
        "meaningful_change": measure.meaningful_change,
        "meaningful_change_source": measure.why,
        "baseline_mean": None, "exit_mean": None, "mean_change": None,
        "sd_change": None, "ci95": None, "test": TEST_NAME, "t": None, "p_value": None,
        "effect_size": {"name": EFFECT_NAME, "value": None},
        "improved": 0, "improved_share": None,
    }
    if n == 0:
        return result
    baseline = [b for b, _ in pairs]
    exit_ = [e for _, e in pairs]
    changes = [e - b for b, e in pairs]
    mean_change = statistics.fmean(changes)
    sign = 1 if measure.higher_is_better else -1
    # Scores are whole or tenths: a tolerance keeps 4.4 - 3.4 from counting
    # as more than 1.
    improved = sum(1 for c in changes if sign * c > measure.meaningful_change + 1e-9)
    result.update(baseline_mean=_round(statistics.fmean(baseline)),
                  exit_mean=_round(statistics.fmean(exit_)),
                  mean_change=_round(mean_change), improved=improved,
                  improved_share=_round(improved / n))
    if n < 2:
        return result
    sd = statistics.stdev(changes)
    result["sd_change"] = _round(sd)
    if sd == 0:
        # Every parent changed by the same amount: no spread to test against.
        result["ci95"] = [_round(mean_change), _round(mean_change)]
        return result
    test = scipy_stats.ttest_rel(exit_, baseline)
    half = scipy_stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    p_value = float(f"{test.pvalue:.4g}")   # four significant figures, however small
    result.update(t=_round(test.statistic), p_value=p_value,
                  ci95=[_round(mean_change - half), _round(mean_change + half)])
    result["effect_size"]["value"] = _round(mean_change / sd)
    return result


def outcome_pairs(referrals, quarter, measure):
    """(baseline, exit) per journey whose exit measure falls in the quarter:
    its first baseline and its last exit of that instrument."""
    by_journey = {}
    for r in referrals:
        for o in (r.get("outcomes") or {}).values():
            if o.get("instrument") != measure.instrument or measure.score not in (
                    o.get("scores") or {}):
                continue
            by_journey.setdefault(o.get("journey_id"), []).append(o)
    pairs = []
    for measures in by_journey.values():
        baselines = sorted((o for o in measures if o["time_point"] == "baseline"),
                           key=lambda o: (o["recorded_on"], str(o.get("at"))))
        exits = sorted((o for o in measures if o["time_point"] == "exit"
                        and quarter.holds(o["recorded_on"])),
                       key=lambda o: (o["recorded_on"], str(o.get("at"))))
        if baselines and exits:
            pairs.append((baselines[0]["scores"][measure.score],
                          exits[-1]["scores"][measure.score]))
    return pairs


# -- the quarterly report -------------------------------------------------------

def _summary(values, places=2):
    if not values:
        return {"n": 0, "median": None, "mean": None}
    return {"n": len(values), "median": _round(statistics.median(values), places),
            "mean": _round(statistics.fmean(values), places)}


def _present(volunteer, day):
    """On the register at the start of ``day``."""
    registered = as_date(volunteer.get("registered_on"))
    left = as_date(volunteer.get("left_on"))
    return registered is not None and registered < day and (left is None or left >= day)


def eligible_on(volunteer, day):
    """The last eligibility decision before ``day``."""
    decisions = sorted(
        (e for e in (volunteer.get("eligibility") or {}).values()
         if as_date(e["on"]) < day),
        key=lambda e: (e["on"], str(as_datetime(e.get("at")))))
    return bool(decisions) and decisions[-1]["eligible"]


DEFINITIONS = {
    "referrals": "referrals received in the quarter, by source; accepted, declined, "
                 "signposted and withdrawn: decisions dated in the quarter; "
                 "conversion = accepted / (accepted + declined + signposted)",
    "time_to_first_contact_days": "days from a referral's receipt to its first "
                                  "logged contact, for first contacts in the quarter",
    "families_matched": "referrals with a match confirmed in the quarter",
    "families_supported": "referrals with a contact logged in the quarter",
    "contacts": "contacts dated in the quarter, by mode; per family = over the "
                "families with a contact in the quarter",
    "weeks_of_support": "weeks from a journey's start to its end, for journeys "
                        "ended in the quarter",
    "volunteers": "pool = registered and not left at the quarter's end; eligible = "
                  "in the pool and eligible at its end; active = had a contact "
                  "in the quarter; hours = the durations of the volunteers' own "
                  "contacts in the quarter (not the coordinator's); "
                  "retention = of those on the register at the quarter's start, "
                  "the share not left by its end",
    "goals": "goals set in the quarter; achieved = first reviewed as achieved "
             "in the quarter",
    "outcomes": "per measure, journeys with an exit score in the quarter paired "
                "with their first baseline; change = exit - baseline; improved = "
                "changed in the good direction by more than the meaningful change",
}


def quarterly_report(site_id, quarter, referrals, volunteers):
    """Every figure of one site's quarter from its projections (referrals
    with no activity since the quarter began may be left out: they change
    no figure)."""
    q = quarter
    received = [r for r in referrals if q.holds(r.get("received_at"))]
    by_source = {source: 0 for source in REFERRAL_SOURCES}
    for r in received:
        source = r.get("source") or "other"
        by_source[source] = by_source.get(source, 0) + 1
    decided = {f: sum(1 for r in referrals if q.holds(r.get(f"{f}_at")))
               for f in ("accepted", "declined", "signposted", "withdrawn")}
    decisions = decided["accepted"] + decided["declined"] + decided["signposted"]

    first_contact_days, families_matched = [], 0
    contacts_by_mode = {mode: 0 for mode in CONTACT_MODES}
    contacts_per_family, minutes, active_volunteers = [], 0, set()
    weeks, goals_set, goals_achieved = [], 0, 0
    goals_by_category = {c: {"set": 0, "achieved": 0} for c in GOAL_CATEGORIES}
    for r in referrals:
        contacts = list((r.get("contacts") or {}).values())
        if contacts and r.get("received_at"):
            first = min(as_date(c["date"]) for c in contacts)
            if q.holds(first):
                first_contact_days.append(
                    (first - as_date(r["received_at"])).days)
        in_quarter = [c for c in contacts if q.holds(c["date"])]
        for c in in_quarter:
            contacts_by_mode[c["mode"]] = contacts_by_mode.get(c["mode"], 0) + 1
            if c.get("made_by", "volunteer") == "volunteer":
                minutes += int(c.get("minutes") or 0)
                active_volunteers.add(c.get("volunteer_id"))
        if in_quarter:
            contacts_per_family.append(len(in_quarter))
        if any(q.holds(m.get("confirmed_at")) for m in (r.get("matches") or {}).values()):
            families_matched += 1
        for j in (r.get("journeys") or {}).values():
            if q.holds(j.get("ended_at")) and j.get("started_at"):
                span = as_datetime(j["ended_at"]) - as_datetime(j["started_at"])
                weeks.append(span.total_seconds() / (7 * 86400))
        for g in (r.get("goals") or {}).values():
            category = goals_by_category.setdefault(
                g.get("category") or "other", {"set": 0, "achieved": 0})
            if q.holds(g.get("set_on")):
                goals_set += 1
                category["set"] += 1
            achieved = sorted(v["on"] for v in (g.get("reviews") or {}).values()
                              if v.get("status") == "achieved")
            if achieved and q.holds(achieved[0]):
                goals_achieved += 1
                category["achieved"] += 1

    at_start = [v for v in volunteers if _present(v, q.start)]
    retained = [v for v in at_start if _present(v, q.end)]
    pool = [v for v in volunteers if _present(v, q.end)]
    total_contacts = sum(contacts_by_mode.values())
    return {
        "site_id": site_id, "quarter": q.label,
        "period": {"start": str(q.start), "end": str(q.last_day)},
        "referrals": {
            "received": len(received), "by_source": by_source, **decided,
            "conversion_rate": _round(decided["accepted"] / decisions) if decisions else None,
        },
        "time_to_first_contact_days": _summary(first_contact_days),
        "families_matched": families_matched,
        "families_supported": len(contacts_per_family),
        "contacts": {
            "total": total_contacts, "by_mode": contacts_by_mode,
            "per_family": _summary(contacts_per_family),
        },
        "weeks_of_support": _summary(weeks, 1),
        "volunteers": {
            "pool_at_quarter_end": len(pool),
            "eligible_at_quarter_end": sum(1 for v in pool if eligible_on(v, q.end)),
            "active_in_quarter": len(active_volunteers - {None}),
            "hours": _round(minutes / 60, 1),
            "retention": {"at_quarter_start": len(at_start), "retained": len(retained),
                          "rate": _round(len(retained) / len(at_start)) if at_start else None},
        },
        "goals": {"set": goals_set, "achieved": goals_achieved,
                  "by_category": goals_by_category},
        "outcomes": [paired_change(outcome_pairs(referrals, q, m), m) for m in MEASURES],
        "definitions": DEFINITIONS,
    }


# -- small numbers: suppression ---------------------------------------------------

THRESHOLD = 5
FLAG = "<5"

SUPPRESSION_NOTE = (
    "Counts under 5 (including 0) are shown as null, flagged '<5'. So that no "
    "hidden count can be worked out from a total, no line that adds up (a "
    "site's categories with the site's total; a category's sites with the "
    "national total; the sites' totals with the grand total) is left with "
    "exactly one hidden value: if it would be, its smallest visible count is "
    "hidden too (complementary suppression), repeated until none is. "
    "Complementary cells carry the same '<5' flag, so a reader cannot tell "
    "which hidden cells are the small ones and bound them from the total. "
    "Each count appears in one table only (a site's referrals received are "
    "the row total of referrals by source), so tables cannot be played off "
    "against each other. Means, medians, rates and outcome statistics over "
    "fewer than 5 people are hidden. This is the usual complementary rule, "
    "not a full disclosure audit by linear programming.")


def suppress_table(rows, columns, additive):
    """Primary and secondary suppression of a sites x categories table.

    ``rows``: {site: {column: count}}. ``additive``: the columns partition
    the row (so a row total is shown). Returns {"rows": {site: {column:
    value|None}}, "flags": {site: {column: flag}}, "totals": {...},
    "row_totals": {...}}, where the national totals (per column and the
    grand total) are cells too."""
    TOTAL = "total"
    cells = {site: dict(values) for site, values in rows.items()}
    if additive:
        for site, values in cells.items():
            values[TOTAL] = sum(values.get(c, 0) for c in columns)
    all_columns = list(columns) + ([TOTAL] if additive else [])
    totals = {c: sum(cells[s].get(c, 0) for s in cells) for c in all_columns}
    grid = dict(cells)
    grid[TOTAL] = totals
    hidden = {(s, c) for s in grid for c in all_columns if grid[s].get(c, 0) < THRESHOLD}
    site_keys = [s for s in grid if s != TOTAL]

    lines = []   # (cells, their total)
    for s in grid:                                   # each row adds up to its total
        if additive:
            lines.append(([(s, c) for c in columns], (s, TOTAL)))
    for c in all_columns:                            # each column to the national one
        lines.append(([(s, c) for s in site_keys], (TOTAL, c)))

    changed = True
    while changed:
        changed = False
        for parts, total in lines:
            members = parts + [total]
            hidden_here = [m for m in members if m in hidden]
            if len(hidden_here) != 1:
                continue
            visible = [m for m in parts if m not in hidden]
            if visible:
                pick = min(visible, key=lambda m: (grid[m[0]].get(m[1], 0), m))
            else:
                pick = total
            if pick not in hidden:   # a line of no cells has nothing to give away
                hidden.add(pick)
                changed = True

    def shown(s, c):
        return None if (s, c) in hidden else grid[s].get(c, 0)

    def flag(s, c):
        return FLAG if (s, c) in hidden else None

    out_rows, flags = {}, {}
    for s in site_keys:
        out_rows[s] = {c: shown(s, c) for c in columns}
        flags[s] = {c: flag(s, c) for c in all_columns if flag(s, c)}
    result = {"rows": out_rows, "flags": flags,
              "totals": {c: shown(TOTAL, c) for c in columns},
              "total_flags": {c: flag(TOTAL, c) for c in all_columns if flag(TOTAL, c)}}
    if additive:
        result["row_totals"] = {s: shown(s, TOTAL) for s in site_keys}
        result["grand_total"] = shown(TOTAL, TOTAL)
    return result


# (table name, columns, additive, how to read the columns off a site's report)
def _pathway(report):
    r = report["referrals"]
    return {"accepted": r["accepted"],
            "declined": r["declined"], "signposted": r["signposted"],
            "withdrawn": r["withdrawn"], "families_matched": report["families_matched"],
            "families_supported": report["families_supported"]}


def _volunteer_counts(report):
    v = report["volunteers"]
    return {"pool_at_quarter_end": v["pool_at_quarter_end"],
            "eligible_at_quarter_end": v["eligible_at_quarter_end"],
            "active_in_quarter": v["active_in_quarter"]}


def _goal_counts(report):
    return {"set": report["goals"]["set"], "achieved": report["goals"]["achieved"]}


NATIONAL_TABLES = (
    ("referrals_by_source", tuple(REFERRAL_SOURCES), True,
     lambda report: report["referrals"]["by_source"]),
    ("pathway", ("accepted", "declined", "signposted", "withdrawn",
                 "families_matched", "families_supported"), False, _pathway),
    ("contacts_by_mode", tuple(CONTACT_MODES), True,
     lambda report: report["contacts"]["by_mode"]),
    ("volunteers", ("pool_at_quarter_end", "eligible_at_quarter_end",
                    "active_in_quarter"), False, _volunteer_counts),
    ("goals", ("set", "achieved"), False, _goal_counts),
)


def _hide_small_summary(summary):
    if summary.get("n", 0) < THRESHOLD:
        return {"n": None, "median": None, "mean": None, "flag": FLAG}
    return summary


def _hide_small_outcome(outcome):
    if outcome["n_pairs"] >= THRESHOLD:
        return outcome
    hidden = dict(outcome, n_pairs=None, baseline_mean=None, exit_mean=None,
                  mean_change=None, sd_change=None, ci95=None, t=None, p_value=None,
                  improved=None, improved_share=None, flag=FLAG)
    hidden["effect_size"] = dict(outcome["effect_size"], value=None)
    return hidden


def suppressed_report(report):
    """A site's quarter as a national role sees it: the same shape, small
    counts hidden (primary and secondary, as in the national view)."""
    site = report["site_id"]
    out = dict(report)
    flags = {}
    for name, columns, additive, read in NATIONAL_TABLES:
        table = suppress_table({site: read(report)}, columns, additive)
        for column, flag in table["flags"][site].items():
            flags[f"{name}.{column}"] = flag
        values = table["rows"][site]
        if name == "referrals_by_source":
            out["referrals"] = dict(report["referrals"], by_source=values,
                                    received=table["row_totals"][site])
        elif name == "contacts_by_mode":
            out["contacts"] = dict(report["contacts"], by_mode=values,
                                   total=table["row_totals"][site])
        elif name == "pathway":
            out["referrals"] = dict(out.get("referrals", report["referrals"]),
                                    **{k: values[k] for k in ("accepted", "declined",
                                                              "signposted", "withdrawn")})
            out["families_matched"] = values["families_matched"]
            out["families_supported"] = values["families_supported"]
        elif name == "volunteers":
            out["volunteers"] = dict(report["volunteers"], **values)
        elif name == "goals":
            out["goals"] = dict(report["goals"], **values, by_category=None)
    v = out["volunteers"]
    retention = v["retention"]
    if retention["at_quarter_start"] < THRESHOLD:
        v["retention"] = {"at_quarter_start": None, "retained": None, "rate": None,
                          "flag": FLAG}
    if report["contacts"]["total"] < THRESHOLD:
        v["hours"] = None
    out["referrals"]["conversion_rate"] = (
        report["referrals"]["conversion_rate"]
        if min(report["referrals"]["accepted"], report["referrals"]["declined"]
               + report["referrals"]["signposted"]) >= THRESHOLD else None)
    out["time_to_first_contact_days"] = _hide_small_summary(
        report["time_to_first_contact_days"])
    out["weeks_of_support"] = _hide_small_summary(report["weeks_of_support"])
    out["contacts"]["per_family"] = _hide_small_summary(report["contacts"]["per_family"])
    out["outcomes"] = [_hide_small_outcome(o) for o in report["outcomes"]]
    out["suppressed"] = flags
    out["suppression"] = SUPPRESSION_NOTE
    return out


def national_report(quarter, site_reports, pooled_outcomes):
    """Aggregates across sites: per-site rows and national totals with small
    counts suppressed; outcomes pooled over every site's pairs."""
    tables = {}
    for name, columns, additive, read in NATIONAL_TABLES:
        rows = {report["site_id"]: read(report) for report in site_reports}
        tables[name] = dict(suppress_table(rows, columns, additive),
                            columns=list(columns))
    return {
        "quarter": quarter.label,
        "period": {"start": str(quarter.start), "end": str(quarter.last_day)},
        "sites": sorted(report["site_id"] for report in site_reports),
        "tables": tables,
        "outcomes": [_hide_small_outcome(o) for o in pooled_outcomes],
        "suppression": SUPPRESSION_NOTE,
        "definitions": DEFINITIONS,
    }


def pooled_outcomes(referrals_by_site, quarter):
    """Outcome statistics over every site's pairs together."""
    everyone = [r for referrals in referrals_by_site for r in referrals]
    return [paired_change(outcome_pairs(everyone, quarter, m), m) for m in MEASURES]
