"""Referrals through the real gateway over HTTP, on the real broker and
datastore: intake (API key, coordinator, self-referral), encryption at rest,
eligibility, duplicates, triage with its events, the queue, safeguarding,
bad input, site isolation."""
from datetime import timedelta

import pytest
from nameko.standalone.rpc import ServiceRpcProxy

from services.referrals.service import ReferralsService
from shared.errors import NotFound
from tests.support import (ADMIN, REFERRAL, assert_problem, encryption_settings,
                           referral_form)

SELF_LIMIT = 4
PARENT_SECRETS = ("Alex Parent", "07700 900123", "07700900123", "alex@example.test",
                  "CM1 2AB", "1995-04-12", "Feels alone", "Sam Midwife")


class World:
    pass


@pytest.fixture
def rw(start_service, start_gateway, mongo_client):
    """Two sites (Essex: CM1, CM2; Derby: DE22), their coordinators, an Essex
    referrer API key, and the referrals service's own database."""
    _, config = start_service(ReferralsService, ENCRYPTION=encryption_settings())
    api, _ = start_gateway(RATE_LIMITS={
        "login": {"LIMIT": 50, "WINDOW_SECONDS": 60},
        "self_referral": {"LIMIT": SELF_LIMIT, "WINDOW_SECONDS": 3600}})
    admin = api.login(*ADMIN)
    world = World()
    world.api, world.admin, world.sites, world.tokens = api, admin, {}, {}
    for code, districts, limit in (("essex", ["CM1", "cm2"], None), ("derby", ["DE22"], 24)):
        body = {"name": code.title(), "code": code, "catchment": districts}
        if limit:
            body["child_age_limit_months"] = limit
        answer = api.call("POST", "/api/v1/sites", admin, json=body)
        assert answer.status_code == 201, answer.text
        assert answer.json()["child_age_limit_months"] == (limit or 12)
        world.sites[code] = answer.json()["id"]
        email = f"coord@{code}.test"
        assert api.call("POST", "/api/v1/users", admin, json={
            "email": email, "name": f"{code} coordinator", "password": "a long enough pw",
            "role": "site_coordinator", "site_id": world.sites[code]}).status_code == 201
        world.tokens[code] = api.login(email, "a long enough pw")
    world.essex, world.derby = world.tokens["essex"], world.tokens["derby"]
    world.key = api.call("POST", "/api/v1/api-keys", world.essex, json={
        "name": "Essex maternity unit", "role": "referrer"}).json()["key"]
    world.db = mongo_client[config["MONGODB_DATABASE"]]
    world.config = config
    return world


def refer(rw, token=None, key=None, status=201, **changes):
    answer = rw.api.call("POST", "/api/v1/referrals", token, key=key,
                         json=referral_form(**changes))
    assert answer.status_code == status, answer.text
    return answer.json()


def triage(rw, referral, action, status=200, token=None, **extra):
    answer = rw.api.call("POST", f"/api/v1/referrals/{referral['id']}/triage",
                         token or rw.essex,
                         json=dict(action=action, version=referral["version"], **extra))
    assert answer.status_code == status, answer.text
    return answer.json()


