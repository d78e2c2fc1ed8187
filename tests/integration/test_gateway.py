"""The gateway through real HTTP, with the referrals service behind it on
the real broker and datastore: identity, roles, site isolation, API keys,
audit, rate limits, problem+json and the OpenAPI document."""
import time

import pytest
from openapi_spec_validator import validate

from services.gateway.service import GatewayService
from services.referrals.service import ReferralsService
from tests.support import (ADMIN, REFERRAL, assert_problem, encryption_settings,
                           gateway_settings)

def test_login_wrong_password_and_malformed_requests(start_gateway):
    api, _ = start_gateway()
    token = api.login(*ADMIN)
    me = api.call("GET", "/api/v1/me", token).json()
    assert me["role"] == "national_admin" and me["site_id"] is None
    assert_problem(api.call("POST", "/api/v1/auth/token",
                            json={"email": ADMIN[0], "password": "wrong"}), 401)
    assert_problem(api.call("POST", "/api/v1/auth/token",
                            json={"email": "nobody@x.test", "password": "x"}), 401)
    problem = assert_problem(api.call("POST", "/api/v1/auth/token",
                                      json={"email": "not-an-email"}), 422)
    assert set(problem["errors"]) == {"email", "password"}
    assert_problem(api.call("POST", "/api/v1/auth/token", data="{not json",
                            headers={"Content-Type": "application/json"}), 400)
    answer = api.call("GET", "/api/v1/me")
    assert_problem(answer, 401)
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert_problem(api.call("GET", "/api/v1/me", "not.a.token"), 401)
    assert_problem(api.call("GET", "/api/v1/nothing-here", token), 404)


def test_token_expires(start_gateway):
    api, _ = start_gateway(TOKEN_TTL_SECONDS=1)
    token = api.login(*ADMIN)
    assert api.call("GET", "/api/v1/me", token).status_code == 200
    time.sleep(2.1)
    problem = assert_problem(api.call("GET", "/api/v1/me", token), 401)
    assert "expired" in problem["detail"]


def test_a_token_signed_with_another_key_is_refused(start_gateway):
    import jwt
    api, _ = start_gateway()
    forged = jwt.encode({"sub": "x", "role": "national_admin", "exp": time.time() + 60},
                        "another key entirely, 32 characters or more", algorithm="HS256")
    assert_problem(api.call("GET", "/api/v1/me", forged), 401)


