"""The journeys service's rules, pure: no nameko, no pymongo, no clock read
(``now`` and ``today`` come in as arguments).

A journey opens on a confirmed match and ends with a reason. Contacts,
goals (with reviews) and outcome measures belong to one journey; each is
dated, and a date must fall within the journey (not before it started,
not after it ended, not in the future). Volunteer hours are the minutes of
the contacts the volunteer made.
"""
from datetime import date, datetime

from services.journeys import instruments
from shared.errors import Conflict, ValidationFailed
from shared.events import new_event
from shared.events.types.matching import MATCH_REMATCH_REASONS

OPEN, ENDED = "open", "ended"
VOLUNTEER, COORDINATOR = "volunteer", "coordinator"
CONTACT_MADE_BY = (VOLUNTEER, COORDINATOR)
# Time points recorded once per journey and instrument (reports pair them).
ONCE_PER_JOURNEY = ("baseline", "exit")

# match.ended's reason -> journey.ended's reason (rematch reasons: rematched).
MATCH_END_TO_JOURNEY_END = {
    "completed": "completed", "parent_ended": "parent_ended",
    "parent_moved": "moved_away", "safeguarding": "safeguarding", "other": "other",
}


def _iso_day(value):
    return value.isoformat() if isinstance(value, date) else value


def _day(value):
    """A date from a date, a datetime or an ISO string."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return datetime.fromisoformat(value).date() if "T" in value else date.fromisoformat(value)


def _journey_facts(journey):
    return {"journey_id": journey["_id"], "referral_id": journey["referral_id"],
            "volunteer_id": journey["volunteer_id"]}


def _event(name, journey, data, now):
    return new_event(name, dict(_journey_facts(journey), **data),
                     site_id=journey["site_id"], subject=journey["_id"], now=now)


# -- opening and ending ---------------------------------------------------------


def open_journey(site_id, journey_id, match, now):
    """A journey (and its ``journey.started``) for a ``match.confirmed``'s data;
    it starts when the match was confirmed."""
    started_at = datetime.fromisoformat(match["confirmed_at"])
    journey = {"_id": journey_id, "site_id": site_id, "match_id": match["match_id"],
               "referral_id": match["referral_id"], "volunteer_id": match["volunteer_id"],
               "volunteer_user_id": match.get("volunteer_user_id"), "status": OPEN,
               "started_at": started_at, "opened_at": now, "ended_at": None,
               "end_reason": None, "ended_by": None}
    event = _event("journey.started", journey, {
        "match_id": match["match_id"], "started_at": started_at.isoformat()}, now)
    return journey, event


def end_reason_for_match(reason, rematch):
    """Why a journey ends when its match ends (or is declined: rematched)."""
    if rematch or reason in MATCH_REMATCH_REASONS:
        return "rematched"
    return MATCH_END_TO_JOURNEY_END.get(reason, "other")


def end_journey(journey, reason, ended_by, now):
    """(changes, journey.ended) for an open journey; Conflict if it has ended."""
    if journey["status"] != OPEN:
        raise Conflict(f"Journey {journey['_id']} has ended already.",
                       {"status": [journey["status"]]})
    changes = {"status": ENDED, "ended_at": now, "end_reason": reason,
               "ended_by": ended_by}
    event = _event("journey.ended", journey, {"reason": reason,
                                              "ended_at": now.isoformat()}, now)
    return changes, event


# -- dates within a journey ------------------------------------------------------


def date_errors(journey, field, day, today):
    """Field errors for a date that falls outside the journey (or in the future)."""
    day = _day(day)
    if day > today:
        return {field: ["Cannot be in the future."]}
    started = _day(journey["started_at"])
    if day < started:
        return {field: [f"Before the journey started ({started.isoformat()})."]}
    if journey.get("ended_at") is not None and day > _day(journey["ended_at"]):
        return {field: [f"After the journey ended ({_day(journey['ended_at']).isoformat()})."]}
    return {}


def _check_date(journey, field, day, today):
    errors = date_errors(journey, field, day, today)
    if errors:
        raise ValidationFailed("The request has invalid fields.", errors)


# -- contacts -------------------------------------------------------------------


def new_contact(journey, form, contact_id, logged_by, logged_by_role, notes_token,
                today, now):
    """A contact (notes already encrypted) and its ``contact.logged``.

    ``made_by``: who had the contact; a volunteer logs their own contacts
    only, a coordinator logs theirs or, on the volunteer's behalf (the
    default), the volunteer's. Volunteer hours count the volunteer's.
    """
    made_by = form.get("made_by")
    if logged_by_role == VOLUNTEER:
        if made_by not in (None, VOLUNTEER):
            raise ValidationFailed("The request has invalid fields.", {
                "made_by": ["A volunteer logs their own contacts."]})
        made_by = VOLUNTEER
    made_by = made_by or VOLUNTEER
    _check_date(journey, "date", form["date"], today)
    day = _iso_day(form["date"])
    contact = {"_id": contact_id, "site_id": journey["site_id"],
               "journey_id": journey["_id"], "volunteer_id": journey["volunteer_id"],
               "date": day, "mode": form["mode"],
               "duration_minutes": form["duration_minutes"], "made_by": made_by,
               "volunteer_minutes": form["duration_minutes"] if made_by == VOLUNTEER else 0,
               "notes": notes_token, "logged_by": logged_by,
               "logged_by_role": logged_by_role, "logged_at": now}
    event = _event("contact.logged", journey, {
        "contact_id": contact_id, "date": day, "mode": form["mode"],
        "duration_minutes": form["duration_minutes"], "logged_by_role": logged_by_role,
        "made_by": made_by}, now)
    return contact, event


def contact_totals(contacts):
    """Totals of a journey's contacts: counts, minutes, volunteer hours, by
    mode, and the first and last contact dates."""
    by_mode = {}
    for contact in contacts:
        mode = by_mode.setdefault(contact["mode"], {"contacts": 0, "minutes": 0})
        mode["contacts"] += 1
        mode["minutes"] += contact["duration_minutes"]
    dates = sorted(contact["date"] for contact in contacts)
    totals = summary_totals(len(contacts),
                            sum(c["duration_minutes"] for c in contacts),
                            sum(c.get("volunteer_minutes", 0) for c in contacts))
    totals.update(by_mode=by_mode, first_contact_on=dates[0] if dates else None,
                  last_contact_on=dates[-1] if dates else None)
    return totals


def check_period(query):
    """A period's ends in order (either may be open)."""
    if query.get("from") and query.get("to") and query["from"] > query["to"]:
        raise ValidationFailed("The request has invalid fields.", {
            "to": ["Cannot be before 'from'."]})