def test_intake_by_api_key_and_by_coordinator_is_encrypted_at_rest(rw, broker):
    listener = broker.listen("referral.*")
    by_key = refer(rw, key=rw.key)
    assert by_key["site_id"] == rw.sites["essex"]
    assert by_key["status"] == "received" and by_key["version"] == 1
    assert by_key["name"] == "Alex Parent" and by_key["phone"] == "07700 900123"
    assert by_key["postcode"] == "CM1 2AB" and by_key["area"] == "CM1"
    assert by_key["eligibility"] == {"eligible": True, "reasons": []}
    assert by_key["needs_signposting"] is False
    assert by_key["linked_to_existing_parent"] is False
    assert by_key["allowed_actions"] == ["start_triage", "withdraw"]
    assert by_key["consent"]["obtained_how"] == "verbal"
    by_coordinator = refer(rw, rw.essex, name="Bea Other", phone="07700 900999",
                           email=None, date_of_birth="1990-01-01",
                           due_date=None, baby_date_of_birth="2026-08-01",
                           preferred_language="pl", interpreter_needed=True)
    assert by_coordinator["baby_date_of_birth"] == "2026-08-01"
    assert by_coordinator["email"] is None
    read = rw.api.call("GET", f"/api/v1/referrals/{by_key['id']}", rw.essex).json()
    assert read["name"] == "Alex Parent" and read["reason"].startswith("Feels alone")
    assert read["referrer_name"] == "Sam Midwife"
    # The events carry the area and facts, never the person.
    events = [broker.get(listener), broker.get(listener)]
    assert {e["data"]["referral_id"] for e in events} == {by_key["id"], by_coordinator["id"]}
    assert {e["data"]["area"] for e in events} == {"CM1"}
    for secret in PARENT_SECRETS + ("Bea Other",):
        assert secret not in str(events)
    # What MongoDB holds: ciphertext and lookup keys, no plaintext.
    stored = rw.db.referrals.find_one({"_id": by_key["id"]})
    parent = rw.db.parents.find_one({"_id": by_key["parent_id"]})
    assert stored["personal"]["name"].startswith("v1:")
    assert parent["personal"]["phone"].startswith("v1:")
    assert set(parent["lookup"]) == {"phone", "dob_postcode", "exact"}
    for document in (stored, parent, *rw.db.parents.find(), *rw.db.referrals.find()):
        for secret in PARENT_SECRETS + ("Bea Other", "900999"):
            assert secret not in str(document), secret


def test_outside_the_catchment_or_age_limit_is_kept_and_flagged(rw):
    far = refer(rw, rw.essex, postcode="SW1A 1AA")
    assert far["status"] == "received" and far["needs_signposting"] is True
    assert far["eligibility"] == {"eligible": False, "reasons": ["outside_catchment"]}
    older = refer(rw, rw.essex, name="Cy Third", phone="07700 900333",
                  due_date=None, baby_date_of_birth="2025-01-01")
    assert older["eligibility"]["reasons"] == ["baby_over_age_limit"]
    # Derby's own limit is 24 months: the same baby is eligible there.
    there = refer(rw, rw.derby, postcode="DE22 3NE", due_date=None,
                  baby_date_of_birth="2025-01-01")
    assert there["eligibility"] == {"eligible": True, "reasons": []}
    queue = rw.api.call("GET", "/api/v1/referrals", rw.essex).json()
    assert {r["id"]: r["needs_signposting"] for r in queue} == {
        far["id"]: True, older["id"]: True}


def test_the_same_parent_referred_again_is_linked_not_doubled(rw):
    first = refer(rw, rw.essex)
    # Same phone (written differently), another name: the same parent.
    by_phone = refer(rw, key=rw.key, name="A. Parent", phone="+44 7700 900123",
                     email=None)
    # Same date of birth and postcode, a close name, another phone.
    by_name = refer(rw, rw.essex, name="alex parrent", phone="07700 111222",
                    postcode="cm12ab")
    # Same date of birth and postcode but another name: someone else.
    other = refer(rw, rw.essex, name="Jordan Smith", phone="07700 333444")
    assert by_phone["linked_to_existing_parent"] and by_name["linked_to_existing_parent"]
    assert by_phone["parent_id"] == by_name["parent_id"] == first["parent_id"]
    assert not other["linked_to_existing_parent"]
    assert other["parent_id"] != first["parent_id"]
    assert rw.db.parents.count_documents({}) == 2
    assert rw.db.referrals.count_documents({}) == 4
    # Another site's parent is never linked to this one.
    derby = refer(rw, rw.derby, postcode="CM1 2AB")
    assert not derby["linked_to_existing_parent"]