def test_each_role_allowed_and_refused(world):
    api, admin, sites, coordinators = world
    essex = coordinators["essex"]
    # Only a national admin creates sites; a coordinator sees their own.
    assert_problem(api.call("POST", "/api/v1/sites", essex, json={
        "name": "X", "code": "x1", "catchment": ["M1"]}), 403)
    assert [s["code"] for s in api.call("GET", "/api/v1/sites", essex).json()] == ["essex"]
    assert len(api.call("GET", "/api/v1/sites", admin).json()) == 2
    assert_problem(api.call("GET", f"/api/v1/sites/{sites['derby']}", essex), 404)
    # Coordinators create accounts in their own site, and no national roles.
    for role in ("volunteer", "referrer"):
        answer = api.call("POST", "/api/v1/users", essex, json={
            "email": f"{role}@essex.test", "name": role, "password": "a long enough pw",
            "role": role})
        assert answer.status_code == 201 and answer.json()["site_id"] == sites["essex"]
    assert_problem(api.call("POST", "/api/v1/users", essex, json={
        "email": "boss@essex.test", "name": "b", "password": "a long enough pw",
        "role": "national_admin"}), 403)
    assert_problem(api.call("POST", "/api/v1/users", essex, json={
        "email": "spy@derby.test", "name": "s", "password": "a long enough pw",
        "role": "volunteer", "site_id": sites["derby"]}), 403)
    assert_problem(api.call("POST", "/api/v1/users", admin, json={
        "email": "coord@essex.test", "name": "dup", "password": "a long enough pw",
        "role": "volunteer", "site_id": sites["essex"]}), 409)
    assert_problem(api.call("POST", "/api/v1/users", admin, json={
        "email": "v@nowhere.test", "name": "v", "password": "a long enough pw",
        "role": "volunteer", "site_id": "no-such-site"}), 422)
    volunteer = api.login("volunteer@essex.test", "a long enough pw")
    referrer = api.login("referrer@essex.test", "a long enough pw")
    # A referrer refers but reads none; a volunteer does neither yet.
    created = api.call("POST", "/api/v1/referrals", referrer, json=REFERRAL)
    assert created.status_code == 201, created.text
    referral_id = created.json()["id"]
    assert created.json()["site_id"] == sites["essex"]
    assert_problem(api.call("GET", f"/api/v1/referrals/{referral_id}", referrer), 403)
    assert_problem(api.call("POST", "/api/v1/referrals", volunteer, json=REFERRAL), 403)
    assert_problem(api.call("GET", "/api/v1/users", volunteer), 403)
    # The coordinator of the site reads it; another site's gets 404; the
    # national admin sees aggregates only, not parents.
    mine = api.call("GET", f"/api/v1/referrals/{referral_id}", essex)
    assert mine.status_code == 200 and mine.json()["postcode"] == "CM1 2AB"
    assert_problem(api.call("GET", f"/api/v1/referrals/{referral_id}",
                            coordinators["derby"]), 404)
    assert_problem(api.call("GET", f"/api/v1/referrals/{referral_id}", admin), 403)
    # The site is the caller's, whatever the body says.
    problem = assert_problem(api.call("POST", "/api/v1/referrals", essex,
                                      json=dict(REFERRAL, site_id=sites["derby"])), 422)
    assert "site_id" in problem["errors"]


