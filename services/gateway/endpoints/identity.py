"""Sites, users, login, API keys and the audit log: the gateway's own data."""
import uuid
from datetime import datetime, timezone

from nameko.rpc import rpc

from services.gateway import credentials, domain, store
from services.gateway.api import endpoint
from services.gateway.integration_broker import queue_names
from services.gateway.schemas import (ApiKeySchema, AuditEntrySchema,
                                      AuditQuerySchema, CreatedApiKeySchema,
                                      MeSchema, NewApiKeySchema, NewSiteSchema,
                                      NewUserSchema, SiteSchema, SiteSettingsSchema,
                                      TokenRequestSchema, TokenSchema,
                                      UserSchema)
from shared.errors import NotFound, Unauthorized, ValidationFailed


def now():
    return datetime.now(timezone.utc)


class IdentityEndpoints:
    @endpoint("POST", "/api/v1/auth/token", summary="Log in with email and password",
              public=True, body=TokenRequestSchema, response=TokenSchema,
              rate_limit="login", errors=(401, 429))
    def login(self, call):
        user = store.Users(self.db).by_email(call.body["email"])
        matches = credentials.password_matches(
            user["password_hash"] if user else None, call.body["password"])
        if not matches or user.get("disabled"):
            raise Unauthorized("Wrong email or password.")
        return self.gateway.issue_token(user)

    @endpoint("GET", "/api/v1/me", summary="Who the credentials belong to",
              permission="me:read", response=MeSchema)
    def me(self, call):
        return vars(call.principal)

    @endpoint("POST", "/api/v1/sites", summary="Create a site", status=201,
              permission="sites:create", body=NewSiteSchema, response=SiteSchema,
              errors=(409,))
    def create_site(self, call):
        return store.Sites(self.db).add(dict(call.body, _id=str(uuid.uuid4()),
                                             created_at=now()))

    @endpoint("GET", "/api/v1/sites", summary="Sites the caller can see",
              permission="sites:read", response=SiteSchema, many=True)
    def list_sites(self, call):
        sites = store.Sites(self.db).all()
        if call.principal.is_national:
            return sites
        return [site for site in sites if site["_id"] == call.principal.site_id]

    @endpoint("GET", "/api/v1/sites/<id>", summary="One site",
              permission="sites:read", response=SiteSchema, errors=(404,))
    def get_site(self, call, id):
        site = store.Sites(self.db).get(domain.visible_site(call.principal, id))
        if site is None:
            raise NotFound(f"No site {id}.")
        return site

    @endpoint("PATCH", "/api/v1/sites/<id>", summary="Change a site's settings",
              permission="sites:update", body=SiteSettingsSchema, response=SiteSchema,
              audit=("site.update", "site"), errors=(404,))
    def update_site(self, call, id):
        site_id = domain.visible_site(call.principal, id)
        if not call.body:
            raise ValidationFailed("The request has invalid fields.",
                                   {"_schema": ["name at least one setting to change"]})
        site = store.Sites(self.db).update(site_id, dict(call.body, updated_at=now()))
        if site is None:
            raise NotFound(f"No site {id}.")
        return site

    @endpoint("POST", "/api/v1/users", summary="Create a user with a role",
              status=201, permission="users:create", body=NewUserSchema,
              response=UserSchema, audit=("user.create", "user"), errors=(404, 409))
    def create_user(self, call):
        site_id = domain.site_for_new_account(
            call.principal, call.body["role"], call.body["site_id"])
        self._require_site(site_id)
        return store.Users(self.db).add({
            "_id": str(uuid.uuid4()), "email": call.body["email"].lower(),
            "name": call.body["name"], "role": call.body["role"],
            "site_id": site_id, "created_at": now(),
            "password_hash": credentials.hash_password(call.body["password"])})

    @endpoint("GET", "/api/v1/users", summary="Users of the caller's site (all, nationally)",
              permission="users:read", response=UserSchema, many=True,
              audit=("user.list", "user"))
    def list_users(self, call):
        return store.Users(self.db).list(call.principal.site_id)

    @endpoint("POST", "/api/v1/api-keys", summary="Create an API key (shown once)",
              status=201, permission="api_keys:manage", body=NewApiKeySchema,
              response=CreatedApiKeySchema, errors=(404,))
    def create_api_key(self, call):
        site_id = domain.site_for_new_account(
            call.principal, call.body["role"], call.body["site_id"])
        self._require_site(site_id)
        key_id, secret = uuid.uuid4().hex[:16], credentials.new_api_key_secret()
        key = store.ApiKeys(self.db).add({
            "_id": key_id, "name": call.body["name"], "role": call.body["role"],
            "site_id": site_id, "created_at": now(), "revoked_at": None,
            "created_by": call.principal.id,
            "secret_hash": credentials.hash_secret(secret)})
        return dict(key, key=domain.format_api_key(key_id, secret))

    @endpoint("GET", "/api/v1/api-keys", summary="API keys (never their secrets)",
              permission="api_keys:manage", response=ApiKeySchema, many=True)
    def list_api_keys(self, call):
        return store.ApiKeys(self.db).list(call.principal.site_id)

    @endpoint("DELETE", "/api/v1/api-keys/<id>", summary="Revoke an API key",
              status=204, permission="api_keys:manage", errors=(404,))
    def revoke_api_key(self, call, id):
        key = store.ApiKeys(self.db).revoke(id, call.principal.site_id, now())
        if key is None:
            raise NotFound(f"No active API key {id}.")
        if key["role"] == domain.INTEGRATOR:
            # Its AMQP queue and broker user go with it.
            self.integration_broker.revoke(*queue_names(key["site_id"], key["_id"]))

    @endpoint("GET", "/api/v1/audit", summary="The audit log, newest first",
              permission="audit:read", query=AuditQuerySchema,
              response=AuditEntrySchema, many=True)
    def read_audit(self, call):
        limit, action = call.query["limit"], call.query["action"]
        if call.principal.is_national:
            return store.AuditLog(self.db).recent(limit, action)
        return store.SiteAuditLog(self.db, call.principal.site_id).recent(limit, action)

    def _require_site(self, site_id):
        if site_id is not None and store.Sites(self.db).get(site_id) is None:
            raise ValidationFailed("No such site.", {"site_id": [f"no site {site_id}"]})

    # -- for other services (RPC): who to tell at a site ------------------------

    @rpc
    def staff_contacts(self, site_id):
        """The site's coordinators, for messaging to reach them (personal
        data crosses RPC, never events)."""
        return [{"user_id": user["_id"], "name": user.get("name"), "email": user["email"],
                 "role": user["role"]}
                for user in store.Users(self.db).list(site_id)
                if user["role"] == domain.SITE_COORDINATOR]

    @rpc
    def site_settings(self, site_id):
        """A site's settings (no personal data), or None for no such site."""
        site = store.Sites(self.db).get(site_id)
        return None if site is None else SiteSchema().dump(site)
