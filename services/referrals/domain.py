"""Referral rules, pure: no nameko, no pymongo, no clock read here.

Intake (with its eligibility and duplicate rules), the triage state machine
and safeguarding concerns. Personal values leave these functions in plain
form under ``personal`` (or ``notes``); the service encrypts them before
anything is stored.
"""
import difflib
import re
import uuid
from datetime import date, timedelta

from shared.errors import Conflict, ValidationFailed
from shared.events import new_event
from shared.events.types.referrals import (CLOSE_REASONS, DECLINE_REASONS,  # noqa: F401
                                           NEEDS, SEVERITIES, SUPPORT_MODES)

# A UK postcode without its space: outward code, then inward code.
UK_POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?)([0-9][A-Z]{2})$")

CONSENT_METHODS = ("verbal", "written", "electronic", "self_referral")
DEFAULT_CHILD_AGE_LIMIT_MONTHS = 12
DEFAULT_TRIAGE_TARGET_DAYS = 5
NAME_SIMILARITY = 0.85

# -- statuses and the triage state machine -----------------------------------
RECEIVED = "received"
IN_TRIAGE = "in_triage"
ACCEPTED = "accepted"
DECLINED = "declined"
SIGNPOSTED = "signposted"
WITHDRAWN = "withdrawn"
MATCHED = "matched"
ACTIVE = "active"
CLOSED = "closed"
STATUSES = (RECEIVED, IN_TRIAGE, ACCEPTED, DECLINED, SIGNPOSTED, WITHDRAWN,
            MATCHED, ACTIVE, CLOSED)

# action -> (statuses it may start from, status it leads to).
# A referral is withdrawn before a decision; support that has begun (or was
# accepted and never started) ends by closing with a reason.
TRANSITIONS = {
    "start_triage": ((RECEIVED,), IN_TRIAGE),
    "accept": ((IN_TRIAGE,), ACCEPTED),
    "decline": ((IN_TRIAGE,), DECLINED),
    "signpost": ((IN_TRIAGE,), SIGNPOSTED),
    "withdraw": ((RECEIVED, IN_TRIAGE), WITHDRAWN),
    "match": ((ACCEPTED,), MATCHED),
    "activate": ((MATCHED,), ACTIVE),
    "close": ((ACCEPTED, MATCHED, ACTIVE), CLOSED),
}
ACTIONS = tuple(TRANSITIONS)


def normalise_postcode(text):
    """'sw1a1aa' -> 'SW1A 1AA'; None if it is not a UK postcode."""
    match = UK_POSTCODE.match(re.sub(r"\s+", "", text or "").upper())
    if not match:
        return None
    return f"{match.group(1)} {match.group(2)}"


def postcode_district(postcode):
    """The outward code, all that events may carry: 'SW1A 1AA' -> 'SW1A'."""
    return postcode.split(" ")[0]


def normalise_phone(text):
    """UK numbers to one form: '+44 7700 900123' -> '07700900123'; None if
    it is not a plausible phone number."""
    if not isinstance(text, str) or re.search(r"[^0-9+()\-\s.]", text):
        return None
    digits = re.sub(r"\D", "", text)
    if text.strip().startswith("+44") or (digits.startswith("44") and len(digits) == 12):
        digits = "0" + digits[2:]
    elif text.strip().startswith("00"):
        digits = "+" + digits[2:]
    return digits if 10 <= len(digits.lstrip("+")) <= 15 else None


def normalise_name(name):
    return " ".join((name or "").lower().split())


def split_contact(text):
    """A referrer's 'phone or email' as {"email", "phone"} (one of them None)."""
    text = (text or "").strip()
    if not text:
        return {"email": None, "phone": None}
    if "@" in text:
        return {"email": text, "phone": None}
    return {"email": None, "phone": text}


