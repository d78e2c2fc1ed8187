"""The referrals service: entrypoints only."""
import hashlib
import json
import logging
import time
import uuid
from datetime import timedelta

import eventlet
from nameko.rpc import rpc
from pymongo.errors import DuplicateKeyError

from services.referrals import domain, store
from shared.crypto import Encryption
from services.referrals.schemas import (AcknowledgeSchema, ConcernListSchema,
                                        ContactDetailsSchema, IdempotencyKeySchema,
                                        ConcernQuerySchema, ConcernSchema,
                                        NewConcernSchema, NewReferralSchema,
                                        ReferralQuerySchema, ReferralSchema,
                                        ReferralSummarySchema, ResolveSchema,
                                        SelfReferralReceiptSchema,
                                        SelfReferralSchema, SiteRulesSchema,
                                        TriageSchema)
from shared.errors import DOMAIN_ERRORS, Conflict, NotFound
from shared.events import load_event
from shared.events.envelope import utcnow
from shared.inbox import Inbox
from shared.messaging import event_handler
from shared.observability import log_fields
from shared.outbox import Outbox
from shared.service_base import ServiceBase
from shared.storage import Database
from shared.validation import load_or_fail

log = logging.getLogger(__name__)

CONCERN_NOTES = ("notes", "acknowledgement_notes", "resolution_notes")
# How long a repeated intake waits for the first one with its key to finish.
KEY_WAIT_SECONDS = 10


