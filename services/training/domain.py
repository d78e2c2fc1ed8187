"""Training rules, pure: no nameko, no pymongo, no clock read here.

A volunteer's record is one document: pathway stage and role (with their
history), completions, DBS checks, supervision sessions and the eligibility
last announced. Every change goes through a function here that returns the
new record and the events it causes; :func:`reconcile` then re-evaluates
eligibility (announcing a flip) and the DBS renewal notice, after any change
and by time passing (the daily check) alike.

Dates and periods: a thing done on day D with a period P is current on
every day before D + P and lapses on D + P itself (months add calendar
months; the 31st of January + 1 month is the 28th/29th of February). So an
enhanced DBS issued 2023-01-15 with a 36-month renewal is current to
2026-01-14 and expired on 2026-01-15; a supervision on 2026-01-01 with 8
weeks is current to 2026-02-25 and overdue on 2026-02-26.
"""
import calendar
import copy
import re
from datetime import date, timedelta

from shared.errors import Conflict, ValidationFailed
from shared.events import new_event
from shared.events.types.training import (COURSE_KINDS, DBS_LEVELS,  # noqa: F401
                                          ELIGIBILITY_REASONS, VOLUNTEER_ROLES,
                                          VOLUNTEER_STAGES)

APPLICANT, IN_TRAINING, ACTIVE, PAUSED, LEFT = VOLUNTEER_STAGES
ENHANCED = "enhanced"
CORE, REFRESHER = "core", "safeguarding_refresher"

# stage -> the stages it may move to; "left" is final.
STAGE_MOVES = {
    APPLICANT: {IN_TRAINING, LEFT},
    IN_TRAINING: {ACTIVE, PAUSED, LEFT},
    ACTIVE: {PAUSED, LEFT},
    PAUSED: {ACTIVE, IN_TRAINING, LEFT},
    LEFT: set(),
}

POLICY_FIELDS = ("dbs_renewal_months", "safeguarding_refresher_months",
                 "supervision_weeks", "dbs_expiring_notice_days")

UK_POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?)([0-9][A-Z]{2})$")


def normalise_postcode(text):
    """'cm1 2ab' -> 'CM1 2AB'; None if it is not a UK postcode."""
    match = UK_POSTCODE.match(re.sub(r"\s+", "", text or "").upper())
    if not match:
        return None
    return f"{match.group(1)} {match.group(2)}"


def add_months(day, months):
    years, month_index = divmod(day.month - 1 + months, 12)
    year, month = day.year + years, month_index + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def as_date(value):
    return value if isinstance(value, date) else date.fromisoformat(value)


def effective_policy(defaults, override=None):
    """The site's policy: the configured defaults, overridden field by field."""
    policy = {name: int(defaults[name]) for name in POLICY_FIELDS}
    for name in POLICY_FIELDS:
        if override and override.get(name) is not None:
            policy[name] = int(override[name])
    return policy


# -- eligibility ---------------------------------------------------------------

def _happened(entries, field, today, **match):
    """Entries whose date ``field`` is on or before today, matching ``match``."""
    return [e for e in entries
            if as_date(e[field]) <= today
            and all(e.get(k) in v for k, v in match.items())]


def dbs_status(record, policy, today):
    """(current check or None, the day it stops being current or None, reason).

    An enhanced check is current while on the update service, or before its
    issue date + the site's renewal period."""
    checks = _happened(record.get("dbs_checks", []), "issued_on", today,
                       level={ENHANCED})
    if not checks:
        return None, None, "dbs_enhanced_missing"
    on_service = [c for c in checks if c.get("update_service")]
    if on_service:
        return max(on_service, key=lambda c: c["issued_on"]), None, None
    latest = max(checks, key=lambda c: c["issued_on"])
    expires_on = add_months(as_date(latest["issued_on"]), policy["dbs_renewal_months"])
    if today < expires_on:
        return latest, expires_on, None
    return None, expires_on, "dbs_enhanced_expired"


