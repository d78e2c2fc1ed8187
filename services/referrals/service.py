"""The referrals service: entrypoints only."""
import logging
import uuid

from nameko.rpc import rpc

from services.referrals import domain, store
from services.referrals.schemas import NewReferralSchema, ReferralSchema
from shared.errors import DOMAIN_ERRORS, NotFound
from shared.events.envelope import utcnow
from shared.outbox import Outbox
from shared.service_base import ServiceBase
from shared.storage import Database
from shared.observability import log_fields
from shared.validation import load_or_fail

log = logging.getLogger(__name__)


class ReferralsService(ServiceBase):
    name = "referrals"

    db = Database(prepare=store.ensure_indexes)
    outbox = Outbox(store.REFERRALS)

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def create_referral(self, site_id, payload):
        form = load_or_fail(NewReferralSchema(), payload)
        referral, events = domain.receive_referral(
            site_id, form, referral_id=str(uuid.uuid4()), now=utcnow())
        store.ReferralStore(self.db, site_id).add(referral, events)
        log.info("referral received", extra=log_fields(
            referral_id=referral["_id"], site_id=site_id))
        return ReferralSchema().dump(referral)

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def get_referral(self, site_id, referral_id):
        referral = store.ReferralStore(self.db, site_id).get(referral_id)
        if referral is None:
            raise NotFound(f"No referral {referral_id}.")
        return ReferralSchema().dump(referral)