def test_triage_path_with_its_events(rw, broker):
    listener = broker.listen("referral.*")
    referral = refer(rw, rw.essex, needs=["low_mood", "isolation"],
                     preferred_support=["video", "home_visit"], interpreter_needed=True,
                     preferred_language="pl")
    assert broker.get(listener)["type"] == "referral.received"
    referral = triage(rw, referral, "start_triage")
    assert referral["status"] == "in_triage" and referral["version"] == 2
    referral = triage(rw, referral, "accept")
    accepted = broker.get(listener)
    assert accepted["type"] == "referral.accepted"
    assert accepted["siteid"] == rw.sites["essex"] and accepted["subject"] == referral["id"]
    data = dict(accepted["data"])
    assert data.pop("accepted_at")
    assert data == {"referral_id": referral["id"], "preferred_language": "pl",
                    "interpreter_needed": True, "area": "CM1",
                    "needs": ["isolation", "low_mood"],
                    "preferred_support": ["home_visit", "video"], "due_month": "2027-03"}
    referral = triage(rw, referral, "match")
    referral = triage(rw, referral, "activate")
    referral = triage(rw, referral, "close", reason="completed")
    assert referral["status"] == "closed" and referral["close_reason"] == "completed"
    closed = broker.get(listener)
    assert closed["type"] == "referral.closed" and closed["data"]["reason"] == "completed"
    assert [h["status"] for h in referral["status_history"]] == [
        "received", "in_triage", "accepted", "matched", "active", "closed"]
    assert referral["status_history"][1]["by"]["role"] == "site_coordinator"
    # Decline, signpost, withdraw: each with its event.
    for action, extra, event_type in (
            ("decline", {"reason": "needs_exceed_service"}, "referral.declined"),
            ("signpost", {"signposted_to": "Home-Start Essex"}, "referral.signposted"),
            ("withdraw", {}, "referral.withdrawn")):
        other = refer(rw, rw.essex)
        assert broker.get(listener)["type"] == "referral.received"
        other = triage(rw, triage(rw, other, "start_triage"), action, **extra)
        event = broker.get(listener)
        assert event["type"] == event_type and event["data"]["referral_id"] == other["id"]
        assert "Home-Start" not in str(event)
    assert other["status"] == "withdrawn"
    signposted = rw.db.referrals.find_one({"status": "signposted"})
    assert signposted["personal"]["signposted_to"].startswith("v1:")
    read = rw.api.call("GET", f"/api/v1/referrals/{signposted['_id']}", rw.essex).json()
    assert read["signposted_to"] == "Home-Start Essex"


def test_illegal_moves_and_stale_versions_are_409_and_change_nothing(rw, broker):
    listener = broker.listen("referral.accepted")
    referral = refer(rw, rw.essex)
    problem = assert_problem(rw.api.call(
        "POST", f"/api/v1/referrals/{referral['id']}/triage", rw.essex,
        json={"action": "accept", "version": 1}), 409)
    assert "received" in problem["detail"]
    moved = triage(rw, referral, "start_triage")
    # The version read before the move is stale now.
    assert_problem(rw.api.call(
        "POST", f"/api/v1/referrals/{referral['id']}/triage", rw.essex,
        json={"action": "accept", "version": 1}), 409)
    assert_problem(rw.api.call(
        "POST", f"/api/v1/referrals/{referral['id']}/triage", rw.essex,
        json={"action": "activate", "version": moved["version"]}), 409)
    after = rw.api.call("GET", f"/api/v1/referrals/{referral['id']}", rw.essex).json()
    assert after["status"] == "in_triage" and after["version"] == 2
    assert broker.depth(listener) == 0
    # Site isolation and roles.
    assert_problem(rw.api.call(
        "POST", f"/api/v1/referrals/{referral['id']}/triage", rw.derby,
        json={"action": "accept", "version": 2}), 404)
    assert_problem(rw.api.call(
        "POST", f"/api/v1/referrals/{referral['id']}/triage", key=rw.key,
        json={"action": "accept", "version": 2}), 403)
    assert triage(rw, moved, "accept")["status"] == "accepted"