def evaluate(record, policy, today):
    """Whether the volunteer may be matched on ``today``, and why (not).

    Returns ``{"eligible", "reasons", "rules"}``: ``reasons`` are the codes
    of the failed rules (empty when eligible); ``rules`` names each rule,
    whether it passed, and until when (the last day it holds) if it lapses.
    """
    rules = []

    def rule(name, reason, valid_until=None):
        rules.append({"rule": name, "passed": reason is None, "reason": reason,
                      "valid_until": valid_until.isoformat() if valid_until else None})

    completions = record.get("completions", [])
    core = _happened(completions, "completed_on", today, kind={CORE})
    rule("core_course_completed", None if core else "core_course_missing")

    check, expires_on, reason = dbs_status(record, policy, today)
    rule("enhanced_dbs_current", reason,
         expires_on - timedelta(days=1) if check and expires_on else None)

    # The core course includes safeguarding: it counts as the first one.
    safeguarding = _happened(completions, "completed_on", today,
                             kind={CORE, REFRESHER})
    if safeguarding:
        last = max(as_date(c["completed_on"]) for c in safeguarding)
        due = add_months(last, policy["safeguarding_refresher_months"])
        rule("safeguarding_training_current",
             None if today < due else "safeguarding_training_overdue",
             due - timedelta(days=1) if today < due else None)
    else:
        rule("safeguarding_training_current", "safeguarding_training_missing")

    sessions = _happened(record.get("supervisions", []), "supervised_on", today)
    if sessions:
        last = max(as_date(s["supervised_on"]) for s in sessions)
        due = last + timedelta(weeks=policy["supervision_weeks"])
        rule("supervision_recent", None if today < due else "supervision_overdue",
             due - timedelta(days=1) if today < due else None)
    else:
        rule("supervision_recent", "supervision_missing")

    rule("stage_active", None if record["stage"] == ACTIVE else "stage_not_active")

    reasons = [r["reason"] for r in rules if r["reason"]]
    return {"eligible": not reasons, "reasons": reasons, "rules": rules}


def dbs_expiring_notice(record, policy, today):
    """(check, expires_on) if the current enhanced check lapses within the
    notice window and that has not been announced yet; else None."""
    check, expires_on, _ = dbs_status(record, policy, today)
    if check is None or expires_on is None:
        return None
    window_opens = expires_on - timedelta(days=policy["dbs_expiring_notice_days"])
    if not window_opens <= today < expires_on:
        return None
    if expires_on.isoformat() in check.get("expiring_notices", []):
        return None
    return check, expires_on


def reconcile(record, policy, today, now):
    """Bring the stored eligibility and DBS notices up to date for ``today``.

    Returns ``(record, events, changed)``: an event when eligibility flips
    and a ``dbs.expiring`` once per certificate per notice window. Running
    it again the same day changes nothing.
    """
    record = copy.deepcopy(record)
    events, changed = [], False
    site_id, volunteer_id = record["site_id"], record["_id"]
    result = evaluate(record, policy, today)
    stored = record.get("eligibility") or {"eligible": False, "reasons": []}
    if stored.get("eligible") != result["eligible"]:
        events.append(new_event("volunteer.eligibility_changed", {
            "volunteer_id": volunteer_id, "eligible": result["eligible"],
            "reasons": result["reasons"], "evaluated_on": today.isoformat()},
            site_id=site_id, subject=volunteer_id, now=now))
        record["eligibility"] = {"eligible": result["eligible"],
                                 "reasons": result["reasons"],
                                 "since": today.isoformat()}
        changed = True
    elif stored.get("reasons") != result["reasons"]:
        record["eligibility"] = dict(stored, reasons=result["reasons"])
        changed = True
    notice = dbs_expiring_notice(record, policy, today)
    if notice:
        check, expires_on = notice
        check.setdefault("expiring_notices", []).append(expires_on.isoformat())
        events.append(new_event("dbs.expiring", {
            "volunteer_id": volunteer_id, "dbs_check_id": check["id"],
            "expires_on": expires_on.isoformat()},
            site_id=site_id, subject=volunteer_id, now=now))
        changed = True
    return record, events, changed


# -- changes to a record ---------------------------------------------------------

def _not_future(field, day, today):
    if day > today:
        raise ValidationFailed("A date is in the future.",
                               {field: ["Must not be in the future."]})


def _not_left(record):
    if record["stage"] == LEFT:
        raise Conflict("This volunteer has left: their record is closed.")


def register_volunteer(site_id, volunteer_id, form, personal, now):
    """A new applicant. ``personal`` holds the already encrypted fields."""
    record = {
        "_id": volunteer_id,
        "site_id": site_id,
        "personal": personal,
        "area": form["postcode"].split(" ")[0],
        "stage": APPLICANT,
        "role": form["role"],
        "preferred_language": form.get("preferred_language") or "en",
        "history": [{"change": "registered", "from": None, "to": APPLICANT,
                     "at": now}],
        "completions": [], "dbs_checks": [], "supervisions": [],
        "eligibility": {"eligible": False, "reasons": [], "since": None},
        "registered_at": now,
        "version": 0,
    }
    event = new_event("volunteer.registered", {
        "volunteer_id": volunteer_id, "role": form["role"], "stage": APPLICANT,
        "area": record["area"], "registered_at": now.isoformat()},
        site_id=site_id, subject=volunteer_id, now=now)
    return record, [event]