def test_site_settings_change_by_its_coordinator_only(world):
    api, admin, sites, coordinators = world
    essex = sites["essex"]
    site = api.call("GET", f"/api/v1/sites/{essex}", coordinators["essex"]).json()
    assert site["triage_target_days"] == 5 and site["licensed_measures"] == []
    answer = api.call("PATCH", f"/api/v1/sites/{essex}", coordinators["essex"], json={
        "triage_target_days": 3, "licensed_measures": ["wemwbs", "epds", "wemwbs"]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["triage_target_days"] == 3
    assert answer.json()["licensed_measures"] == ["epds", "wemwbs"]
    assert answer.json()["catchment"] == ["CM1", "CM2"]   # untouched
    # Another site's coordinator does not find it; bad values are named.
    assert_problem(api.call("PATCH", f"/api/v1/sites/{essex}", coordinators["derby"],
                            json={"triage_target_days": 2}), 404)
    problem = assert_problem(api.call("PATCH", f"/api/v1/sites/{essex}", admin, json={
        "triage_target_days": 0, "licensed_measures": ["gad7"], "code": "x"}), 422)
    assert set(problem["errors"]) == {"triage_target_days", "licensed_measures", "code"}
    assert_problem(api.call("PATCH", f"/api/v1/sites/{essex}", admin, json={}), 422)
    site = api.call("GET", f"/api/v1/sites/{essex}", admin).json()
    assert site["triage_target_days"] == 3   # nothing half-written by the refusals


def test_referral_bad_input_names_fields(world):
    api, _, _, coordinators = world
    problem = assert_problem(api.call("POST", "/api/v1/referrals", coordinators["essex"],
                                      json=dict(REFERRAL, source="owl", postcode="??")), 422)
    assert set(problem["errors"]) == {"source", "postcode"}
    assert_problem(api.call("POST", "/api/v1/referrals", coordinators["essex"],
                            json=["a list"]), 422)
    assert_problem(api.call("GET", "/api/v1/referrals/does-not-exist",
                            coordinators["essex"]), 404)


def test_api_key_use_and_revocation(world):
    api, admin, sites, coordinators = world
    essex = coordinators["essex"]
    created = api.call("POST", "/api/v1/api-keys", essex,
                       json={"name": "Essex maternity unit", "role": "referrer"})
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    key_id = created.json()["id"]
    assert key.startswith("alk_")
    listed = api.call("GET", "/api/v1/api-keys", essex).json()
    assert [k["id"] for k in listed] == [key_id] and "key" not in listed[0]
    assert "secret_hash" not in str(listed)
    assert api.call("POST", "/api/v1/referrals", key=key, json=REFERRAL).status_code == 201
    assert_problem(api.call("GET", "/api/v1/me", key=key[:-1] + "x"), 401)
    # Another site cannot see or revoke it; its own coordinator can.
    assert_problem(api.call("DELETE", f"/api/v1/api-keys/{key_id}",
                            coordinators["derby"]), 404)
    assert api.call("DELETE", f"/api/v1/api-keys/{key_id}", essex).status_code == 204
    assert_problem(api.call("POST", "/api/v1/referrals", key=key, json=REFERRAL), 401)
    assert_problem(api.call("DELETE", f"/api/v1/api-keys/{key_id}", essex), 404)
    assert_problem(api.call("POST", "/api/v1/api-keys", essex, json={
        "name": "x", "role": "site_coordinator"}), 422)


def test_audit_log_records_reads_and_changes_of_personal_data(world):
    api, admin, sites, coordinators = world
    essex, derby = coordinators["essex"], coordinators["derby"]
    referral = api.call("POST", "/api/v1/referrals", essex, json=REFERRAL).json()
    api.call("GET", f"/api/v1/referrals/{referral['id']}", essex)
    api.call("GET", f"/api/v1/referrals/{referral['id']}", derby)   # refused: 404
    entries = api.call("GET", "/api/v1/audit", essex).json()
    actions = [(e["action"], e["record_id"], e["outcome"]) for e in entries]
    assert ("referral.read", referral["id"], 200) in actions
    assert ("referral.create", referral["id"], 201) in actions
    read = next(e for e in entries if e["action"] == "referral.read")
    assert read["actor_role"] == "site_coordinator" and read["client_address"] == "127.0.0.1"
    assert read["site_id"] == sites["essex"] and read["at"]
    # Derby's coordinator sees Derby's entries only: their own account being
    # created, and their refused attempt on Essex's referral.
    derby_entries = api.call("GET", "/api/v1/audit", derby).json()
    assert {e["site_id"] for e in derby_entries} == {sites["derby"]}
    assert [(e["action"], e["outcome"]) for e in derby_entries] == [
        ("referral.read", 404), ("user.create", 201)]
    everything = api.call("GET", "/api/v1/audit?limit=500", admin).json()
    assert len(everything) > len(entries)
    assert_problem(api.call("GET", "/api/v1/audit?limit=0", admin), 422)
    assert_problem(api.call("GET", "/api/v1/audit?colour=red", admin), 422)


def test_login_is_rate_limited_per_client_address(start_gateway):
    api, _ = start_gateway(RATE_LIMITS={"login": {"LIMIT": 3, "WINDOW_SECONDS": 60}})
    for _ in range(3):
        assert api.call("POST", "/api/v1/auth/token", json={
            "email": ADMIN[0], "password": "guess"}).status_code == 401
    answer = api.call("POST", "/api/v1/auth/token",
                      json={"email": ADMIN[0], "password": ADMIN[1]})
    assert_problem(answer, 429)
    assert 1 <= int(answer.headers["Retry-After"]) <= 60


def test_openapi_document_is_valid_and_documented(start_gateway):
    api, _ = start_gateway()
    spec = api.call("GET", "/api/v1/openapi.json").json()
    validate(spec)
    assert {"/api/v1/auth/token", "/api/v1/sites", "/api/v1/sites/{id}",
            "/api/v1/users", "/api/v1/api-keys", "/api/v1/api-keys/{id}",
            "/api/v1/referrals", "/api/v1/referrals/{id}", "/api/v1/audit"} <= set(spec["paths"])
    referral_body = spec["paths"]["/api/v1/referrals"]["post"]["requestBody"]
    assert referral_body["content"]["application/json"]["schema"]
    headers = [p["name"] for p in spec["paths"]["/api/v1/referrals"]["post"]["parameters"]
               if p["in"] == "header"]
    assert headers == ["Idempotency-Key"]
    page = api.call("GET", "/api/v1/docs")
    assert page.status_code == 200 and "/api/v1/referrals" in page.text


def test_first_admin_comes_from_the_environment_once(start_service):
    first, config = start_service(GatewayService, GATEWAY=gateway_settings())
    database = next(d for d in first.dependencies if d.attr_name == "db").database
    # A second replica (or a restart) with other settings creates no other.
    start_service(GatewayService, MONGODB_DATABASE=config["MONGODB_DATABASE"],
                  GATEWAY=gateway_settings(ADMIN_EMAIL="other@alongside.test"))
    admins = list(database.users.find({"role": "national_admin"}))
    assert [a["email"] for a in admins] == [ADMIN[0]]
    assert ADMIN[1] not in str(admins) and admins[0]["password_hash"].startswith("$argon2")


def test_no_admin_without_the_environment(start_service):
    container, _ = start_service(GatewayService, GATEWAY=gateway_settings(
        ADMIN_EMAIL="", ADMIN_PASSWORD=""))
    database = next(d for d in container.dependencies if d.attr_name == "db").database
    assert database.users.count_documents({}) == 0


def test_gateway_refuses_to_start_without_a_signing_key(container_factory, service_config):
    config = service_config("gateway", GATEWAY=gateway_settings(JWT_SECRET=""))
    container = container_factory(GatewayService, config)
    with pytest.raises(RuntimeError, match="GATEWAY_JWT_SECRET"):
        container.start()


def test_a_service_that_is_down_or_stuck_answers_503(start_service, start_gateway):
    api, _ = start_gateway(REQUEST_TIMEOUT_SECONDS=2)
    admin = api.login(*ADMIN)
    site = api.call("POST", "/api/v1/sites", admin, json={
        "name": "Essex", "code": "essex", "catchment": ["CM1"]}).json()
    api.call("POST", "/api/v1/users", admin, json={
        "email": "c@essex.test", "name": "c", "password": "a long enough pw",
        "role": "site_coordinator", "site_id": site["id"]})
    coordinator = api.login("c@essex.test", "a long enough pw")
    # Never started: nobody serves referrals.
    assert_problem(api.call("POST", "/api/v1/referrals", coordinator, json=REFERRAL), 503)
    # Started, then killed: its queue stays and the call would wait for ever.
    referrals, _ = start_service(ReferralsService, ENCRYPTION=encryption_settings())
    assert api.call("POST", "/api/v1/referrals", coordinator, json=REFERRAL).status_code == 201
    referrals.kill()
    started = time.monotonic()
    assert_problem(api.call("POST", "/api/v1/referrals", coordinator, json=REFERRAL), 503)
    assert time.monotonic() - started < 10


def test_other_services_learn_a_sites_coordinators_and_settings_by_rpc(world, rabbit_config):
    from nameko.standalone.rpc import ServiceRpcProxy
    api, admin, sites, coordinators = world
    with ServiceRpcProxy("gateway", rabbit_config) as gateway:
        staff = gateway.staff_contacts(sites["essex"])
        assert [(s["email"], s["role"]) for s in staff] == [
            ("coord@essex.test", "site_coordinator")]
        assert "password_hash" not in staff[0]
        assert gateway.site_settings(sites["derby"])["catchment"] == ["DE22"]
        assert gateway.site_settings("no-such-site") is None
