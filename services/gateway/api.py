"""The HTTP adapter: every gateway endpoint is declared with :func:`endpoint`.

One declaration gives the route (nameko's ``@http``), who may call it, the
schema its body or query is checked with, the schema its answer is dumped
with, whether it is audited, and its OpenAPI entry. Every error leaves as
``application/problem+json``: typed errors (raised here or by a remote
service) with their status, anything else as a 500 with no internals.
"""
import functools
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

import eventlet
from marshmallow import ValidationError
from nameko.exceptions import RemoteError, UnknownService
from nameko.extensions import DependencyProvider
from nameko.web.handlers import http
from werkzeug.wrappers import Response

from services.gateway import credentials, domain, store
from shared.errors import (PROBLEM_CONTENT_TYPE, AlongsideError, BadRequest, Conflict,
                           ServiceUnavailable, TooManyRequests, Unauthorized,
                           ValidationFailed,
                           problem_for)
from shared.observability import current_correlation_id

log = logging.getLogger(__name__)


@dataclass
class ApiDoc:
    method: str
    path: str
    summary: str
    permission: str | None
    body: type | None
    query: type | None
    response: type | None
    status: int
    many: bool
    public: bool
    errors: tuple = field(default_factory=tuple)
    headers: tuple = field(default_factory=tuple)   # ((name, description), ...)


@dataclass
class Call:
    """What an endpoint body gets: the caller, the checked input, the address."""
    request: object
    principal: domain.Principal | None
    body: dict | None
    query: dict | None
    client_address: str


class Gateway(DependencyProvider):
    """The gateway's settings and credential checks."""

    def setup(self):
        settings = self.container.config.get("GATEWAY", {}) or {}
        self.signing_key = settings.get("JWT_SECRET") or ""
        if len(self.signing_key) < 32:
            raise RuntimeError(
                "GATEWAY_JWT_SECRET must be set to a random value of at least "
                "32 characters (e.g. `python -c 'import secrets; "
                "print(secrets.token_urlsafe(48))'`).")
        self.token_ttl = int(settings.get("TOKEN_TTL_SECONDS", 3600))
        self.rate_limits = settings.get("RATE_LIMITS", {}) or {}
        self.trusted_proxy_hops = int(settings.get("TRUSTED_PROXY_HOPS", 0))
        # nameko 2's RPC proxy waits for a reply for ever: bound each request.
        self.request_timeout = float(settings.get("REQUEST_TIMEOUT_SECONDS", 15))

    def start(self):
        from shared.storage import database_provider
        settings = self.container.config.get("GATEWAY", {}) or {}
        database = database_provider(self.container)
        database.wait_until_prepared()   # the unique email index first
        ensure_first_admin(database.database,
                           settings.get("ADMIN_EMAIL"), settings.get("ADMIN_PASSWORD"))

    def get_dependency(self, worker_ctx):
        return self

    def client_address(self, request):
        # Behind N trusted proxies, the client is the Nth address from the
        # right of X-Forwarded-For; anything further left could be forged.
        if self.trusted_proxy_hops:
            forwarded = [a.strip() for a in request.headers.get(
                "X-Forwarded-For", "").split(",") if a.strip()]
            if len(forwarded) >= self.trusted_proxy_hops:
                return forwarded[-self.trusted_proxy_hops]
        return request.remote_addr

    def authenticate(self, database, request):
        header = request.headers.get("Authorization", "")
        api_key = request.headers.get("X-API-Key")
        if api_key:
            return self._api_key_principal(database, api_key)
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token:
            return self._token_principal(database, token.strip())
        raise Unauthorized("Log in (Authorization: Bearer <token>) or "
                           "present an API key (X-API-Key).")

    def _token_principal(self, database, token):
        claims = credentials.read_token(token, self.signing_key)
        user = store.Users(database).get(claims["sub"])
        if user is None or user.get("disabled"):
            raise Unauthorized("The account no longer exists or is disabled.")
        return domain.Principal(user["_id"], "user", user["role"],
                                user.get("site_id"), user["name"])

    def _api_key_principal(self, database, presented):
        parsed = domain.parse_api_key(presented)
        key = store.ApiKeys(database).get(parsed[0]) if parsed else None
        if (key is None or key.get("revoked_at")
                or not credentials.secret_matches(key["secret_hash"], parsed[1])):
            raise Unauthorized("The API key is not valid or has been revoked.")
        return domain.Principal(key["_id"], "api_key", key["role"],
                                key["site_id"], key["name"])

    def issue_token(self, user):
        claims = domain.token_claims(user, time.time(), self.token_ttl)
        return {"access_token": credentials.sign_token(claims, self.signing_key),
                "token_type": "Bearer", "expires_in": self.token_ttl}

    def check_rate(self, database, bucket, address):
        limit = self.rate_limits.get(bucket)
        if not limit:
            return
        now = time.time()
        window_start, retry_after = domain.rate_window(now, int(limit["WINDOW_SECONDS"]))
        counters = store.RateLimits(database)
        if counters.hit(f"{bucket}:{address}", window_start) > int(limit["LIMIT"]):
            error = TooManyRequests(f"Too many attempts: try again in {retry_after} s.")
            error.retry_after = retry_after
            raise error