def contact_details(referral, personal):
    """How to reach the parent (and the referrer, if a professional referred
    them): for messaging, over RPC only. ``personal`` is decrypted."""
    parent = {"name": personal.get("name"), "email": personal.get("email"),
              "phone": personal.get("phone"),
              "preferred_language": referral["preferred_language"],
              "consent_to_contact": bool(referral["consent"]["to_be_contacted"])}
    referrer = None
    if referral["source"] != "self" and (personal.get("referrer_name")
                                         or personal.get("referrer_contact")):
        referrer = dict(name=personal.get("referrer_name"),
                        **split_contact(personal.get("referrer_contact")))
    return {"parent": parent, "referrer": referrer}


def names_close(a, b):
    return difflib.SequenceMatcher(
        None, normalise_name(a), normalise_name(b)).ratio() >= NAME_SIMILARITY


def months_between(earlier, later):
    months = (later.year - earlier.year) * 12 + later.month - earlier.month
    if later.day < earlier.day:
        months -= 1
    return months


# -- intake -------------------------------------------------------------------

def check_dates(form, today):
    """Dates that cannot be right, field by field (the schema cannot see
    the clock)."""
    errors = {}
    dob = form.get("date_of_birth")
    if dob and (dob >= today or dob < date(today.year - 70, 1, 1)
                or months_between(dob, today) < 10 * 12):
        errors["date_of_birth"] = ["Must be a parent's date of birth (aged 10 to 70)."]
    due = form.get("due_date")
    if due and not (today - timedelta(days=730) <= due <= today + timedelta(days=310)):
        errors["due_date"] = ["Must be within the next 10 months (or a recent past date)."]
    baby = form.get("baby_date_of_birth")
    if baby and (baby > today or baby < today - timedelta(days=5 * 366)):
        errors["baby_date_of_birth"] = ["Must not be in the future (or over 5 years ago)."]
    obtained = form.get("consent_obtained_at")
    if obtained and obtained.date() > today:
        errors["consent_obtained_at"] = ["Must not be in the future."]
    if errors:
        raise ValidationFailed("The request has invalid fields.", errors)


def assess_eligibility(district, due_date, baby_date_of_birth, site_rules, today):
    """Whether a site can support the parent, with the reasons it cannot.

    Eligible: pregnant, or the baby under the site's age limit (in months),
    and the postcode district in the site's catchment. A due date that has
    passed counts as the baby's birth.
    """
    reasons = []
    if district not in set(site_rules["catchment"]):
        reasons.append("outside_catchment")
    limit = site_rules.get("child_age_limit_months") or DEFAULT_CHILD_AGE_LIMIT_MONTHS
    born = baby_date_of_birth or (due_date if due_date and due_date < today else None)
    if born is not None and months_between(born, today) >= limit:
        reasons.append("baby_over_age_limit")
    return {"eligible": not reasons, "reasons": reasons}


def lookup_values(form):
    """The normalised values a duplicate is found by (hashed by the service).

    ``phone`` and ``exact`` (date of birth, postcode and the name exactly,
    once normalised) are unique per site: two parents cannot share them, so
    the same form sent twice at once cannot make two parents. ``dob_postcode``
    finds the parents whose name is then compared for closeness."""
    phone = normalise_phone(form.get("phone")) if form.get("phone") else None
    dob_postcode = f"{form['date_of_birth'].isoformat()}|{form['postcode']}"
    return {"phone": phone, "dob_postcode": dob_postcode,
            "exact": f"{dob_postcode}|{normalise_name(form['name'])}"}


def existing_parent(name, phone_matches, dob_postcode_matches):
    """The parent a new referral is for, if already known, else None.

    ``phone_matches``: ids of parents with the same phone;
    ``dob_postcode_matches``: (id, name) of parents with the same date of
    birth and postcode, who match if their name is close.
    """
    if phone_matches:
        return phone_matches[0]
    for parent_id, other_name in dob_postcode_matches:
        if names_close(name, other_name):
            return parent_id
    return None


PARENT_PERSONAL = ("name", "date_of_birth", "phone", "email", "postcode")
REFERRAL_PERSONAL = ("name", "date_of_birth", "phone", "email", "postcode",
                     "due_date", "baby_date_of_birth", "reason",
                     "referrer_name", "referrer_contact")


