"""Who may do what: the gateway's rules, pure (no nameko, no pymongo, no clock).

A caller is a :class:`Principal`: a user who logged in (bearer token) or an
API key. Its role says what it may do; its site is the only site whose
records it can reach. The site always comes from here, never from a
request body.
"""
import math
import re
from dataclasses import dataclass

from shared.errors import Forbidden, NotFound, ValidationFailed

NATIONAL_ADMIN = "national_admin"
SITE_COORDINATOR = "site_coordinator"
VOLUNTEER = "volunteer"
REFERRER = "referrer"
INTEGRATOR = "integrator"
OPS = "ops"
ROLES = (NATIONAL_ADMIN, SITE_COORDINATOR, VOLUNTEER, REFERRER, INTEGRATOR, OPS)

# Roles that belong to one site; the others are national.
SITE_ROLES = {SITE_COORDINATOR, VOLUNTEER, REFERRER, INTEGRATOR}
# Roles an API key can carry (systems, not people).
API_KEY_ROLES = {REFERRER, INTEGRATOR}
# What a site coordinator may hand out within their own site.
COORDINATOR_GRANTS = {SITE_COORDINATOR, VOLUNTEER, REFERRER, INTEGRATOR}

# permission -> roles that hold it
PERMISSIONS = {
    "sites:create": {NATIONAL_ADMIN},
    "sites:read": {NATIONAL_ADMIN, SITE_COORDINATOR, VOLUNTEER, REFERRER,
                   INTEGRATOR, OPS},
    "users:create": {NATIONAL_ADMIN, SITE_COORDINATOR},
    "users:read": {NATIONAL_ADMIN, SITE_COORDINATOR},
    "api_keys:manage": {NATIONAL_ADMIN, SITE_COORDINATOR},
    "referrals:create": {SITE_COORDINATOR, REFERRER},
    # National roles see anonymised aggregates, not parents.
    "referrals:read": {SITE_COORDINATOR},
    "referrals:triage": {SITE_COORDINATOR},   # triage and safeguarding concerns
    "audit:read": {NATIONAL_ADMIN, SITE_COORDINATOR},
    "training:manage": {NATIONAL_ADMIN, SITE_COORDINATOR},   # volunteers need a site; policy: admin too
    "matching:manage": {SITE_COORDINATOR},   # profiles, weights, suggestions, matches, plans
    # A volunteer raises concerns about the parents matched to them.
    "safeguarding:raise": {SITE_COORDINATOR, VOLUNTEER},
    # A volunteer reaches only the journeys of their own matches.
    "journeys:read": {SITE_COORDINATOR, VOLUNTEER},
    "journeys:write": {SITE_COORDINATOR, VOLUNTEER},
    "messaging:manage": {SITE_COORDINATOR},   # templates, preferences, delivery log
    "webhooks:manage": {SITE_COORDINATOR, INTEGRATOR},
    "integrations:subscribe": {INTEGRATOR},   # an AMQP queue of its own
    "reports:read": {NATIONAL_ADMIN, SITE_COORDINATOR},   # national: aggregates only
    "sites:update": {NATIONAL_ADMIN, SITE_COORDINATOR},   # a coordinator: their own
    "me:read": set(ROLES),
}

SITE_CODE = re.compile(r"^[a-z0-9][a-z0-9-]{1,30}$")


@dataclass(frozen=True)
class Principal:
    id: str
    kind: str          # "user" or "api_key"
    role: str
    site_id: str | None
    name: str

    @property
    def is_national(self):
        return self.site_id is None


def authorize(principal, permission):
    if principal.role not in PERMISSIONS[permission]:
        raise Forbidden(f"The {principal.role} role may not do this "
                        f"({permission}).")


def site_scope(principal):
    """The site a site-bound caller works in (the scope of every query)."""
    if principal.site_id is None:
        raise Forbidden("This needs a site-bound role.")
    return principal.site_id


def visible_site(principal, site_id):
    """A caller sees their own site only (national roles see all); any
    other is 'not found', so nobody learns which sites exist."""
    if principal.is_national or principal.site_id == site_id:
        return site_id
    raise NotFound(f"No site {site_id}.")


def site_for_new_account(principal, role, requested_site_id):
    """Which site a new user or API key belongs to.

    A national admin names it (or none, for a national role); a site
    coordinator creates accounts in their own site only.
    """
    if role not in SITE_ROLES:
        if requested_site_id:
            raise ValidationFailed("A national role has no site.",
                                   {"site_id": [f"must be empty for {role}"]})
        if not principal.is_national or principal.role != NATIONAL_ADMIN:
            raise Forbidden(f"Only a national admin can create a {role}.")
        return None
    if principal.role == NATIONAL_ADMIN:
        if not requested_site_id:
            raise ValidationFailed("Say which site the account belongs to.",
                                   {"site_id": [f"required for {role}"]})
        return requested_site_id
    if role not in COORDINATOR_GRANTS:
        raise Forbidden(f"A site coordinator cannot create a {role}.")
    if requested_site_id and requested_site_id != principal.site_id:
        raise Forbidden("You can create accounts for your own site only.")
    return principal.site_id


def token_claims(user, now_epoch, ttl_seconds):
    return {
        "sub": user["_id"],
        "role": user["role"],
        "site": user.get("site_id"),
        "iat": int(now_epoch),
        "exp": int(now_epoch) + int(ttl_seconds),
    }


API_KEY_PREFIX = "alk_"


def format_api_key(key_id, secret):
    return f"{API_KEY_PREFIX}{key_id}.{secret}"


def parse_api_key(presented):
    """(key id, secret) from a presented key, or None if malformed."""
    if not presented or not presented.startswith(API_KEY_PREFIX):
        return None
    key_id, _, secret = presented[len(API_KEY_PREFIX):].partition(".")
    if not key_id or not secret:
        return None
    return key_id, secret


def rate_window(now_epoch, window_seconds):
    """(start of the fixed window holding now, seconds until it ends)."""
    start = int(now_epoch // window_seconds * window_seconds)
    return start, max(1, math.ceil(start + window_seconds - now_epoch))


def audit_entry(principal, action, record_type, record_id, site_id, when,
                client_address, outcome):
    return {
        "actor_id": principal.id if principal else None,
        "actor_kind": principal.kind if principal else None,
        "actor_role": principal.role if principal else None,
        "action": action,
        "record_type": record_type,
        "record_id": record_id,
        "site_id": site_id,
        "at": when,
        "client_address": client_address,
        "outcome": outcome,
    }