def test_the_coordinators_queue(rw):
    old = refer(rw, rw.essex, source="gp", referrer_name="Dr Who")
    new = refer(rw, rw.essex, name="Bea Other", phone="07700 900999")
    triage(rw, new, "start_triage")
    refer(rw, rw.derby, postcode="DE22 3NE")
    rw.db.referrals.update_one({"_id": old["id"]}, {"$set": {
        "received_at": rw.db.referrals.find_one({"_id": old["id"]})["received_at"]
        - timedelta(days=10)}})

    def queue(**query):
        answer = rw.api.call("GET", "/api/v1/referrals", rw.essex, params=query)
        assert answer.status_code == 200, answer.text
        return [r["id"] for r in answer.json()]

    assert queue() == [old["id"], new["id"]]     # oldest first, own site only
    assert queue(status="received") == [old["id"]]
    assert queue(status="in_triage") == [new["id"]]
    assert queue(source="gp") == [old["id"]]
    assert queue(source="midwife") == [new["id"]]
    assert queue(older_than_days=7) == [old["id"]]
    assert queue(older_than_days=11) == []
    summary = rw.api.call("GET", "/api/v1/referrals", rw.essex).json()[0]
    assert summary["name"] == "Alex Parent" and summary["age_days"] == 10
    assert_problem(rw.api.call("GET", "/api/v1/referrals", key=rw.key), 403)
    assert_problem(rw.api.call("GET", "/api/v1/referrals", rw.admin), 403)


def test_self_referral_is_public_answers_a_reference_and_is_rate_limited(rw):
    body = {k: v for k, v in REFERRAL.items() if k not in (
        "source", "referrer_name", "referrer_contact", "consent_obtained_at",
        "consent_obtained_how")}
    answer = rw.api.call("POST", "/api/v1/self-referrals", json=dict(body, site_code="essex"))
    assert answer.status_code == 201, answer.text
    receipt = answer.json()
    assert set(receipt) == {"id", "status", "message"} and "Alex" not in answer.text
    stored = rw.api.call("GET", f"/api/v1/referrals/{receipt['id']}", rw.essex).json()
    assert stored["source"] == "self" and stored["name"] == "Alex Parent"
    assert stored["consent"]["obtained_how"] == "self_referral"
    assert_problem(rw.api.call("GET", f"/api/v1/referrals/{receipt['id']}", rw.derby), 404)
    problem = assert_problem(rw.api.call("POST", "/api/v1/self-referrals",
                                         json=dict(body, site_code="nowhere")), 422)
    assert set(problem["errors"]) == {"site_code"}
    problem = assert_problem(rw.api.call("POST", "/api/v1/self-referrals", json=dict(
        body, site_code="essex", source="gp", postcode="x")), 422)
    assert set(problem["errors"]) == {"source", "postcode"}
    # A known parent referring again is linked, and the answer does not say so.
    again = rw.api.call("POST", "/api/v1/self-referrals", json=dict(body, site_code="essex"))
    assert again.status_code == 201 and set(again.json()) == {"id", "status", "message"}
    linked = rw.api.call("GET", f"/api/v1/referrals/{again.json()['id']}", rw.essex).json()
    assert linked["linked_to_existing_parent"] is True
    limited = assert_problem(rw.api.call("POST", "/api/v1/self-referrals",
                                         json=dict(body, site_code="essex")), 429)
    assert limited["status"] == 429
    assert rw.db.referrals.count_documents({}) == 2