def _plain(value):
    return value.isoformat() if hasattr(value, "isoformat") else value


def new_parent(site_id, form, parent_id, now):
    return {"_id": parent_id, "site_id": site_id, "created_at": now,
            "personal": {f: _plain(form.get(f)) for f in PARENT_PERSONAL}}


def receive_referral(site_id, form, referral_id, now, *, site_rules,
                     parent_id=None, linked=False, actor=None):
    """A new referral (personal values in plain form under ``personal``)
    and the event announcing it."""
    today = now.date()
    check_dates(form, today)
    triage_days = site_rules.get("triage_target_days") or DEFAULT_TRIAGE_TARGET_DAYS
    # To the millisecond, as the database keeps it (the event says the same).
    triage_due_at = (now + timedelta(days=triage_days)).replace(
        microsecond=now.microsecond // 1000 * 1000)
    due, baby = form.get("due_date"), form.get("baby_date_of_birth")
    area = postcode_district(form["postcode"])
    eligibility = assess_eligibility(area, due, baby, site_rules, today)
    due_month = due.strftime("%Y-%m") if due else None
    history = {"status": RECEIVED, "at": now, "by": actor}
    if not eligibility["eligible"]:
        history["needs_signposting"] = eligibility["reasons"]
    referral = {
        "_id": referral_id,
        "site_id": site_id,
        "parent_id": parent_id,
        "linked_to_existing_parent": linked,
        "status": RECEIVED,
        "version": 1,
        "source": form["source"],
        "preferred_language": form["preferred_language"],
        "interpreter_needed": form["interpreter_needed"],
        "area": area,
        "due_month": due_month,
        "first_time_parent": form["first_time_parent"],
        "partner_included": form["partner_included"],
        "needs": sorted(set(form["needs"])),
        "preferred_support": sorted(set(form["preferred_support"])),
        "consent": {
            "to_be_contacted": form["consent_to_contact"],
            "to_share": form["consent_to_share"],
            "obtained_at": form.get("consent_obtained_at") or now,
            "obtained_how": form["consent_obtained_how"],
        },
        "eligibility": eligibility,
        "needs_signposting": not eligibility["eligible"],
        "received_at": now,
        "triage_due_at": triage_due_at,
        "updated_at": now,
        "match": None,
        "status_history": [history],
        "personal": {f: _plain(form.get(f)) for f in REFERRAL_PERSONAL},
    }
    event = new_event("referral.received", {
        "referral_id": referral_id,
        "source": form["source"],
        "preferred_language": form["preferred_language"],
        "area": area,
        "due_month": due_month,
        "received_at": now.isoformat(),
        "triage_due_at": triage_due_at.isoformat(),
    }, site_id=site_id, subject=referral_id, now=now)
    return referral, [event]


# -- triage ------------------------------------------------------------------

def triage(referral, action, now, *, reason=None, signposted_to=None, actor=None):
    """One move of the state machine: (the update to write, its events).

    The update holds ``personal.signposted_to`` in plain form (the service
    encrypts it). Raises Conflict for a move the current status does not
    allow."""
    if action not in TRANSITIONS:
        raise ValidationFailed("Unknown action.", {"action": [f"one of {ACTIONS}"]})
    sources, target = TRANSITIONS[action]
    status = referral["status"]
    if status not in sources:
        raise Conflict(f"A referral that is {status} cannot be moved to {target} "
                       f"(allowed from {', '.join(sources)}).")
    entry = {"status": target, "at": now, "by": actor}
    fields_ = {"status": target, "updated_at": now,
               "version": referral["version"] + 1}
    rid, site_id = referral["_id"], referral["site_id"]
    events = []
    if action == "accept":
        fields_["accepted_at"] = now
        events.append(new_event("referral.accepted", {
            "referral_id": rid,
            "preferred_language": referral["preferred_language"],
            "interpreter_needed": referral["interpreter_needed"],
            "area": referral["area"],
            "needs": list(referral["needs"]),
            "preferred_support": list(referral["preferred_support"]),
            "due_month": referral.get("due_month"),
            "accepted_at": now.isoformat()}, site_id=site_id, subject=rid, now=now))
    elif action == "decline":
        _require_choice("reason", reason, DECLINE_REASONS)
        fields_["decline_reason"] = entry["reason"] = reason
        events.append(new_event("referral.declined", {
            "referral_id": rid, "reason": reason, "declined_at": now.isoformat()},
            site_id=site_id, subject=rid, now=now))
    elif action == "signpost":
        if not isinstance(signposted_to, str) or not signposted_to.strip():
            raise ValidationFailed("Say where the parent was signposted to.",
                                   {"signposted_to": ["required to signpost"]})
        fields_["personal.signposted_to"] = signposted_to.strip()
        events.append(new_event("referral.signposted", {
            "referral_id": rid, "signposted_at": now.isoformat()},
            site_id=site_id, subject=rid, now=now))
    elif action == "withdraw":
        events.append(new_event("referral.withdrawn", {
            "referral_id": rid, "withdrawn_at": now.isoformat()},
            site_id=site_id, subject=rid, now=now))
    elif action == "close":
        _require_choice("reason", reason, CLOSE_REASONS)
        fields_["close_reason"] = entry["reason"] = reason
        events.append(_closed_event(referral, reason, now))
    update = {"$set": fields_, "$push": {"status_history": entry}}
    return update, events


def _closed_event(referral, reason, now):
    return new_event("referral.closed", {
        "referral_id": referral["_id"], "reason": reason, "closed_at": now.isoformat()},
        site_id=referral["site_id"], subject=referral["_id"], now=now)


def _require_choice(field, value, choices):
    if value not in choices:
        raise ValidationFailed("The request has invalid fields.",
                               {field: [f"Must be one of: {', '.join(choices)}."]})


def allowed_actions(status):
    return [action for action, (sources, _) in TRANSITIONS.items() if status in sources]


# -- safeguarding ----------------------------------------------------------------
OPEN = "open"
ACKNOWLEDGED = "acknowledged"
RESOLVED = "resolved"


SYSTEM = {"id": None, "role": "system"}
VOLUNTEER_ROLE = "volunteer"


def may_raise_concern(referral, actor):
    """A coordinator may raise a concern about any of the site's referrals; a
    volunteer only about a parent matched to them (the match not ended).
    Anyone else's referral is, to a volunteer, not there at all."""
    if (actor or {}).get("role") != VOLUNTEER_ROLE:
        return True
    match = referral.get("match") or {}
    return (match.get("ended_at") is None and actor.get("id") is not None
            and match.get("volunteer_user_id") == actor["id"])


def raise_concern(referral, concern_id, severity, notes, now, actor=None):
    """A concern (notes in plain form: the service encrypts them) and its
    event, with no notes in it."""
    _require_choice("severity", severity, SEVERITIES)
    site_id = referral["site_id"]
    concern = {
        "_id": concern_id, "site_id": site_id, "referral_id": referral["_id"],
        "severity": severity, "status": OPEN, "raised_at": now,
        "raised_by": actor, "referral_status": referral["status"],
        "notes": notes, "acknowledged_at": None, "acknowledged_by": None,
        "acknowledgement_notes": None, "resolved_at": None, "resolved_by": None,
        "resolution_notes": None,
    }
    event = new_event("safeguarding.concern_raised", {
        "concern_id": concern_id, "referral_id": referral["_id"],
        "severity": severity,
        "raised_by_role": (actor or {}).get("role"),
        "raised_at": now.isoformat()}, site_id=site_id, subject=referral["_id"], now=now)
    return concern, [event]


def _acknowledged(concern, now):
    return new_event("safeguarding.concern_acknowledged", {
        "concern_id": concern["_id"], "referral_id": concern["referral_id"],
        "severity": concern["severity"], "acknowledged_at": now.isoformat()},
        site_id=concern["site_id"], subject=concern["referral_id"], now=now)


def acknowledge_concern(concern, now, notes=None, actor=None):
    if concern["status"] != OPEN:
        raise Conflict(f"The concern is {concern['status']} already.")
    return {"$set": {"status": ACKNOWLEDGED, "acknowledged_at": now,
                     "acknowledged_by": actor, "acknowledgement_notes": notes}}, [
        _acknowledged(concern, now)]


def resolve_concern(concern, now, notes, actor=None):
    """Resolving an open concern acknowledges it too."""
    if concern["status"] == RESOLVED:
        raise Conflict("The concern is resolved already.")
    changes = {"status": RESOLVED, "resolved_at": now, "resolved_by": actor,
               "resolution_notes": notes}
    events = []
    if concern["status"] == OPEN:
        changes.update(acknowledged_at=now, acknowledged_by=actor)
        events.append(_acknowledged(concern, now))
    event = new_event("safeguarding.concern_resolved", {
        "concern_id": concern["_id"], "referral_id": concern["referral_id"],
        "severity": concern["severity"], "resolved_at": now.isoformat()},
        site_id=concern["site_id"], subject=concern["referral_id"], now=now)
    return {"$set": changes}, events + [event]


# -- what other services' events do to a referral ------------------------------
#
# Matching, journeys and the coordinator all move a referral, and events
# arrive late, twice or out of order. Each function below returns an
# :class:`EventEffect`: the update to write (None: nothing), the events it
# raises, and what happened: ``applied``; ``duplicate`` (already so, or about
# an earlier match: nothing to do); ``refused`` (the referral's status does
# not allow it, e.g. a match confirmed for a withdrawn referral: the state
# stays, and the event is noted on the referral for the coordinator).

APPLIED, DUPLICATE, REFUSED = "applied", "duplicate", "refused"
# journey.ended's reason -> the referral's close reason; a journey that ended
# because of a rematch closes nothing (match.ended with rematch moved it back).
JOURNEY_CLOSE_REASONS = {"completed": "completed", "parent_ended": "parent_ended",
                         "moved_away": "moved_away", "no_contact": "no_contact",
                         "safeguarding": "safeguarding", "other": "other",
                         "rematched": None}
SELF_HARM_NOTE = "EPDS item 10 answered above 0 (outcome {outcome_id})"
SELF_HARM_SEVERITY = "urgent"


class EventEffect:
    def __init__(self, outcome, detail, update=None, events=()):
        self.outcome, self.detail = outcome, detail
        self.update, self.events = update, list(events)

    def __repr__(self):
        return f"EventEffect({self.outcome!r}, {self.detail!r})"


def _moved(referral, target, now, event, fields_=None, reason=None, events=()):
    entry = {"status": target, "at": now, "by": SYSTEM, "event": event["type"]}
    if reason:
        entry["reason"] = reason
    changes = {"status": target, "updated_at": now, "version": referral["version"] + 1}
    changes.update(fields_ or {})
    return EventEffect(APPLIED, f"{referral['status']} -> {target}",
                       {"$set": changes, "$push": {"status_history": entry}}, events)


def _recorded(referral, now, event, fields_):
    """A fact kept on the referral, its status unchanged."""
    return EventEffect(APPLIED, f"recorded, still {referral['status']}", {"$set": dict(
        fields_, updated_at=now, version=referral["version"] + 1)})


def _refused(referral, now, event, why):
    note = {"event_id": event["id"], "type": event["type"], "at": now,
            "status": referral["status"], "detail": why}
    return EventEffect(REFUSED, why, {"$push": {"event_anomalies": note}})


def _duplicate(why):
    return EventEffect(DUPLICATE, why)


def on_match_confirmed(referral, event, data, now):
    status, current = referral["status"], referral.get("match")
    match = {"match_id": data["match_id"], "volunteer_id": data["volunteer_id"],
             "volunteer_user_id": data.get("volunteer_user_id"),
             "confirmed_at": data["confirmed_at"], "ended_at": None}
    if current and current["match_id"] == data["match_id"]:
        if current.get("volunteer_user_id") is None and match["volunteer_user_id"]:
            return _recorded(referral, now, event, {
                "match.volunteer_user_id": match["volunteer_user_id"],
                "match.confirmed_at": match["confirmed_at"]})
        return _duplicate("this match is known already")
    if status == ACCEPTED:
        return _moved(referral, MATCHED, now, event, {"match": match})
    if status in (MATCHED, ACTIVE) and (current is None or current.get("ended_at")):
        return _recorded(referral, now, event, {"match": match})
    return _refused(referral, now, event,
                    f"a match was confirmed for a referral that is {status}"
                    + (" and matched already" if status in (MATCHED, ACTIVE) else ""))


def on_journey_started(referral, event, data, now):
    status, current = referral["status"], referral.get("match")
    if status == MATCHED:
        return _moved(referral, ACTIVE, now, event)
    if status == ACCEPTED:
        # The journey opened on a confirmed match whose event is still on
        # its way: the journey is the stronger fact.
        return _moved(referral, ACTIVE, now, event, {"match": {
            "match_id": data["match_id"], "volunteer_id": data["volunteer_id"],
            "volunteer_user_id": None, "confirmed_at": None, "ended_at": None}})
    if status == ACTIVE:
        if current is None or current["match_id"] == data["match_id"]:
            return _duplicate("active already")
    return _refused(referral, now, event, f"a journey started for a referral that is {status}")


def on_match_ended(referral, event, data, now):
    status, current = referral["status"], referral.get("match")
    if current and current["match_id"] != data["match_id"]:
        return _duplicate("an earlier match ended")
    if data["rematch"]:
        if status in (MATCHED, ACTIVE):
            return _moved(referral, ACCEPTED, now, event, {"match": None},
                          reason=data["reason"])
        if status == ACCEPTED:
            return _duplicate("waiting for a match already")
        return _refused(referral, now, event,
                        f"a match ended for rematch on a referral that is {status}")
    # Without a rematch the referral stays where it is: the coordinator closes it.
    if current and current.get("ended_at") is None:
        return _recorded(referral, now, event, {"match.ended_at": data["ended_at"],
                                                "match.end_reason": data["reason"]})
    return _duplicate("no open match to end")


def on_journey_ended(referral, event, data, now):
    status, current = referral["status"], referral.get("match")
    reason = JOURNEY_CLOSE_REASONS[data["reason"]]
    if reason is None:
        return _duplicate("ended for a rematch: the match's end moves the referral")
    if current and current["volunteer_id"] != data["volunteer_id"]:
        return _duplicate("an earlier journey ended")
    if status in (MATCHED, ACTIVE):
        return _moved(referral, CLOSED, now, event, {"close_reason": reason},
                      reason=reason, events=[_closed_event(referral, reason, now)])
    if status == CLOSED:
        return _duplicate("closed already")
    return _refused(referral, now, event, f"a journey ended for a referral that is {status}")


EVENT_MOVES = {"match.confirmed": on_match_confirmed,
               "journey.started": on_journey_started,
               "match.ended": on_match_ended,
               "journey.ended": on_journey_ended}


def self_harm_concern_id(site_id, outcome_id):
    """One concern per outcome, whatever delivers its event how often."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL,
                          f"alongside:{site_id}:self-harm:{outcome_id}"))


def self_harm_concern(referral, site_id, referral_id, outcome_id, now):
    """An urgent concern raised by the system on an outcome measure whose
    self-harm item scored above 0. Raised even if the referral is unknown
    here: a concern is never dropped."""
    referral = referral or {"_id": referral_id, "site_id": site_id, "status": None}
    concern, events = raise_concern(
        referral, self_harm_concern_id(site_id, outcome_id), SELF_HARM_SEVERITY,
        SELF_HARM_NOTE.format(outcome_id=outcome_id), now, SYSTEM)
    concern["outcome_id"] = outcome_id
    return concern, events
