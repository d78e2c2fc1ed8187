"""The messaging service's rules, pure: who is told of what, on which
channel, when (quiet hours), and what happens after a failed attempt.

No nameko, no pymongo, no clock: every function is given ``now``.
"""
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from shared.events.types.messaging import CHANNELS, NOTIFICATION_KINDS, RECIPIENT_KINDS

EMAIL, SMS = "email", "sms"
PARENT, REFERRER, VOLUNTEER, COORDINATOR = RECIPIENT_KINDS
STAFF = (COORDINATOR,)

(REFERRAL_RECEIVED, MATCH_PROPOSED, MATCH_CONFIRMED, SAFEGUARDING_CONCERN,
 DBS_EXPIRING, CONTACT_REMINDER) = NOTIFICATION_KINDS

# The event each notification answers (a contact reminder answers a request).
KIND_FOR_EVENT = {
    "referral.received": REFERRAL_RECEIVED,
    "match.proposed": MATCH_PROPOSED,
    "match.confirmed": MATCH_CONFIRMED,
    "safeguarding.concern_raised": SAFEGUARDING_CONCERN,
    "dbs.expiring": DBS_EXPIRING,
}

# Who hears of each kind: one template per kind, audience and language.
AUDIENCES = {
    REFERRAL_RECEIVED: (REFERRER, PARENT),
    MATCH_PROPOSED: (VOLUNTEER, PARENT),
    MATCH_CONFIRMED: (VOLUNTEER, PARENT),
    SAFEGUARDING_CONCERN: (COORDINATOR,),
    DBS_EXPIRING: (VOLUNTEER, COORDINATOR),
    CONTACT_REMINDER: (VOLUNTEER, PARENT),
}
URGENT_KINDS = (SAFEGUARDING_CONCERN,)

# What must be looked up (over RPC) to reach a kind's audience.
REFERRAL, VOLUNTEER_DETAILS, STAFF_LIST = "referral", "volunteer", "staff"
LOOKUPS = {
    REFERRAL_RECEIVED: (REFERRAL,),
    MATCH_PROPOSED: (REFERRAL, VOLUNTEER_DETAILS),
    MATCH_CONFIRMED: (REFERRAL, VOLUNTEER_DETAILS),
    SAFEGUARDING_CONCERN: (STAFF_LIST,),
    DBS_EXPIRING: (VOLUNTEER_DETAILS, STAFF_LIST),
    CONTACT_REMINDER: (REFERRAL, VOLUNTEER_DETAILS),
}

# A message's life in the delivery log.
QUEUED, SCHEDULED, DEFERRED, RETRYING, SENDING = (
    "queued", "scheduled", "deferred", "retrying", "sending")
SENT, FAILED, SKIPPED, CANCELLED = "sent", "failed", "skipped", "cancelled"
PENDING = (QUEUED, SCHEDULED, DEFERRED, RETRYING)
STATUSES = PENDING + (SENDING, SENT, FAILED, SKIPPED, CANCELLED)

# Why a message was not even attempted.
OPTED_OUT, NO_CONTACT_DETAILS, NO_CHANNEL = "opted_out", "no_contact_details", "no_channel"


@dataclass(frozen=True)
class Recipient:
    recipient_kind: str
    person_id: str
    name: str | None
    email: str | None
    phone: str | None
    language: str
    urgent: bool

    def address(self, channel):
        return self.email if channel == EMAIL else self.phone


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time
    timezone: str

    @classmethod
    def parse(cls, start, end, zone):
        return cls(time.fromisoformat(start), time.fromisoformat(end), zone)


# -- who is told ---------------------------------------------------------------

def recipients(kind, data, details):
    """The people a notification of ``kind`` goes to.

    ``data`` is the event's (or request's) data; ``details`` what the
    lookups of :data:`LOOKUPS` returned: ``referral`` (referrals'
    contact_details), ``volunteer`` (training's) and ``staff`` (the
    site's coordinators). A parent is told only with their consent to be
    contacted; a referrer only if they left an address.
    """
    urgent = kind in URGENT_KINDS
    found = []
    for audience in AUDIENCES[kind]:
        if audience == PARENT:
            parent = (details.get(REFERRAL) or {}).get("parent")
            if parent and parent.get("consent_to_contact"):
                found.append(_person(PARENT, data["referral_id"], parent, urgent))
        elif audience == REFERRER:
            referrer = (details.get(REFERRAL) or {}).get("referrer")
            if referrer and (referrer.get("email") or referrer.get("phone")):
                found.append(_person(REFERRER, data["referral_id"], referrer, urgent))
        elif audience == VOLUNTEER:
            volunteer = details.get(VOLUNTEER_DETAILS)
            if volunteer:
                found.append(_person(VOLUNTEER, data["volunteer_id"], volunteer, urgent))
        elif audience == COORDINATOR:
            for staff in details.get(STAFF_LIST) or ():
                found.append(_person(COORDINATOR, staff["user_id"], dict(
                    staff, phone=staff.get("phone")), urgent))
    return found


def _person(kind, person_id, contact, urgent):
    return Recipient(kind, person_id, contact.get("name"), contact.get("email") or None,
                     contact.get("phone") or None,
                     contact.get("preferred_language") or "en", urgent)