def volunteer_hours(rows):
    """Per volunteer, from ``(volunteer_id, contacts, minutes, volunteer
    minutes)`` rows: their contacts and hours, by volunteer id."""
    return [dict(summary_totals(contacts, minutes, volunteer_minutes),
                 volunteer_id=volunteer_id)
            for volunteer_id, contacts, minutes, volunteer_minutes in sorted(rows)]


def summary_totals(contacts, minutes, volunteer_minutes):
    return {"contacts": contacts, "minutes": minutes,
            "hours": round(minutes / 60, 2),
            "volunteer_minutes": volunteer_minutes,
            "volunteer_hours": round(volunteer_minutes / 60, 2)}


# -- goals ----------------------------------------------------------------------


def new_goal(journey, form, goal_id, set_by, words_token, today, now):
    if journey["status"] != OPEN:
        raise Conflict(f"Journey {journey['_id']} has ended: no new goals.",
                       {"status": [journey["status"]]})
    set_on = form.get("set_on") or today
    _check_date(journey, "set_on", set_on, today)
    target = form.get("target_date")
    if target is not None and _day(target) < _day(set_on):
        raise ValidationFailed("The request has invalid fields.", {
            "target_date": ["Cannot be before the goal was set."]})
    goal = {"_id": goal_id, "site_id": journey["site_id"], "journey_id": journey["_id"],
            "words": words_token, "category": form["category"], "status": "set",
            "set_on": _iso_day(set_on), "target_date": _iso_day(target),
            "achieved_on": None, "set_by": set_by, "created_at": now, "reviews": []}
    event = _event("goal.set", journey, {"goal_id": goal_id, "category": form["category"],
                                         "set_on": _iso_day(set_on)}, now)
    return goal, event


def review_goal(journey, goal, form, review_id, reviewed_by, note_token, today, now):
    """(changes, the review, goal.reviewed) for a review of a goal."""
    reviewed_on = form.get("reviewed_on") or today
    errors = date_errors(journey, "reviewed_on", reviewed_on, today)
    if not errors and _day(reviewed_on) < _day(goal["set_on"]):
        errors = {"reviewed_on": [f"Before the goal was set ({goal['set_on']})."]}
    if errors:
        raise ValidationFailed("The request has invalid fields.", errors)
    day = _iso_day(reviewed_on)
    review = {"id": review_id, "status": form["status"], "reviewed_on": day,
              "note": note_token, "reviewed_by": reviewed_by, "recorded_at": now}
    changes = {"status": form["status"],
               "achieved_on": day if form["status"] == "achieved" else None}
    event = _event("goal.reviewed", journey, {
        "goal_id": goal["_id"], "category": goal["category"], "status": form["status"],
        "reviewed_on": day}, now)
    return changes, review, event


# -- outcome measures -----------------------------------------------------------


def check_licence(instrument, licensed_measures):
    if instrument not in set(licensed_measures or ()):
        raise ValidationFailed(
            "The site does not hold a licence for this measure.",
            {"instrument": [f"{instrument} is not licensed at this site; licensed: "
                            f"{sorted(licensed_measures or ()) or 'none'}."]})


def record_outcome(journey, form, outcome_id, recorded_by, licensed_measures,
                   seal, today, now):
    """An outcome measure scored here from its answers (never by the caller),
    and its ``outcome.recorded``. ``seal(name, value)``: the value as stored
    (encrypted: the answers and item scores are the parent's health data)."""
    check_licence(form["instrument"], licensed_measures)
    errors = instruments.answer_errors(form["instrument"], form["answers"])
    if errors:
        raise ValidationFailed("Some answers are missing or out of range.", errors)
    recorded_on = form.get("recorded_on") or today
    _check_date(journey, "recorded_on", recorded_on, today)
    result = instruments.score(form["instrument"], form["answers"])
    day = _iso_day(recorded_on)
    outcome = {"_id": outcome_id, "site_id": journey["site_id"],
               "journey_id": journey["_id"], "instrument": form["instrument"],
               "time_point": form["time_point"], "recorded_on": day,
               "answers": seal("answers", list(form["answers"])),
               "item_scores": seal("item_scores", result["item_scores"]),
               "scores": result["scores"], "bands": result["bands"],
               "flags": result["flags"], "self_harm_risk": result["self_harm_risk"],
               "recorded_by": recorded_by, "recorded_at": now}
    if form["time_point"] in ONCE_PER_JOURNEY:
        outcome["once"] = True
    event = _event("outcome.recorded", journey, {
        "outcome_id": outcome_id, "instrument": form["instrument"],
        "time_point": form["time_point"], "recorded_on": day,
        "scores": result["scores"], "bands": result["bands"], "flags": result["flags"],
        "self_harm_risk": result["self_harm_risk"]}, now)
    return outcome, event