def test_safeguarding_raised_acknowledged_resolved(rw, broker):
    listener = broker.listen("safeguarding.*")
    referral = refer(rw, rw.essex)
    path = f"/api/v1/referrals/{referral['id']}/safeguarding-concerns"
    answer = rw.api.call("POST", path, rw.essex, json={
        "severity": "urgent", "notes": "Bruising seen on the baby's arm"})
    assert answer.status_code == 201, answer.text
    concern = answer.json()
    assert concern["status"] == "open" and concern["notes"].startswith("Bruising")
    assert concern["referral_status"] == "received"
    raised = broker.get(listener)
    assert raised["type"] == "safeguarding.concern_raised"
    assert raised["data"]["concern_id"] == concern["id"]
    assert raised["data"]["severity"] == "urgent" and "Bruising" not in str(raised)
    other = rw.api.call("POST", path, rw.essex, json={"severity": "low", "notes": "x"}).json()
    assert broker.get(listener)["data"]["concern_id"] == other["id"]

    def listing(token=None, **query):
        answer = rw.api.call("GET", "/api/v1/safeguarding-concerns", token or rw.essex,
                             params=query)
        assert answer.status_code == 200, answer.text
        return answer.json()

    unseen = listing(unacknowledged="true")
    assert unseen["count"] == 2 and unseen["unacknowledged"] == 2
    assert {c["id"] for c in unseen["items"]} == {concern["id"], other["id"]}
    assert listing(rw.derby)["count"] == 0
    base = f"/api/v1/safeguarding-concerns/{concern['id']}"
    acknowledged = rw.api.call("POST", base + "/acknowledge", rw.essex,
                               json={"notes": "Called the parent"})
    assert acknowledged.status_code == 200, acknowledged.text
    assert acknowledged.json()["status"] == "acknowledged"
    assert acknowledged.json()["acknowledged_by"]["role"] == "site_coordinator"
    seen = broker.get(listener)
    assert seen["type"] == "safeguarding.concern_acknowledged"
    assert seen["data"]["concern_id"] == concern["id"]
    assert seen["data"]["severity"] == "urgent" and "Called" not in str(seen)
    assert_problem(rw.api.call("POST", base + "/acknowledge", rw.essex, json={}), 409)
    unseen = listing(unacknowledged="true")
    assert unseen["count"] == 1 and unseen["unacknowledged"] == 1
    assert [c["id"] for c in unseen["items"]] == [other["id"]]
    assert listing(unacknowledged="false")["count"] == 1
    resolved = rw.api.call("POST", base + "/resolve", rw.essex,
                           json={"notes": "Referred to children's services"})
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["resolution_notes"] == "Referred to children's services"
    event = broker.get(listener)
    assert event["type"] == "safeguarding.concern_resolved"
    assert "children" not in str(event)
    assert_problem(rw.api.call("POST", base + "/resolve", rw.essex,
                               json={"notes": "again"}), 409)
    assert listing(status="resolved")["count"] == 1
    assert listing(referral_id=referral["id"])["count"] == 2
    # Notes are ciphertext at rest; other sites and referrers get nothing.
    for stored in rw.db.safeguarding_concerns.find():
        for secret in ("Bruising", "Called the parent", "children"):
            assert secret not in str(stored)
    assert_problem(rw.api.call("GET", base, rw.derby), 404)
    assert_problem(rw.api.call("POST", base + "/acknowledge", rw.derby, json={}), 404)
    assert_problem(rw.api.call("POST", path, rw.derby, json={
        "severity": "low", "notes": "x"}), 404)
    assert_problem(rw.api.call("POST", path, key=rw.key, json={
        "severity": "low", "notes": "x"}), 403)
    assert rw.api.call("GET", base, rw.essex).json()["notes"].startswith("Bruising")