# -- on which channel -------------------------------------------------------------

def choose_channel(recipient, preferences, available, default_order=(EMAIL, SMS)):
    """``(channel, None)``, or ``(None, reason)`` when none may be used.

    The person's preferred channel first, then the default order; a channel
    needs an address, must be set up here (``available``) and must not be
    one the person opted out of."""
    preferences = preferences or {}
    opted_out = set(preferences.get("opt_outs") or ())
    preferred = preferences.get("preferred_channel")
    order = ([preferred] if preferred else []) + [c for c in default_order if c != preferred]
    reachable = [c for c in order if c in CHANNELS and recipient.address(c)]
    if not reachable:
        return None, NO_CONTACT_DETAILS
    allowed = [c for c in reachable if c not in opted_out]
    if not allowed:
        return None, OPTED_OUT
    usable = [c for c in allowed if c in available]
    if not usable:
        return None, NO_CHANNEL
    return usable[0], None


# -- when ---------------------------------------------------------------------------

def quiet_hours_end(now, quiet):
    """When the quiet hours that ``now`` falls in end (UTC), or None if
    ``now`` is outside them. Hours that wrap midnight (21:00-08:00) work;
    equal start and end mean no quiet hours."""
    if quiet is None or quiet.start == quiet.end:
        return None
    zone = ZoneInfo(quiet.timezone)
    local = now.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    if quiet.start < quiet.end:
        if not quiet.start <= clock < quiet.end:
            return None
        end_day = local.date()
    else:
        if quiet.end <= clock < quiet.start:
            return None
        end_day = local.date() + timedelta(days=1) if clock >= quiet.start else local.date()
    return datetime.combine(end_day, quiet.end, tzinfo=zone).astimezone(timezone.utc)


def not_before(now, channel, recipient_kind, urgent, quiet):
    """The earliest time a message may go: no SMS in quiet hours, except
    an urgent one to staff; email any time."""
    if channel != SMS or (urgent and recipient_kind in STAFF):
        return now
    return quiet_hours_end(now, quiet) or now


def reminder_time(contact_at, now, send_at, zone):
    """When to remind of a contact: ``send_at`` (local time) the day
    before it; at once if that has passed but the contact has not; None if
    the contact is already past."""
    if contact_at <= now:
        return None
    tz = ZoneInfo(zone)
    day_before = contact_at.astimezone(tz).date() - timedelta(days=1)
    planned = datetime.combine(day_before, send_at, tzinfo=tz).astimezone(timezone.utc)
    return max(planned, now)


# -- after a failed attempt ----------------------------------------------------------

def retry_delay(attempt, delays):
    """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
    return float(delays[min(attempt, len(delays)) - 1])


def after_failure(attempts, max_attempts, transient, now, delays):
    """``(RETRYING, due_at)`` for a transient failure with attempts left,
    else ``(FAILED, None)``: permanent failures are not retried."""
    if transient and attempts < max_attempts:
        return RETRYING, now + timedelta(seconds=retry_delay(attempts, delays))
    return FAILED, None


# -- what the templates see ----------------------------------------------------------

def reference(identifier):
    """A short reference a person can quote (the id's first 8 characters)."""
    return (identifier or "")[:8].upper()


def template_context(kind, recipient, data, details, zone="Europe/London"):
    """The variables a template of ``kind`` may use (every one always set;
    missing values are empty strings)."""
    referral = details.get(REFERRAL) or {}
    parent = referral.get("parent") or {}
    volunteer = details.get(VOLUNTEER_DETAILS) or {}
    context = {"recipient_name": recipient.name or "", "recipient_kind": recipient.recipient_kind}
    if kind == REFERRAL_RECEIVED:
        context.update(parent_name=parent.get("name") or "",
                       reference=reference(data["referral_id"]),
                       received_on=_local_day(data.get("received_at"), zone))
    elif kind in (MATCH_PROPOSED, MATCH_CONFIRMED):
        context.update(parent_name=parent.get("name") or "",
                       volunteer_name=volunteer.get("name") or "",
                       reference=reference(data["match_id"]))
    elif kind == SAFEGUARDING_CONCERN:
        context.update(severity=data["severity"], reference=reference(data["concern_id"]),
                       referral_reference=reference(data["referral_id"]))
    elif kind == DBS_EXPIRING:
        expires = data["expires_on"]
        context.update(volunteer_name=volunteer.get("name") or "",
                       expires_on=expires.strftime("%-d %B %Y")
                       if hasattr(expires, "strftime") else str(expires))
    elif kind == CONTACT_REMINDER:
        context.update(parent_name=parent.get("name") or "",
                       volunteer_name=volunteer.get("name") or "",
                       contact_at=_local_moment(data["contact_at"], zone),
                       mode=(data.get("mode") or "").replace("_", " "))
    return {name: "" if value is None else value for name, value in context.items()}


def _local_day(iso, zone):
    if not iso:
        return ""
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00")) if isinstance(iso, str) else iso
    return moment.astimezone(ZoneInfo(zone)).strftime("%-d %B %Y")


def _local_moment(moment, zone):
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return moment.astimezone(ZoneInfo(zone)).strftime("%A %-d %B at %H:%M")
