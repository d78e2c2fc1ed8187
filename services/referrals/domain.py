"""Referral rules, pure: no nameko, no pymongo, no clock read here."""
import re

from shared.events import new_event

# A UK postcode without its space: outward code, then inward code.
UK_POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?)([0-9][A-Z]{2})$")

RECEIVED = "received"


def normalise_postcode(text):
    """'sw1a1aa' -> 'SW1A 1AA'; None if it is not a UK postcode."""
    match = UK_POSTCODE.match(re.sub(r"\s+", "", text or "").upper())
    if not match:
        return None
    return f"{match.group(1)} {match.group(2)}"


def postcode_district(postcode):
    """The outward code, all that events may carry: 'SW1A 1AA' -> 'SW1A'."""
    return postcode.split(" ")[0]


def receive_referral(site_id, form, referral_id, now):
    """A new referral and the event announcing it."""
    due = form.get("due_date")
    referral = {
        "_id": referral_id,
        "site_id": site_id,
        "status": RECEIVED,
        "source": form["source"],
        "preferred_language": form["preferred_language"],
        "interpreter_needed": form["interpreter_needed"],
        "postcode": form["postcode"],
        "due_date": due.isoformat() if due else None,
        "received_at": now,
        "status_history": [{"status": RECEIVED, "at": now}],
    }
    event = new_event("referral.received", {
        "referral_id": referral_id,
        "source": form["source"],
        "preferred_language": form["preferred_language"],
        "area": postcode_district(form["postcode"]),
        "due_month": due.strftime("%Y-%m") if due else None,
        "received_at": now.isoformat(),
    }, site_id=site_id, subject=referral_id, now=now)
    return referral, [event]