def test_bad_input_on_every_endpoint_is_422_and_stores_nothing(rw):
    referral = refer(rw, rw.essex)
    concern = rw.api.call("POST", f"/api/v1/referrals/{referral['id']}/safeguarding-concerns",
                          rw.essex, json={"severity": "low", "notes": "n"}).json()
    rid, cid = referral["id"], concern["id"]
    cases = [
        ("POST", "/api/v1/referrals", {"json": dict(REFERRAL, needs=["boredom"])}, {"needs"}),
        ("POST", "/api/v1/referrals", {"json": dict(REFERRAL, consent_to_share=False)},
         {"consent_to_share"}),
        ("POST", "/api/v1/referrals", {"json": dict(REFERRAL, date_of_birth="2031-01-01")},
         {"date_of_birth"}),
        ("POST", "/api/v1/referrals", {"json": dict(REFERRAL, site_id="x")}, {"site_id"}),
        ("POST", "/api/v1/referrals", {"json": ["a list"]}, {"_schema"}),
        ("GET", "/api/v1/referrals", {"params": {"status": "lost"}}, {"status"}),
        ("GET", "/api/v1/referrals", {"params": {"older_than_days": "-1"}},
         {"older_than_days"}),
        ("GET", "/api/v1/referrals", {"params": {"colour": "red"}}, {"colour"}),
        ("POST", f"/api/v1/referrals/{rid}/triage", {"json": {"action": "fly", "version": 1}},
         {"action"}),
        ("POST", f"/api/v1/referrals/{rid}/triage",
         {"json": {"action": "decline", "version": 1}}, {"reason"}),
        ("POST", f"/api/v1/referrals/{rid}/safeguarding-concerns",
         {"json": {"severity": "meh", "notes": ""}}, {"severity", "notes"}),
        ("GET", "/api/v1/safeguarding-concerns", {"params": {"unacknowledged": "perhaps"}},
         {"unacknowledged"}),
        ("POST", f"/api/v1/safeguarding-concerns/{cid}/acknowledge",
         {"json": {"notes": 5}}, {"notes"}),
        ("POST", f"/api/v1/safeguarding-concerns/{cid}/resolve", {"json": {}}, {"notes"}),
        ("POST", "/api/v1/self-referrals", {"json": {"site_code": "essex"}},
         {"name", "date_of_birth", "postcode", "first_time_parent", "consent_to_contact",
          "consent_to_share"}),
        ("POST", "/api/v1/self-referrals", {"json": dict(
            {k: v for k, v in REFERRAL.items() if k not in (
                "source", "referrer_name", "referrer_contact", "consent_obtained_at",
                "consent_obtained_how")}, site_code="nowhere")}, {"site_code"}),
        ("POST", "/api/v1/self-referrals", {"json": dict(REFERRAL, site_code="essex")},
         {"source", "referrer_name", "referrer_contact", "consent_obtained_at",
          "consent_obtained_how"}),
        ("GET", "/api/v1/safeguarding-concerns",
         {"params": {"status": "forgotten", "referral_id": "x" * 65}},
         {"status", "referral_id"}),
        ("POST", "/api/v1/referrals", {"json": REFERRAL,
                                       "headers": {"Idempotency-Key": "two words"}},
         {"Idempotency-Key"}),
    ]
    for method, path, kwargs, fields in cases:
        problem = assert_problem(rw.api.call(method, path, rw.essex, **kwargs), 422)
        if fields is not None:
            assert set(problem["errors"]) == fields, (path, problem)
    assert_problem(rw.api.call("POST", "/api/v1/referrals", rw.essex, data="{oops",
                               headers={"Content-Type": "application/json"}), 400)
    assert rw.db.referrals.count_documents({}) == 1
    assert rw.db.parents.count_documents({}) == 1
    assert rw.db.safeguarding_concerns.count_documents({}) == 1
    after = rw.api.call("GET", f"/api/v1/referrals/{rid}", rw.essex).json()
    assert after["status"] == "received" and after["version"] == 1
    # Unknown records are 404, not 500.
    for method, path, body in (
            ("GET", "/api/v1/referrals/nope", None),
            ("POST", "/api/v1/referrals/nope/triage", {"action": "accept", "version": 1}),
            ("POST", "/api/v1/referrals/nope/safeguarding-concerns",
             {"severity": "low", "notes": "n"}),
            ("POST", "/api/v1/safeguarding-concerns/nope/resolve", {"notes": "n"}),
            ("POST", "/api/v1/safeguarding-concerns/nope/acknowledge", {}),
            ("GET", "/api/v1/safeguarding-concerns/nope", None)):
        assert_problem(rw.api.call(method, path, rw.essex, json=body), 404)


def test_openapi_documents_the_referral_endpoints(rw):
    spec = rw.api.call("GET", "/api/v1/openapi.json").json()
    for path in ("/api/v1/referrals", "/api/v1/referrals/{id}/triage",
                 "/api/v1/self-referrals", "/api/v1/referrals/{id}/safeguarding-concerns",
                 "/api/v1/safeguarding-concerns",
                 "/api/v1/safeguarding-concerns/{id}/acknowledge",
                 "/api/v1/safeguarding-concerns/{id}/resolve"):
        assert path in spec["paths"], path
    triage_doc = spec["paths"]["/api/v1/referrals/{id}/triage"]["post"]
    assert "409" in triage_doc["responses"]
    assert triage_doc["requestBody"]["content"]["application/json"]["schema"]


