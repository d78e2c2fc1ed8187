"""Referrals: checked here with the referrals service's own schema, then
forwarded to it over RPC with the caller's site."""
from services.gateway import domain
from services.gateway.api import endpoint
from services.referrals.schemas import NewReferralSchema, ReferralSchema


class ReferralEndpoints:
    @endpoint("POST", "/api/v1/referrals", summary="Refer a parent", status=201,
              permission="referrals:create", body=NewReferralSchema,
              response=ReferralSchema, forwarded=True,
              audit=("referral.create", "referral"))
    def create_referral(self, call):
        return self.referrals.create_referral(
            domain.site_scope(call.principal), NewReferralSchema().dump(call.body))

    @endpoint("GET", "/api/v1/referrals/<id>", summary="One referral",
              permission="referrals:read", response=ReferralSchema, forwarded=True,
              audit=("referral.read", "referral"), errors=(404,))
    def get_referral(self, call, id):
        return self.referrals.get_referral(domain.site_scope(call.principal), id)