def fingerprint(payload):
    """A request's fingerprint: the same key with another body is refused."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str)
                          .encode("utf-8")).hexdigest()


def _key(idempotency_key):
    if idempotency_key is None:
        return None
    return load_or_fail(IdempotencyKeySchema(), {"Idempotency-Key": idempotency_key})["key"]


class ReferralsService(ServiceBase):
    name = "referrals"

    db = Database(prepare=store.ensure_indexes)
    outbox = Outbox(store.REFERRALS, store.CONCERNS)
    cipher = Encryption()

    inbox = Inbox()

    # -- events from matching and journeys ------------------------------------

    @event_handler("matching", "match.confirmed")
    def on_match_confirmed(self, body):
        self._follow(body, "match.confirmed")

    @event_handler("matching", "match.ended")
    def on_match_ended(self, body):
        self._follow(body, "match.ended")

    @event_handler("journeys", "journey.started")
    def on_journey_started(self, body):
        self._follow(body, "journey.started")

    @event_handler("journeys", "journey.ended")
    def on_journey_ended(self, body):
        self._follow(body, "journey.ended")

    @event_handler("journeys", "outcome.recorded")
    def on_outcome_recorded(self, body):
        envelope, data = load_event(body, {"outcome.recorded"})
        if data["self_harm_risk"]:
            self.inbox.apply_once(envelope, lambda session: self._self_harm(
                envelope["siteid"], data, session))

    def _follow(self, body, event_type):
        envelope, data = load_event(body, {event_type})
        self.inbox.apply_once(envelope, lambda session: self._apply_event(
            envelope, data, session))

    def _apply_event(self, envelope, data, session):
        """What a match or journey event does to its referral. A move the
        referral's status does not allow is noted on it and logged, never
        retried into the dead letters: the state stays as it is."""
        site_id, referral_id = envelope["siteid"], data["referral_id"]
        fields_ = dict(event_id=envelope["id"], event_type=envelope["type"],
                       referral_id=referral_id, site_id=site_id)
        referrals = store.ReferralStore(self.db, site_id, session)
        referral = referrals.get(referral_id)
        if referral is None:
            log.warning("event about an unknown referral; nothing to change",
                        extra=log_fields(**fields_))
            return
        effect = domain.EVENT_MOVES[envelope["type"]](referral, envelope, data, utcnow())
        if effect.update is not None and referrals.apply(
                referral, effect.update, effect.events) is None:
            # Changed since read: the handler's retry reads it again.
            raise RuntimeError(f"referral {referral_id} changed meanwhile")
        level = logging.WARNING if effect.outcome == domain.REFUSED else logging.INFO
        log.log(level, f"event {effect.outcome}", extra=log_fields(
            detail=effect.detail, status=referral["status"], **fields_))

    def _self_harm(self, site_id, data, session):
        concerns = store.ConcernStore(self.db, site_id, session)
        concern_id = domain.self_harm_concern_id(site_id, data["outcome_id"])
        if concerns.get(concern_id) is not None:
            return   # once per outcome, however often it is announced
        referral = store.ReferralStore(self.db, site_id, session).get(data["referral_id"])
        concern, events = domain.self_harm_concern(
            referral, site_id, data["referral_id"], data["outcome_id"], utcnow())
        concern["notes"] = self.cipher.encrypt(site_id, "concern.notes", concern["notes"])
        concerns.add(concern, events)
        log.warning("safeguarding concern raised by an outcome measure", extra=log_fields(
            concern_id=concern_id, referral_id=data["referral_id"], site_id=site_id,
            outcome_id=data["outcome_id"], known_referral=referral is not None))

    # -- intake ---------------------------------------------------------------

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def create_referral(self, site_id, payload, site_rules, actor=None,
                        idempotency_key=None):
        """A referral by a professional or a coordinator. ``site_rules``:
        the site's catchment, child age limit and triage target, from the
        gateway. The same ``idempotency_key`` again answers the referral it
        made (a retried request or a redelivered RPC makes nothing new)."""
        form = load_or_fail(NewReferralSchema(), payload)
        referral = self._intake(site_id, form, site_rules, actor,
                                _key(idempotency_key), fingerprint(payload))
        return ReferralSchema().dump(self._view(referral))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def create_self_referral(self, site_id, payload, site_rules, idempotency_key=None):
        schema = SelfReferralSchema()
        form = schema.to_referral(load_or_fail(schema, payload), utcnow())
        referral = self._intake(site_id, form, site_rules, None,
                                _key(idempotency_key), fingerprint(payload))
        return SelfReferralReceiptSchema().dump({
            "id": referral["_id"], "status": referral["status"],
            "message": "Thank you: the site's coordinator will be in touch."})

    def _intake(self, site_id, form, site_rules, actor, key=None, print_=None):
        rules = load_or_fail(SiteRulesSchema(), site_rules,
                             "The site's rules are invalid.")
        intake_keys = store.IntakeKeys(self.db, site_id)
        if key is not None:
            used = intake_keys.get(key)
            if used is not None:
                return self._replay(site_id, intake_keys, key, print_)
        now = utcnow()
        parents = store.ParentStore(self.db, site_id)
        keys = {name: self.cipher.lookup_key(site_id, name, value)
                for name, value in domain.lookup_values(form).items()}
        existing = self._known_parent(site_id, parents, form, keys)
        parent_id = existing or str(uuid.uuid4())
        # Pure and checked (dates included) before anything is written.
        referral, events = domain.receive_referral(
            site_id, form, str(uuid.uuid4()), now, site_rules=rules,
            parent_id=parent_id, linked=existing is not None, actor=actor)
        referral["personal"] = self.cipher.encrypt_fields(
            site_id, referral["personal"], "referral.")
        if key is not None:
            try:
                intake_keys.claim(key, print_, referral["_id"], now)
            except DuplicateKeyError:   # the same request, at the same time
                return self._replay(site_id, intake_keys, key, print_)
        created_parent = False
        try:
            if existing is None:
                created_parent = self._add_parent(site_id, parents, form, keys,
                                                  referral, now)
            store.ReferralStore(self.db, site_id).add(referral, events)
        except Exception:
            if created_parent:
                parents.remove(referral["parent_id"])   # no parent without a referral
            if key is not None:
                intake_keys.release(key)
            raise
        log.info("referral received", extra=log_fields(
            referral_id=referral["_id"], site_id=site_id,
            linked=referral["linked_to_existing_parent"],
            needs_signposting=referral["needs_signposting"]))
        return referral

    def _known_parent(self, site_id, parents, form, keys):
        phone_matches = [p["_id"] for p in parents.by_lookup("phone", keys["phone"])]
        dob_matches = [
            (p["_id"], self.cipher.decrypt(site_id, "parent.name", p["personal"]["name"]))
            for p in parents.by_lookup("dob_postcode", keys["dob_postcode"])]
        return domain.existing_parent(form["name"], phone_matches, dob_matches)

    def _add_parent(self, site_id, parents, form, keys, referral, now):
        """Add the referral's parent; True if added. Two intakes of one new
        parent at once: the unique lookup keys let one in, and the other's
        referral is linked to it."""
        parent = domain.new_parent(site_id, form, referral["parent_id"], now)
        parent["personal"] = self.cipher.encrypt_fields(
            site_id, parent["personal"], "parent.")
        parent["lookup"] = keys
        try:
            parents.add(parent)
            return True
        except DuplicateKeyError:
            holder = parents.holder_of(keys)
            if holder is None:
                raise
            referral.update(parent_id=holder["_id"], linked_to_existing_parent=True)
            return False

    def _replay(self, site_id, intake_keys, key, print_):
        """The referral an earlier intake with this key made (waiting for it
        if that intake is still under way)."""
        deadline = time.monotonic() + KEY_WAIT_SECONDS
        while True:
            used = intake_keys.get(key)
            if used is not None and used["fingerprint"] != print_:
                raise Conflict("This Idempotency-Key was used for a different request.",
                               {"Idempotency-Key": ["already used with another body"]})
            referral = (store.ReferralStore(self.db, site_id).get(used["referral_id"])
                        if used else None)
            if referral is not None:
                log.info("intake repeated with its key; nothing new made",
                         extra=log_fields(referral_id=referral["_id"], site_id=site_id))
                return referral
            if used is None or time.monotonic() > deadline:
                raise Conflict("A request with this Idempotency-Key did not finish: "
                               "send it again.", {"Idempotency-Key": ["not finished"]})
            eventlet.sleep(0.05)

    # -- reading --------------------------------------------------------------

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def get_referral(self, site_id, referral_id):
        return ReferralSchema().dump(self._view(self._referral(site_id, referral_id)))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def contact_details(self, site_id, referral_id):
        """How to reach the parent and the referrer, for messaging (personal
        data crosses RPC, never events); another site's referral is not found."""
        referral = self._referral(site_id, referral_id)
        personal = self.cipher.decrypt_fields(site_id, {
            f: referral["personal"].get(f) for f in
            ("name", "email", "phone", "referrer_name", "referrer_contact")}, "referral.")
        return ContactDetailsSchema().dump(domain.contact_details(referral, personal))

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
        if not domain.may_raise_concern(referral, actor):
            raise NotFound(f"No referral {referral_id}.")   # not one of theirs
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
        view.setdefault("match", None)   # referrals from before these fields
        view.setdefault("event_anomalies", [])
        view.setdefault("triage_due_at", None)
        return view

    def _concern_view(self, concern):
        view = {k: v for k, v in concern.items() if k != "_id"}
        for field in CONCERN_NOTES:
            view[field] = self.cipher.decrypt(concern["site_id"], f"concern.{field}",
                                              concern.get(field))
        view["id"] = concern["_id"]
        return view