def test_contact_details_for_messaging_are_decrypted_and_site_scoped(rw):
    referral = refer(rw, key=rw.key)
    answer = rw.api.call("POST", "/api/v1/self-referrals", json=dict(
        {k: v for k, v in REFERRAL.items() if k not in (
            "source", "referrer_name", "referrer_contact", "consent_obtained_at",
            "consent_obtained_how")}, site_code="essex", name="Jo Self",
        phone="07700 900999", email=None, preferred_language="pl"))
    assert answer.status_code == 201, answer.text
    own = answer.json()["id"]
    with ServiceRpcProxy("referrals", rw.config) as referrals:
        details = referrals.contact_details(rw.sites["essex"], referral["id"])
        assert details == {
            "parent": {"name": "Alex Parent", "email": "alex@example.test",
                       "phone": "07700 900123", "preferred_language": "en",
                       "consent_to_contact": True},
            "referrer": {"name": "Sam Midwife", "email": "sam.midwife@nhs.test",
                         "phone": None}}
        self_details = referrals.contact_details(rw.sites["essex"], own)
        assert self_details["referrer"] is None
        assert self_details["parent"] == {
            "name": "Jo Self", "email": None, "phone": "07700 900999",
            "preferred_language": "pl", "consent_to_contact": True}
        with pytest.raises(NotFound):
            referrals.contact_details(rw.sites["derby"], referral["id"])
        with pytest.raises(NotFound):
            referrals.contact_details(rw.sites["essex"], "no-such-referral")


