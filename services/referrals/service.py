"""The referrals service: entrypoints only."""
import logging
import uuid
from datetime import timedelta

from nameko.rpc import rpc

from services.referrals import domain, store
from shared.crypto import Encryption
from services.referrals.schemas import (AcknowledgeSchema, ConcernListSchema,
                                        ConcernQuerySchema, ConcernSchema,
                                        NewConcernSchema, NewReferralSchema,
                                        ReferralQuerySchema, ReferralSchema,
                                        ReferralSummarySchema, ResolveSchema,
                                        SelfReferralReceiptSchema,
                                        SelfReferralSchema, SiteRulesSchema,
                                        TriageSchema)
from shared.errors import DOMAIN_ERRORS, Conflict, NotFound
from shared.events.envelope import utcnow
from shared.observability import log_fields
from shared.outbox import Outbox
from shared.service_base import ServiceBase
from shared.storage import Database
from shared.validation import load_or_fail

log = logging.getLogger(__name__)

CONCERN_NOTES = ("notes", "acknowledgement_notes", "resolution_notes")


class ReferralsService(ServiceBase):
    name = "referrals"

    db = Database(prepare=store.ensure_indexes)
    outbox = Outbox(store.REFERRALS, store.CONCERNS)
    cipher = Encryption()

    # -- intake ---------------------------------------------------------------

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def create_referral(self, site_id, payload, site_rules, actor=None):
        """A referral by a professional or a coordinator. ``site_rules``:
        the site's catchment and child age limit, from the gateway."""
        form = load_or_fail(NewReferralSchema(), payload)
        referral = self._intake(site_id, form, site_rules, actor)
        return ReferralSchema().dump(self._view(referral))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def create_self_referral(self, site_id, payload, site_rules):
        schema = SelfReferralSchema()
        form = schema.to_referral(load_or_fail(schema, payload), utcnow())
        referral = self._intake(site_id, form, site_rules, None)
        return SelfReferralReceiptSchema().dump({
            "id": referral["_id"], "status": referral["status"],
            "message": "Thank you: the site's coordinator will be in touch."})

    def _intake(self, site_id, form, site_rules, actor):
        rules = load_or_fail(SiteRulesSchema(), site_rules,
                             "The site's rules are invalid.")
        now = utcnow()
        parents = store.ParentStore(self.db, site_id)
        keys = {name: self.cipher.lookup_key(site_id, name, value)
                for name, value in domain.lookup_values(form).items()}
        phone_matches = [p["_id"] for p in parents.by_lookup("phone", keys["phone"])]
        dob_matches = [
            (p["_id"], self.cipher.decrypt(site_id, "parent.name", p["personal"]["name"]))
            for p in parents.by_lookup("dob_postcode", keys["dob_postcode"])]
        existing = domain.existing_parent(form["name"], phone_matches, dob_matches)
        parent_id = existing or str(uuid.uuid4())
        # Pure and checked (dates included) before anything is written.
        referral, events = domain.receive_referral(
            site_id, form, str(uuid.uuid4()), now, site_rules=rules,
            parent_id=parent_id, linked=existing is not None, actor=actor)
        referral["personal"] = self.cipher.encrypt_fields(
            site_id, referral["personal"], "referral.")
        if existing is None:
            parent = domain.new_parent(site_id, form, parent_id, now)
            parent["personal"] = self.cipher.encrypt_fields(
                site_id, parent["personal"], "parent.")
            parent["lookup"] = keys
            parents.add(parent)
        try:
            store.ReferralStore(self.db, site_id).add(referral, events)
        except Exception:
            if existing is None:
                parents.remove(parent_id)   # no parent without a referral
            raise
        log.info("referral received", extra=log_fields(
            referral_id=referral["_id"], site_id=site_id,
            linked=existing is not None, needs_signposting=referral["needs_signposting"]))
        return referral

    # -- reading --------------------------------------------------------------

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def get_referral(self, site_id, referral_id):
        return ReferralSchema().dump(self._view(self._referral(site_id, referral_id)))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def list_referrals(self, site_id, query):
        query = load_or_fail(ReferralQuerySchema(), query)
        now = utcnow()
        before = (now - timedelta(days=query["older_than_days"])
                  if query["older_than_days"] is not None else None)
        found = store.ReferralStore(self.db, site_id).queue(
            query["status"], query["source"], before, query["limit"])
        return ReferralSummarySchema(many=True).dump([
            dict(referral, id=referral["_id"],
                 name=self.cipher.decrypt(site_id, "referral.name",
                                          referral["personal"]["name"]),
                 age_days=(now - referral["received_at"]).days)
            for referral in found])

    # -- triage -----------------------------------------------------------------

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def triage_referral(self, site_id, referral_id, payload, actor=None):
        form = load_or_fail(TriageSchema(), payload)
        referrals = store.ReferralStore(self.db, site_id)
        referral = self._referral(site_id, referral_id)
        if referral["version"] != form["version"]:
            raise Conflict(f"The referral is at version {referral['version']}, not "
                           f"{form['version']}: read it again and retry.")
        update, events = domain.triage(
            referral, form["action"], utcnow(), reason=form["reason"],
            signposted_to=form["signposted_to"], actor=actor)
        if "personal.signposted_to" in update["$set"]:
            update["$set"]["personal.signposted_to"] = self.cipher.encrypt(
                site_id, "referral.signposted_to", update["$set"]["personal.signposted_to"])
        moved = referrals.move(referral_id, form["version"], referral["status"],
                               update, events)
        log.info("referral moved", extra=log_fields(
            referral_id=referral_id, site_id=site_id, status=moved["status"]))
        return ReferralSchema().dump(self._view(moved))

    # -- safeguarding -------------------------------------------------------------

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def raise_concern(self, site_id, referral_id, payload, actor=None):
        form = load_or_fail(NewConcernSchema(), payload)
        referral = self._referral(site_id, referral_id)
        concern, events = domain.raise_concern(
            referral, str(uuid.uuid4()), form["severity"], form["notes"], utcnow(), actor)
        concern["notes"] = self.cipher.encrypt(site_id, "concern.notes", concern["notes"])
        concern = store.ConcernStore(self.db, site_id).add(concern, events)
        log.warning("safeguarding concern raised", extra=log_fields(
            concern_id=concern["_id"], referral_id=referral_id, site_id=site_id,
            severity=concern["severity"]))
        return ConcernSchema().dump(self._concern_view(concern))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def acknowledge_concern(self, site_id, concern_id, payload, actor=None):
        form = load_or_fail(AcknowledgeSchema(), payload)
        concerns = store.ConcernStore(self.db, site_id)
        concern = self._concern(concerns, concern_id)
        update, events = domain.acknowledge_concern(
            concern, utcnow(), self.cipher.encrypt(
                site_id, "concern.acknowledgement_notes", form["notes"]), actor)
        return ConcernSchema().dump(self._concern_view(
            concerns.change(concern, update, events)))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def resolve_concern(self, site_id, concern_id, payload, actor=None):
        form = load_or_fail(ResolveSchema(), payload)
        concerns = store.ConcernStore(self.db, site_id)
        concern = self._concern(concerns, concern_id)
        update, events = domain.resolve_concern(
            concern, utcnow(), self.cipher.encrypt(
                site_id, "concern.resolution_notes", form["notes"]), actor)
        return ConcernSchema().dump(self._concern_view(
            concerns.change(concern, update, events)))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def get_concern(self, site_id, concern_id):
        concerns = store.ConcernStore(self.db, site_id)
        return ConcernSchema().dump(self._concern_view(self._concern(concerns, concern_id)))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def list_concerns(self, site_id, query):
        query = load_or_fail(ConcernQuerySchema(), query)
        concerns = store.ConcernStore(self.db, site_id)
        filter_ = {}
        if query["unacknowledged"] is True:
            filter_["status"] = domain.OPEN
        elif query["unacknowledged"] is False:
            filter_["status"] = {"$ne": domain.OPEN}
        if query["status"]:
            if query["unacknowledged"] is not None and (
                    (query["status"] == domain.OPEN) != query["unacknowledged"]):
                filter_["status"] = {"$in": []}   # contradictory: nothing matches
            else:
                filter_["status"] = query["status"]
        if query["referral_id"]:
            filter_["referral_id"] = query["referral_id"]
        items = concerns.listing(filter_)
        return ConcernListSchema().dump({
            "count": concerns.count(filter_),
            "unacknowledged": concerns.count({"status": domain.OPEN}),
            "items": [self._concern_view(c) for c in items]})

    # -- helpers ----------------------------------------------------------------

    def _referral(self, site_id, referral_id):
        referral = store.ReferralStore(self.db, site_id).get(referral_id)
        if referral is None:
            raise NotFound(f"No referral {referral_id}.")
        return referral

    def _concern(self, concerns, concern_id):
        concern = concerns.get(concern_id)
        if concern is None:
            raise NotFound(f"No safeguarding concern {concern_id}.")
        return concern

    def _view(self, referral):
        """The referral with its personal fields decrypted, flat."""
        view = {k: v for k, v in referral.items() if k not in ("personal", "_id")}
        view.update(self.cipher.decrypt_fields(
            referral["site_id"], referral["personal"], "referral."))
        view["id"] = referral["_id"]
        view["allowed_actions"] = domain.allowed_actions(referral["status"])
        return view

    def _concern_view(self, concern):
        view = {k: v for k, v in concern.items() if k != "_id"}
        for field in CONCERN_NOTES:
            view[field] = self.cipher.decrypt(concern["site_id"], f"concern.{field}",
                                              concern.get(field))
        view["id"] = concern["_id"]
        return view