def change_stage(record, stage, actor_id, now):
    current = record["stage"]
    if stage not in STAGE_MOVES[current]:
        allowed = ", ".join(sorted(STAGE_MOVES[current])) or "none: the record is closed"
        raise Conflict(f"A volunteer cannot move from {current} to {stage} "
                       f"(from {current}: {allowed}).")
    record = copy.deepcopy(record)
    record["stage"] = stage
    record["history"].append({"change": "stage", "from": current, "to": stage,
                              "at": now, "by": actor_id})
    events = []
    if stage == LEFT:
        events.append(new_event("volunteer.left", {
            "volunteer_id": record["_id"], "previous_stage": current,
            "left_on": now.date().isoformat()},
            site_id=record["site_id"], subject=record["_id"], now=now))
    return record, events


def change_role(record, role, actor_id, now):
    _not_left(record)
    if role == record["role"]:
        raise Conflict(f"The volunteer's role is {role} already.")
    record = copy.deepcopy(record)
    record["history"].append({"change": "role", "from": record["role"], "to": role,
                              "at": now, "by": actor_id})
    record["role"] = role
    return record, []


def record_completion(record, completion_id, form, course, today, now):
    """``course`` is the site's course named by ``form['course_id']`` (if any)."""
    _not_left(record)
    _not_future("completed_on", form["completed_on"], today)
    kind = form.get("kind")
    if form.get("course_id"):
        if course is None:
            raise ValidationFailed("No such course.", {
                "course_id": [f"no course {form['course_id']} at this site"]})
        if kind and kind != course["kind"]:
            raise ValidationFailed("The kind does not match the course.", {
                "kind": [f"the course is a {course['kind']} course"]})
        kind = course["kind"]
    record = copy.deepcopy(record)
    record["completions"].append({
        "id": completion_id, "course_id": form.get("course_id"), "kind": kind,
        "completed_on": form["completed_on"].isoformat(), "recorded_at": now})
    event = new_event("training.course_completed", {
        "volunteer_id": record["_id"], "completion_id": completion_id,
        "course_id": form.get("course_id"), "kind": kind,
        "completed_on": form["completed_on"].isoformat()},
        site_id=record["site_id"], subject=record["_id"], now=now)
    return record, [event]


def record_dbs_check(record, check_id, form, certificate_number, today, now):
    """``certificate_number`` arrives encrypted."""
    _not_left(record)
    _not_future("issued_on", form["issued_on"], today)
    record = copy.deepcopy(record)
    record["dbs_checks"].append({
        "id": check_id, "level": form["level"],
        "issued_on": form["issued_on"].isoformat(),
        "update_service": form["update_service"],
        "certificate_number": certificate_number,
        "expiring_notices": [], "recorded_at": now})
    event = new_event("dbs.recorded", {
        "volunteer_id": record["_id"], "dbs_check_id": check_id,
        "level": form["level"], "issued_on": form["issued_on"].isoformat(),
        "update_service": form["update_service"]},
        site_id=record["site_id"], subject=record["_id"], now=now)
    return record, [event]


def record_supervision(record, supervision_id, form, notes, today, now):
    """``notes`` arrive encrypted (or None); they never go into the event."""
    _not_left(record)
    _not_future("supervised_on", form["supervised_on"], today)
    record = copy.deepcopy(record)
    record["supervisions"].append({
        "id": supervision_id, "supervised_on": form["supervised_on"].isoformat(),
        "supervisor_id": form["supervisor_id"], "notes": notes,
        "recorded_at": now})
    event = new_event("supervision.recorded", {
        "volunteer_id": record["_id"], "supervision_id": supervision_id,
        "supervisor_id": form["supervisor_id"],
        "supervised_on": form["supervised_on"].isoformat()},
        site_id=record["site_id"], subject=record["_id"], now=now)
    return record, [event]


# -- courses, cohorts and attendance ------------------------------------------------
#
# A course has modules; a cohort runs a course from a start date with a
# trainer and a number of places; volunteers enrol in it, and each session
# records who was present for one module. A volunteer present at every
# module of the course (at any of its sessions) has completed it, on the day
# of the last module they needed: the completion is recorded on their record
# like one entered by hand (with the cohort named), once per cohort.

TRAINER_ROLES = {"trainer", "coordinator"}
MAX_PLACES = 200


def new_course(site_id, course_id, form, now):
    """A course; its modules get ids (m1, m2, ...) in their order."""
    modules = [dict(module, id=f"m{index}")
               for index, module in enumerate(form["modules"], start=1)]
    return {"_id": course_id, "site_id": site_id, "name": form["name"],
            "kind": form["kind"], "modules": modules, "created_at": now}


def module_ids(course):
    """The course's module ids (courses made before modules had ids: by order)."""
    return [module.get("id") or f"m{index}"
            for index, module in enumerate(course["modules"], start=1)]


