"""Referrals, triage and safeguarding concerns: checked here with the
referrals service's own schemas, then forwarded to it over RPC with the
caller's site (and, for intake, the site's catchment and age limit: the
gateway owns sites)."""
from services.gateway import domain, store
from services.gateway.api import endpoint
from services.referrals.schemas import (AcknowledgeSchema, ConcernListSchema,
                                        ConcernQuerySchema, ConcernSchema,
                                        IdempotencyKeySchema, NewConcernSchema, NewReferralSchema,
                                        ReferralQuerySchema, ReferralSchema,
                                        ReferralSummarySchema, ResolveSchema,
                                        SelfReferralReceiptSchema,
                                        SelfReferralSchema, TriageSchema)
from marshmallow import ValidationError

from shared.errors import NotFound, ValidationFailed


def _actor(principal):
    return {"id": principal.id, "role": principal.role} if principal else None


def _site_rules(site):
    return {"catchment": list(site["catchment"]),
            "child_age_limit_months": int(site.get("child_age_limit_months") or 12),
            "triage_target_days": int(site.get("triage_target_days") or 5)}


def _idempotency_key(call):
    """The ``Idempotency-Key`` header, checked (422 naming it) if given."""
    key = call.request.headers.get("Idempotency-Key")
    if key is None:
        return None
    try:
        return IdempotencyKeySchema().load({"Idempotency-Key": key})["key"]
    except ValidationError as error:
        raise ValidationFailed("The request has invalid fields.", error.messages)


IDEMPOTENCY_KEY = (("Idempotency-Key",
                    "makes a retry safe: the same key again answers the referral it "
                    "made and creates nothing; with another body, 409"),)


class ReferralEndpoints:
    @endpoint("POST", "/api/v1/referrals",
              summary="Refer a parent. An Idempotency-Key header makes a retry "
                      "safe: the same key again answers the referral it made; with "
                      "another body it is 409", status=201,
              permission="referrals:create", body=NewReferralSchema,
              response=ReferralSchema, forwarded=True, headers=IDEMPOTENCY_KEY,
              errors=(409,), audit=("referral.create", "referral"))
    def create_referral(self, call):
        site_id = domain.site_scope(call.principal)
        site = store.Sites(self.db).get(site_id)
        if site is None:
            raise NotFound(f"No site {site_id}.")
        return self.referrals.create_referral(
            site_id, NewReferralSchema().dump(call.body), _site_rules(site),
            _actor(call.principal), _idempotency_key(call))

    @endpoint("POST", "/api/v1/self-referrals",
              summary="A parent refers themselves to a site (public, rate-limited "
                      "per client address); the answer is only a reference. "
                      "Idempotency-Key as for referrals",
              status=201, public=True, rate_limit="self_referral",
              body=SelfReferralSchema, response=SelfReferralReceiptSchema,
              forwarded=True, audit=("referral.self_create", "referral"),
              headers=IDEMPOTENCY_KEY, errors=(409, 429))
    def create_self_referral(self, call):
        site = store.Sites(self.db).collection.find_one({"code": call.body["site_code"]})
        if site is None:
            raise ValidationFailed("The request has invalid fields.",
                                   {"site_code": ["No site has this code."]})
        return self.referrals.create_self_referral(
            site["_id"], SelfReferralSchema().dump(call.body), _site_rules(site),
            _idempotency_key(call))

    @endpoint("GET", "/api/v1/referrals",
              summary="The coordinator's queue: the site's referrals, oldest first, "
                      "by status, source and age",
              permission="referrals:read", query=ReferralQuerySchema,
              response=ReferralSummarySchema, many=True, forwarded=True,
              audit=("referral.list", "referral"))
    def list_referrals(self, call):
        return self.referrals.list_referrals(
            domain.site_scope(call.principal),
            ReferralQuerySchema().dump(call.query))

    @endpoint("GET", "/api/v1/referrals/<id>", summary="One referral",
              permission="referrals:read", response=ReferralSchema, forwarded=True,
              audit=("referral.read", "referral"), errors=(404,))
    def get_referral(self, call, id):
        return self.referrals.get_referral(domain.site_scope(call.principal), id)

    @endpoint("POST", "/api/v1/referrals/<id>/triage",
              summary="Move a referral through triage: start_triage, accept, decline "
                      "(reason), signpost (signposted_to), withdraw, match, activate, "
                      "close (reason); send the version you read. An illegal move or "
                      "a stale version is 409",
              permission="referrals:triage", body=TriageSchema,
              response=ReferralSchema, forwarded=True,
              audit=("referral.triage", "referral"), errors=(404, 409))
    def triage_referral(self, call, id):
        return self.referrals.triage_referral(
            domain.site_scope(call.principal), id, TriageSchema().dump(call.body),
            _actor(call.principal))

    @endpoint("POST", "/api/v1/referrals/<id>/safeguarding-concerns",
              summary="Raise a safeguarding concern about a referred parent, at any "
                      "stage: a coordinator, or the volunteer matched to the parent "
                      "(another referral is 404 to a volunteer)",
              status=201, permission="safeguarding:raise", body=NewConcernSchema,
              response=ConcernSchema, forwarded=True,
              audit=("safeguarding.raise", "referral"), errors=(404,))
    def raise_concern(self, call, id):
        return self.referrals.raise_concern(
            domain.site_scope(call.principal), id, NewConcernSchema().dump(call.body),
            _actor(call.principal))

    @endpoint("GET", "/api/v1/safeguarding-concerns",
              summary="The site's safeguarding concerns (unacknowledged=true for the "
                      "ones nobody has seen), with counts",
              permission="referrals:triage", query=ConcernQuerySchema,
              response=ConcernListSchema, forwarded=True,
              audit=("safeguarding.list", "safeguarding_concern"))
    def list_concerns(self, call):
        return self.referrals.list_concerns(
            domain.site_scope(call.principal), ConcernQuerySchema().dump(call.query))

    @endpoint("GET", "/api/v1/safeguarding-concerns/<id>",
              summary="One safeguarding concern", permission="referrals:triage",
              response=ConcernSchema, forwarded=True,
              audit=("safeguarding.read", "safeguarding_concern"), errors=(404,))
    def get_concern(self, call, id):
        return self.referrals.get_concern(domain.site_scope(call.principal), id)

    @endpoint("POST", "/api/v1/safeguarding-concerns/<id>/acknowledge",
              summary="Acknowledge a safeguarding concern (optional notes)",
              permission="referrals:triage", body=AcknowledgeSchema,
              response=ConcernSchema, forwarded=True,
              audit=("safeguarding.acknowledge", "safeguarding_concern"),
              errors=(404, 409))
    def acknowledge_concern(self, call, id):
        return self.referrals.acknowledge_concern(
            domain.site_scope(call.principal), id, AcknowledgeSchema().dump(call.body),
            _actor(call.principal))

    @endpoint("POST", "/api/v1/safeguarding-concerns/<id>/resolve",
              summary="Resolve a safeguarding concern, with notes",
              permission="referrals:triage", body=ResolveSchema,
              response=ConcernSchema, forwarded=True,
              audit=("safeguarding.resolve", "safeguarding_concern"),
              errors=(404, 409))
    def resolve_concern(self, call, id):
        return self.referrals.resolve_concern(
            domain.site_scope(call.principal), id, ResolveSchema().dump(call.body),
            _actor(call.principal))