def test_one_new_parent_referred_many_times_at_once_is_one_parent(rw):
    """The unique lookup keys: concurrent intakes of the same new parent
    make one parent and link every other referral to it."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda n: rw.api.call(
            "POST", "/api/v1/referrals", rw.essex,
            json=referral_form(reason=f"attempt {n}")), range(6)))
    assert [a.status_code for a in answers] == [201] * 6, [a.text for a in answers]
    made = [a.json() for a in answers]
    assert len({r["parent_id"] for r in made}) == 1
    assert sorted(r["linked_to_existing_parent"] for r in made) == [False] + [True] * 5
    assert rw.db.parents.count_documents({}) == 1
    assert rw.db.referrals.count_documents({}) == 6
    # Same phone, another name and date of birth: still that parent.
    again = refer(rw, rw.essex, name="Someone Else", date_of_birth="1980-02-02")
    assert again["parent_id"] == made[0]["parent_id"]


def test_an_idempotency_key_makes_a_retried_intake_harmless(rw, broker):
    listener = broker.listen("referral.received")
    key = {"Idempotency-Key": "8b0c5a46-2d1e-4c8e-9a57-1f7f3c2d9e10"}
    first = rw.api.call("POST", "/api/v1/referrals", rw.essex, json=REFERRAL, headers=key)
    assert first.status_code == 201, first.text
    again = rw.api.call("POST", "/api/v1/referrals", rw.essex, json=REFERRAL,
                        headers=dict(key))
    assert again.status_code == 201, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["linked_to_existing_parent"] is False
    assert rw.db.referrals.count_documents({}) == 1
    # The same key with another body is a conflict, naming the header.
    problem = assert_problem(rw.api.call("POST", "/api/v1/referrals", rw.essex, headers=key,
                                         json=referral_form(reason="Something else")), 409)
    assert "Idempotency-Key" in problem["errors"]
    # Keys are per site: Derby's same key is its own.
    derby = rw.api.call("POST", "/api/v1/referrals", rw.derby, json=referral_form(
        postcode="DE22 1AA"), headers=key)
    assert derby.status_code == 201 and derby.json()["id"] != first.json()["id"]
    # A referrer's API key of the same site shares the site's keys.
    by_key = rw.api.call("POST", "/api/v1/referrals", key=rw.key, json=REFERRAL, headers=key)
    assert by_key.status_code == 201 and by_key.json()["id"] == first.json()["id"]
    # Many at once with one key: one referral.
    from concurrent.futures import ThreadPoolExecutor
    burst = {"Idempotency-Key": "burst-1"}
    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(lambda _: rw.api.call(
            "POST", "/api/v1/referrals", rw.essex, headers=dict(burst),
            json=referral_form(name="Burst Parent", phone="07700 900777",
                               date_of_birth="1992-03-03")), range(5)))
    assert [a.status_code for a in answers] == [201] * 5, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert rw.db.referrals.count_documents({}) == 3
    # A bad key is a 422 naming the header, and makes nothing.
    for bad in ("x" * 201, "has space"):
        problem = assert_problem(rw.api.call("POST", "/api/v1/referrals", rw.essex,
                                             json=REFERRAL, headers={"Idempotency-Key": bad}),
                                 422)
        assert list(problem["errors"]) == ["Idempotency-Key"]
    assert rw.db.referrals.count_documents({}) == 3
    # Only the first of each key was announced.
    received = {broker.get(listener)["data"]["referral_id"] for _ in range(3)}
    assert first.json()["id"] in received
    assert broker.depth(listener) == 0


def test_a_self_referral_with_an_idempotency_key_is_made_once(rw):
    form = dict({k: v for k, v in REFERRAL.items() if k not in (
        "source", "referrer_name", "referrer_contact", "consent_obtained_at",
        "consent_obtained_how")}, site_code="essex")
    key = {"Idempotency-Key": "self-1"}
    first = rw.api.call("POST", "/api/v1/self-referrals", json=form, headers=key)
    again = rw.api.call("POST", "/api/v1/self-referrals", json=form, headers=dict(key))
    assert first.status_code == again.status_code == 201, again.text
    assert first.json()["id"] == again.json()["id"]
    assert rw.db.referrals.count_documents({}) == 1
    assert_problem(rw.api.call("POST", "/api/v1/self-referrals", headers=dict(key),
                               json=dict(form, name="Other Parent")), 409)


def test_the_triage_target_comes_from_the_site(rw, broker):
    listener = broker.listen("referral.received")
    referral = refer(rw, rw.essex)
    due = rw.api.call("GET", f"/api/v1/referrals/{referral['id']}", rw.essex).json()
    assert _days(due) == 5
    event = broker.get(listener)
    assert _when(event["data"]["triage_due_at"]) == _when(due["triage_due_at"])
    answer = rw.api.call("PATCH", f"/api/v1/sites/{rw.sites['essex']}", rw.admin,
                         json={"triage_target_days": 2})
    assert answer.status_code == 200, answer.text
    sooner = refer(rw, rw.essex, name="Other Parent", phone="07700 900444")
    assert _days(sooner) == 2
    queue = rw.api.call("GET", "/api/v1/referrals", rw.essex).json()
    assert {r["id"]: r["triage_due_at"] for r in queue}[sooner["id"]] == sooner["triage_due_at"]


def _when(text):
    from datetime import datetime
    return datetime.fromisoformat(text)


def _days(referral):
    """Days from received to the triage target (the database keeps milliseconds)."""
    gap = _when(referral["triage_due_at"]) - _when(referral["received_at"])
    assert abs(gap - timedelta(days=round(gap / timedelta(days=1)))) < timedelta(milliseconds=1)
    return round(gap / timedelta(days=1))


def test_the_unique_parent_keys_replace_the_old_indexes_and_survive_doubled_data(database):
    from services.referrals import store
    parents = database[store.PARENTS]
    parents.create_index([("site_id", 1), ("lookup.phone", 1)])   # as before
    parents.insert_one({"_id": "p1", "site_id": "s", "lookup": {"phone": "k1"}})
    store.ensure_indexes(database)
    assert parents.index_information()["site_id_1_lookup.phone_1"]["unique"]
    with pytest.raises(Exception):
        parents.insert_one({"_id": "p2", "site_id": "s", "lookup": {"phone": "k1"}})
    store.ensure_indexes(database)   # again: nothing to change

    # Parents doubled before the index: the service still starts (and finds them).
    doubled = database.client[database.name + "_doubled"]
    try:
        doubled[store.PARENTS].insert_many([
            {"_id": "p1", "site_id": "s", "lookup": {"phone": "k1"}},
            {"_id": "p2", "site_id": "s", "lookup": {"phone": "k1"}}])
        store.ensure_indexes(doubled)
        info = doubled[store.PARENTS].index_information()
        assert not info["site_id_1_lookup.phone_1"].get("unique")
        assert info["site_id_1_lookup.exact_1"]["unique"]
    finally:
        database.client.drop_database(database.name + "_doubled")