def new_cohort(course, cohort_id, form, trainer, now):
    """``trainer``: the site's volunteer record named by ``trainer_id``, or None."""
    if trainer is None:
        raise ValidationFailed("No such trainer.", {
            "trainer_id": [f"no volunteer {form['trainer_id']} at this site"]})
    if trainer["stage"] == LEFT or trainer["role"] not in TRAINER_ROLES:
        raise ValidationFailed("The trainer cannot run a cohort.", {
            "trainer_id": [f"must be a current {' or '.join(sorted(TRAINER_ROLES))}"]})
    return {"_id": cohort_id, "site_id": course["site_id"], "course_id": course["_id"],
            "name": form.get("name") or f"{course['name']} from {form['start_date']}",
            "start_date": form["start_date"].isoformat(),
            "trainer_id": form["trainer_id"], "places": form["places"],
            "enrolled": [], "sessions": [], "completed": {},
            "created_at": now, "version": 0}


def enrol(cohort, volunteer, now):
    """Enrol a volunteer (409 if full, enrolled already, or left)."""
    if volunteer["_id"] in cohort["enrolled"]:
        raise Conflict("The volunteer is enrolled in this cohort already.")
    if volunteer["stage"] == LEFT:
        raise Conflict("This volunteer has left: their record is closed.")
    if len(cohort["enrolled"]) >= cohort["places"]:
        raise Conflict(f"The cohort is full ({cohort['places']} places).")
    cohort = copy.deepcopy(cohort)
    cohort["enrolled"].append(volunteer["_id"])
    cohort.setdefault("enrolments", []).append({"volunteer_id": volunteer["_id"],
                                                "at": now})
    return cohort


def record_session(cohort, course, session_id, form, today, now):
    """One session of one module and who was present: the new cohort, and
    ``[(volunteer_id, completed_on)]`` of those who completed the course by it."""
    errors = {}
    if form["module_id"] not in module_ids(course):
        errors["module_id"] = [f"not a module of the course ({', '.join(module_ids(course))})"]
    day = form["session_date"]
    if day > today:
        errors["session_date"] = ["Must not be in the future."]
    elif day < as_date(cohort["start_date"]):
        errors["session_date"] = [f"Must not be before the cohort starts "
                                  f"({cohort['start_date']})."]
    strangers = sorted(set(form["present"]) - set(cohort["enrolled"]))
    if strangers:
        errors["present"] = [f"not enrolled in the cohort: {', '.join(strangers)}"]
    if len(set(form["present"])) != len(form["present"]):
        errors.setdefault("present", []).append("Each volunteer once.")
    if errors:
        raise ValidationFailed("The request has invalid fields.", errors)
    cohort = copy.deepcopy(cohort)
    cohort["sessions"].append({"id": session_id, "module_id": form["module_id"],
                               "session_date": day.isoformat(),
                               "present": list(form["present"]), "recorded_at": now})
    return cohort, completions_due(cohort, course)


def progress(cohort, course, volunteer_id):
    """Which modules a volunteer attended (first date each), and which are left."""
    attended = {}
    for session in cohort["sessions"]:
        if volunteer_id in session["present"]:
            module = session["module_id"]
            attended[module] = min(attended.get(module, session["session_date"]),
                                   session["session_date"])
    missing = [m for m in module_ids(course) if m not in attended]
    return attended, missing


def completions_due(cohort, course):
    """Enrolled volunteers who attended every module and whose completion is
    not recorded yet, with the day they completed (their last module's)."""
    due = []
    for volunteer_id in cohort["enrolled"]:
        if volunteer_id in cohort.get("completed", {}):
            continue
        attended, missing = progress(cohort, course, volunteer_id)
        if attended and not missing:
            due.append((volunteer_id, max(attended.values())))
    return due


def cohort_view(cohort, course):
    rows = []
    for volunteer_id in cohort["enrolled"]:
        attended, missing = progress(cohort, course, volunteer_id)
        rows.append({"volunteer_id": volunteer_id, "modules_attended": sorted(attended),
                     "modules_missing": missing,
                     "completed_on": cohort.get("completed", {}).get(volunteer_id)})
    return dict(cohort, course_name=course["name"], kind=course["kind"],
                places_left=max(cohort["places"] - len(cohort["enrolled"]), 0),
                progress=rows)


def complete_from_cohort(record, completion_id, course, cohort_id, completed_on, today, now):
    """The completion a cohort earned, on the volunteer's record; nothing if
    this cohort's completion is there already."""
    if any(c.get("cohort_id") == cohort_id for c in record.get("completions", [])):
        return record, []
    record, events = record_completion(
        record, completion_id, {"course_id": course["_id"], "kind": course["kind"],
                                "completed_on": as_date(completed_on)}, course, today, now)
    record["completions"][-1]["cohort_id"] = cohort_id
    return record, events