def ensure_first_admin(database, email, password):
    """The first national admin comes from the environment, on first start;
    there is no default password anywhere."""
    users = store.Users(database)
    if users.any_with_role(domain.NATIONAL_ADMIN):
        return
    if not email or not password:
        log.warning("no national admin yet: set ALONGSIDE_ADMIN_EMAIL and "
                    "ALONGSIDE_ADMIN_PASSWORD and restart the gateway")
        return
    if len(password) < 12:
        log.error("ALONGSIDE_ADMIN_PASSWORD is shorter than 12 characters: "
                  "no national admin was created")
        return
    try:
        users.add({"_id": str(uuid.uuid4()), "email": email.lower(),
                   "name": "National admin", "role": domain.NATIONAL_ADMIN,
                   "site_id": None, "created_at": datetime.now(timezone.utc),
                   "password_hash": credentials.hash_password(password)})
        log.info("created the first national admin", extra={"fields": {"email": email}})
    except Conflict:
        pass   # another replica made it first


def endpoint(method, path, *, summary, permission=None, body=None, query=None,
             response=None, status=200, many=False, public=False,
             audit=None, rate_limit=None, errors=(), forwarded=False, headers=()):
    """Declare an endpoint. ``headers=((name, description), ...)`` documents
    optional request headers the endpoint reads. ``audit=(action, record_type)`` writes an audit
    entry for every call, allowed or refused, naming the record (the
    ``id`` path parameter, or the ``id`` of what the call returns).
    ``forwarded``: the answer comes from the owning service already dumped
    with ``response``, which then only documents it."""
    def decorate(fn):
        @functools.wraps(fn)
        def handle(self, request, **path_args):
            principal, result, outcome = None, None, 500
            address = self.gateway.client_address(request)
            try:
                if rate_limit:
                    self.gateway.check_rate(self.db, rate_limit, address)
                if not public:
                    principal = self.gateway.authenticate(self.db, request)
                    if permission:
                        domain.authorize(principal, permission)
                call = Call(request, principal,
                            _load_body(request, body) if body else None,
                            _load_query(request, query) if query else None,
                            address)
                with eventlet.Timeout(self.gateway.request_timeout, ServiceUnavailable(
                        "A service behind the gateway did not answer in time.")):
                    result = fn(self, call, **path_args)
                outcome = status
                if isinstance(result, Response):
                    # Rendered by the endpoint (a CSV, a spreadsheet, a page).
                    if current_correlation_id():
                        result.headers["X-Correlation-Id"] = current_correlation_id()
                    return result
                if status == 204:
                    return _respond(204, None)
                dump = response and not forwarded
                payload = response(many=many).dump(result) if dump else result
                return _respond(status, payload)
            except Exception as error:  # every failure becomes a problem
                response_ = _problem_response(error, request.path)
                outcome = response_.status_code
                return response_
            finally:
                if audit:
                    _audit(self, audit, principal, path_args, result, address, outcome)

        handle.api_doc = ApiDoc(method, path, summary, permission, body, query,
                                response, status, many, public, tuple(errors),
                                tuple(headers))
        return http(method, path)(handle)
    return decorate


def _load_body(request, schema):
    raw = request.get_data(cache=True, as_text=True)
    if not raw.strip():
        raise BadRequest("A JSON body is needed.")
    try:
        payload = json.loads(raw)
    except ValueError as error:
        raise BadRequest(f"The body is not valid JSON: {error}.")
    return _load(schema, payload)


def _load_query(request, schema):
    return _load(schema, request.args.to_dict())


def _load(schema, payload):
    if not isinstance(payload, dict):
        raise ValidationFailed("The request has invalid fields.",
                               {"_schema": ["Expected a JSON object."]})
    try:
        return schema().load(payload)
    except ValidationError as error:
        raise ValidationFailed("The request has invalid fields.", error.messages)


def _respond(status, payload):
    response = Response(None if payload is None else json.dumps(payload, default=str),
                        status=status, mimetype="application/json")
    if current_correlation_id():
        response.headers["X-Correlation-Id"] = current_correlation_id()
    return response


def _problem_response(error, instance):
    if isinstance(error, RemoteError):
        # A remote error that is not one of ours: an internal fault there.
        log.error("remote service failed", extra={"fields": {
            "remote_error": error.exc_type}})
        error = AlongsideError("A service behind the gateway failed.")
        error.status, error.title, error.code = 502, "Bad gateway", "bad_gateway"
    elif isinstance(error, UnknownService):
        error = ServiceUnavailable("A service behind the gateway is not running.")
    elif not isinstance(error, AlongsideError):
        log.exception("unexpected error in the gateway")
    status, problem = problem_for(error, instance)
    response = Response(json.dumps(problem), status=status,
                        mimetype=PROBLEM_CONTENT_TYPE)
    if getattr(error, "retry_after", None):
        response.headers["Retry-After"] = str(error.retry_after)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="alongside"'
    if current_correlation_id():
        response.headers["X-Correlation-Id"] = current_correlation_id()
    return response


def _audit(service, audit, principal, path_args, result, address, outcome):
    action, record_type = audit
    record_id = path_args.get("id")
    if record_id is None and isinstance(result, dict):
        record_id = result.get("id") or result.get("_id")
    site_id = principal.site_id if principal else None
    if isinstance(result, dict) and result.get("site_id"):
        site_id = result["site_id"]
    try:
        store.AuditLog(service.db).append(domain.audit_entry(
            principal, action, record_type, record_id, site_id,
            datetime.now(timezone.utc), address, outcome))
    except Exception:
        # The answer has been decided; an audit failure must be loud.
        log.exception("could not write the audit entry")
