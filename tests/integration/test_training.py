"""Training records through the real gateway, with the training service on the
real broker and datastore: the path to eligibility and its event, time passing
(the daily check), DBS renewal notices, the pathway, site policy, encryption
at rest, bad input, site isolation and roles."""
from datetime import datetime, timedelta, timezone

import pytest
from nameko.standalone.rpc import ServiceRpcProxy

from services.training.domain import add_months
from services.training.service import TrainingService
from shared.errors import NotFound
from shared.messaging import event_exchange
from tests.support import assert_problem

MASTER_KEY = "test master key: not a secret, 32+ characters long"
VOLUNTEER = {"name": "Ada Lovelace", "email": "ada@example.org",
             "phone": "07700 900123", "postcode": "cm1 2ab"}
CERTIFICATE = "001234567890"


def today():
    return datetime.now(timezone.utc).date()


def ago(days):
    return (today() - timedelta(days=days)).isoformat()


@pytest.fixture
def training(world, start_service):
    api, admin, sites, coordinators = world
    container, config = start_service(TrainingService,
                                      ENCRYPTION={"MASTER_KEY": MASTER_KEY})
    return api, admin, sites, coordinators, config


def rpc(config, method, *args):
    with ServiceRpcProxy("training", config) as proxy:
        return getattr(proxy, method)(*args)


def register(api, token, **overrides):
    answer = api.call("POST", "/api/v1/volunteers", token, json=dict(VOLUNTEER, **overrides))
    assert answer.status_code == 201, answer.text
    return answer.json()


def post(api, token, path, body, status=201):
    answer = api.call("POST", path, token, json=body)
    assert answer.status_code == status, answer.text
    return answer.json()


def make_eligible(api, token, volunteer_id, supervised_days_ago=7):
    course = post(api, token, "/api/v1/courses", {
        "name": "Community Parent core", "kind": "core",
        "modules": [{"title": "Listening", "hours": 3}, {"title": "Safeguarding"}]})
    base = f"/api/v1/volunteers/{volunteer_id}"
    post(api, token, f"{base}/training-completions",
         {"course_id": course["id"], "completed_on": ago(20)})
    post(api, token, f"{base}/dbs-checks", {
        "level": "enhanced", "issued_on": ago(30), "update_service": False,
        "certificate_number": CERTIFICATE})
    post(api, token, f"{base}/supervisions", {
        "supervised_on": ago(supervised_days_ago), "supervisor_id": "coord-1",
        "notes": "Talked through a hard first visit."})
    post(api, token, f"{base}/stage", {"stage": "in_training"}, 200)
    return post(api, token, f"{base}/stage", {"stage": "active"}, 200)


def test_registered_to_eligible_and_back_by_time_passing(training, broker, mongo_client):
    api, _, sites, coordinators, config = training
    essex = coordinators["essex"]
    listener = broker.listen("volunteer.eligibility_changed",
                             exchange=event_exchange("training"))
    every = broker.listen("#", exchange=event_exchange("training"))
    volunteer = register(api, essex)
    assert volunteer["stage"] == "applicant" and volunteer["site_id"] == sites["essex"]
    assert (volunteer["name"], volunteer["postcode"]) == ("Ada Lovelace", "CM1 2AB")
    assert volunteer["eligibility"]["eligible"] is False
    vid = volunteer["id"]

    record = make_eligible(api, essex, vid)
    assert record["eligibility"]["eligible"] is True, record["eligibility"]
    assert record["eligibility"]["reasons"] == []
    event = broker.get(listener)
    assert event["type"] == "volunteer.eligibility_changed"
    assert event["siteid"] == sites["essex"] and event["source"] == "/alongside/training"
    assert event["data"] == {"volunteer_id": vid, "eligible": True, "reasons": [],
                             "evaluated_on": today().isoformat()}

    shown = api.call("GET", f"/api/v1/volunteers/{vid}", essex).json()
    assert shown["eligibility"]["eligible"] is True
    assert {r["rule"] for r in shown["eligibility"]["rules"]} == {
        "core_course_completed", "enhanced_dbs_current",
        "safeguarding_training_current", "supervision_recent", "stage_active"}
    assert shown["dbs_checks"][0]["certificate_number"] == CERTIFICATE
    assert shown["supervisions"][0]["notes"] == "Talked through a hard first visit."
    assert [h["to"] for h in shown["history"]] == ["applicant", "in_training", "active"]
    listed = api.call("GET", "/api/v1/volunteers?eligible=true", essex).json()
    assert [v["id"] for v in listed] == [vid] and listed[0]["name"] == "Ada Lovelace"
    assert api.call("GET", "/api/v1/volunteers?eligible=false", essex).json() == []
    assert [v["id"] for v in api.call("GET", "/api/v1/volunteers?stage=active",
                                      essex).json()] == [vid]
    assert api.call("GET", "/api/v1/volunteers?stage=paused", essex).json() == []

    # Every event of the path, none with a personal detail in it.
    types = [broker.get(every)["type"] for _ in range(5)]
    assert types == ["volunteer.registered", "training.course_completed",
                     "dbs.recorded", "supervision.recorded",
                     "volunteer.eligibility_changed"]

    # Time passes: nine weeks after the supervision, no longer eligible.
    later = (today() + timedelta(weeks=8)).isoformat()
    summary = rpc(config, "run_daily_check", later)
    assert summary["eligibility_changes"] == 1 and summary["evaluated"] == 1
    event = broker.get(listener)
    assert event["data"] == {"volunteer_id": vid, "eligible": False,
                             "reasons": ["supervision_overdue"], "evaluated_on": later}
    again = rpc(config, "run_daily_check", later)
    assert again["eligibility_changes"] == 0 and again["expiring_notices"] == 0
    assert broker.depth(listener) == 0

    # At rest: the personal fields are sealed, never plain.
    stored = mongo_client[config["MONGODB_DATABASE"]].volunteers.find_one({"_id": vid})
    text = str(stored)
    for secret in ("Ada", "ada@example.org", "07700", "CM1 2AB", CERTIFICATE,
                   "hard first visit"):
        assert secret not in text
    assert stored["personal"]["email"].startswith("v1:")
    assert stored["eligibility"]["eligible"] is False


def test_a_stricter_policy_applies_at_once_and_dbs_expiring_comes_once(training, broker):
    api, admin, sites, coordinators, config = training
    essex = coordinators["essex"]
    expiring = broker.listen("dbs.expiring", exchange=event_exchange("training"))
    flips = broker.listen("volunteer.eligibility_changed",
                          exchange=event_exchange("training"))
    vid = register(api, essex)["id"]
    make_eligible(api, essex, vid, supervised_days_ago=20)
    assert broker.get(flips)["data"]["eligible"] is True
    policy_path = f"/api/v1/sites/{sites['essex']}/training-policy"
    policy = {"dbs_renewal_months": 36, "safeguarding_refresher_months": 12,
              "supervision_weeks": 8, "dbs_expiring_notice_days": 30}
    assert api.call("GET", policy_path, essex).json() == dict(
        policy, site_id=sites["essex"], overridden=False)

    # The coordinator wants supervision every 2 weeks: eligibility ends now.
    answer = api.call("PUT", policy_path, essex, json=dict(policy, supervision_weeks=2))
    assert answer.status_code == 200, answer.text
    assert answer.json()["overridden"] is True and answer.json()["supervision_weeks"] == 2
    assert broker.get(flips)["data"] == {
        "volunteer_id": vid, "eligible": False, "reasons": ["supervision_overdue"],
        "evaluated_on": today().isoformat()}
    shown = api.call("GET", f"/api/v1/volunteers/{vid}", essex).json()
    assert shown["eligibility"]["reasons"] == ["supervision_overdue"]
    api.call("PUT", policy_path, essex, json=policy)
    assert broker.get(flips)["data"]["eligible"] is True

    # The certificate was issued 30 days ago and lapses 36 months after;
    # the notice comes within the 30 days before, once.
    expires = add_months(today() - timedelta(days=30), 36)
    assert rpc(config, "run_daily_check",
               (expires - timedelta(days=31)).isoformat())["expiring_notices"] == 0
    in_window = (expires - timedelta(days=30)).isoformat()
    assert rpc(config, "run_daily_check", in_window)["expiring_notices"] == 1
    notice = broker.get(expiring)
    assert notice["data"] == {"volunteer_id": vid, "expires_on": expires.isoformat(),
                              "dbs_check_id": shown["dbs_checks"][0]["id"]}
    assert rpc(config, "run_daily_check", in_window)["expiring_notices"] == 0
    later = (expires - timedelta(days=1)).isoformat()
    assert rpc(config, "run_daily_check", later)["expiring_notices"] == 0
    assert broker.depth(expiring) == 0


def test_pathway_moves_and_illegal_ones(training):
    api, _, _, coordinators, _ = training
    essex = coordinators["essex"]
    vid = register(api, essex)["id"]
    path = f"/api/v1/volunteers/{vid}/stage"
    problem = assert_problem(api.call("POST", path, essex, json={"stage": "active"}), 409)
    assert "applicant" in problem["detail"]
    assert api.call("POST", path, essex, json={"stage": "in_training"}).status_code == 200
    role = api.call("POST", f"/api/v1/volunteers/{vid}/role", essex,
                    json={"role": "peer_support_worker"})
    assert role.status_code == 200 and role.json()["role"] == "peer_support_worker"
    assert_problem(api.call("POST", f"/api/v1/volunteers/{vid}/role", essex,
                            json={"role": "peer_support_worker"}), 409)
    assert api.call("POST", path, essex, json={"stage": "left"}).status_code == 200
    assert_problem(api.call("POST", path, essex, json={"stage": "active"}), 409)
    assert_problem(api.call("POST", f"/api/v1/volunteers/{vid}/supervisions", essex,
                            json={"supervised_on": ago(1), "supervisor_id": "c"}), 409)
    history = api.call("GET", f"/api/v1/volunteers/{vid}", essex).json()["history"]
    assert [(h["change"], h["from"], h["to"]) for h in history] == [
        ("registered", None, "applicant"), ("stage", "applicant", "in_training"),
        ("role", "volunteer", "peer_support_worker"), ("stage", "in_training", "left")]
    assert api.call("GET", "/api/v1/volunteers?stage=left", essex).json()[0]["id"] == vid


def test_bad_input_on_every_endpoint_names_the_fields(training):
    api, admin, sites, coordinators, _ = training
    essex = coordinators["essex"]
    vid = register(api, essex)["id"]
    base = f"/api/v1/volunteers/{vid}"
    cases = [
        ("POST", "/api/v1/volunteers", {"name": "", "email": "x", "postcode": "??",
                                        "site_id": sites["derby"]},
         {"name", "email", "postcode", "site_id"}),
        ("POST", f"{base}/stage", {"stage": "retired"}, {"stage"}),
        ("POST", f"{base}/role", {}, {"role"}),
        ("POST", "/api/v1/courses", {"name": "C", "kind": "fun", "modules": []},
         {"kind", "modules"}),
        ("POST", f"{base}/training-completions", {"completed_on": "soon", "kind": "core"},
         {"completed_on"}),
        ("POST", f"{base}/training-completions", {"completed_on": ago(1)}, {"kind"}),
        ("POST", f"{base}/training-completions",
         {"course_id": "no-such-course", "completed_on": ago(1)}, {"course_id"}),
        ("POST", f"{base}/training-completions",
         {"kind": "core", "completed_on": (today() + timedelta(days=2)).isoformat()},
         {"completed_on"}),
        ("POST", f"{base}/dbs-checks", {"level": "enhanced", "issued_on": ago(1),
                                        "certificate_number": "ABC"},
         {"certificate_number"}),
        ("POST", f"{base}/supervisions", {"supervised_on": ago(1), "notes": "x"},
         {"supervisor_id"}),
        ("PUT", f"/api/v1/sites/{sites['essex']}/training-policy",
         {"dbs_renewal_months": -1}, {"dbs_renewal_months", "supervision_weeks",
                                      "safeguarding_refresher_months",
                                      "dbs_expiring_notice_days"}),
    ]
    for method, path, body, fields in cases:
        problem = assert_problem(api.call(method, path, essex, json=body), 422)
        assert set(problem["errors"]) == fields, (path, problem)
        assert_problem(api.call(method, path, essex, json=["not", "an", "object"]), 422)
    problem = assert_problem(api.call("GET", "/api/v1/volunteers?stage=x&eligible=maybe",
                                      essex), 422)
    assert set(problem["errors"]) == {"stage", "eligible"}
    # Nothing was half-written by any of it.
    shown = api.call("GET", base, essex).json()
    assert (shown["completions"], shown["dbs_checks"], shown["supervisions"],
            shown["stage"]) == ([], [], [], "applicant")
    assert api.call("GET", "/api/v1/courses", essex).json() == []


def test_sites_are_isolated_and_other_roles_refused(training):
    api, admin, sites, coordinators, _ = training
    essex, derby = coordinators["essex"], coordinators["derby"]
    vid = register(api, essex)["id"]
    base = f"/api/v1/volunteers/{vid}"
    for method, path, body in (
            ("GET", base, None), ("POST", f"{base}/stage", {"stage": "in_training"}),
            ("POST", f"{base}/supervisions", {"supervised_on": ago(1),
                                              "supervisor_id": "c"}),
            ("POST", f"{base}/training-completions", {"kind": "core",
                                                      "completed_on": ago(1)})):
        assert_problem(api.call(method, path, derby, json=body), 404)
    assert api.call("GET", "/api/v1/volunteers", derby).json() == []
    assert_problem(api.call("PUT", f"/api/v1/sites/{sites['essex']}/training-policy",
                            derby, json={"dbs_renewal_months": 24,
                                         "safeguarding_refresher_months": 12,
                                         "supervision_weeks": 8,
                                         "dbs_expiring_notice_days": 30}), 404)
    assert_problem(api.call("GET", "/api/v1/sites/no-such-site/training-policy",
                            admin), 404)
    # The national admin sets any site's policy but reads no volunteer.
    answer = api.call("PUT", f"/api/v1/sites/{sites['derby']}/training-policy", admin,
                      json={"dbs_renewal_months": 24, "safeguarding_refresher_months": 12,
                            "supervision_weeks": 6, "dbs_expiring_notice_days": 14})
    assert answer.status_code == 200 and answer.json()["site_id"] == sites["derby"]
    assert_problem(api.call("GET", base, admin), 403)
    assert_problem(api.call("POST", "/api/v1/volunteers", admin, json=VOLUNTEER), 403)
    for role in ("volunteer", "referrer"):
        created = api.call("POST", "/api/v1/users", essex, json={
            "email": f"{role}@essex.test", "name": role, "password": "a long enough pw",
            "role": role})
        assert created.status_code == 201, created.text
        token = api.login(f"{role}@essex.test", "a long enough pw")
        assert_problem(api.call("GET", base, token), 403)
        assert_problem(api.call("GET", "/api/v1/volunteers", token), 403)
        assert_problem(api.call("POST", "/api/v1/volunteers", token, json=VOLUNTEER), 403)
        assert_problem(api.call("POST", f"{base}/dbs-checks", token, json={
            "level": "enhanced", "issued_on": ago(1), "certificate_number": CERTIFICATE}),
            403)
    # Reads and changes of personal data are audited, refusals too.
    audit = api.call("GET", "/api/v1/audit?action=volunteer.read", essex).json()
    outcomes = sorted(entry["outcome"] for entry in audit)
    assert 403 in outcomes and all(e["record_id"] == vid for e in audit)
    created = api.call("GET", "/api/v1/audit?action=volunteer.create", essex).json()
    assert created and created[-1]["outcome"] == 201


def test_concurrent_changes_to_one_volunteer_are_all_kept(training):
    import eventlet
    api, _, _, coordinators, _ = training
    essex = coordinators["essex"]
    vid = register(api, essex)["id"]
    pool = eventlet.GreenPool(6)
    answers = list(pool.imap(lambda n: api.call(
        "POST", f"/api/v1/volunteers/{vid}/supervisions", essex,
        json={"supervised_on": ago(n), "supervisor_id": f"s{n}"}), range(6)))
    assert [a.status_code for a in answers] == [201] * 6, [a.text for a in answers]
    shown = api.call("GET", f"/api/v1/volunteers/{vid}", essex).json()
    assert sorted(s["supervisor_id"] for s in shown["supervisions"]) == [
        f"s{n}" for n in range(6)]
    assert shown["version"] == 6


def test_the_timer_runs_the_daily_check(world, start_service, broker, mongo_client):
    api, _, sites, coordinators = world
    _, config = start_service(TrainingService, ENCRYPTION={"MASTER_KEY": MASTER_KEY},
                              TRAINING={"DAILY_CHECK_INTERVAL_SECONDS": 0.3,
                                        "POLICY_DEFAULTS": {
                                            "dbs_renewal_months": 36,
                                            "safeguarding_refresher_months": 12,
                                            "supervision_weeks": 8,
                                            "dbs_expiring_notice_days": 30}})
    flips = broker.listen("volunteer.eligibility_changed",
                          exchange=event_exchange("training"))
    vid = register(api, coordinators["essex"])["id"]
    make_eligible(api, coordinators["essex"], vid, supervised_days_ago=20)
    assert broker.get(flips)["data"]["eligible"] is True
    # A policy written behind the service's back: only the timer notices it.
    mongo_client[config["MONGODB_DATABASE"]].site_policies.insert_one({
        "site_id": sites["essex"], "supervision_weeks": 2})
    event = broker.get(flips, timeout=10)
    assert event["data"]["eligible"] is False
    assert event["data"]["reasons"] == ["supervision_overdue"]


def test_the_service_refuses_to_start_without_a_master_key(start_service):
    with pytest.raises(RuntimeError, match="MASTER_KEY"):
        start_service(TrainingService, ENCRYPTION={"MASTER_KEY": "too short"})


def test_contact_details_for_messaging_are_decrypted_and_site_scoped(training):
    api, admin, sites, coordinators, config = training
    volunteer = register(api, coordinators["essex"], preferred_language="pl")
    assert volunteer["preferred_language"] == "pl"
    assert rpc(config, "contact_details", sites["essex"], volunteer["id"]) == {
        "name": "Ada Lovelace", "email": "ada@example.org", "phone": "07700 900123",
        "preferred_language": "pl"}
    plain = register(api, coordinators["essex"], phone=None)
    assert rpc(config, "contact_details", sites["essex"], plain["id"]) == {
        "name": "Ada Lovelace", "email": "ada@example.org", "phone": None,
        "preferred_language": "en"}
    for site, volunteer_id in ((sites["derby"], volunteer["id"]),
                               (sites["essex"], "no-such-volunteer")):
        with pytest.raises(NotFound):
            rpc(config, "contact_details", site, volunteer_id)


def test_a_cohort_attended_module_by_module_completes_the_course(training, broker):
    api, _, sites, coordinators, config = training
    essex, derby = coordinators["essex"], coordinators["derby"]
    completed = broker.listen("training.course_completed", exchange=event_exchange("training"))
    changed = broker.listen("volunteer.eligibility_changed",
                            exchange=event_exchange("training"))
    trainer = register(api, essex, name="Tess Trainer", email="tess@example.org",
                       role="trainer")
    ada, bea = register(api, essex)["id"], register(api, essex, name="Bea")["id"]
    course = post(api, essex, "/api/v1/courses", {
        "name": "Community Parent core", "kind": "core",
        "modules": [{"title": "Listening", "hours": 3}, {"title": "Safeguarding"}]})
    assert [m["id"] for m in course["modules"]] == ["m1", "m2"]
    shown = api.call("GET", f"/api/v1/courses/{course['id']}", essex).json()
    assert shown["modules"] == course["modules"] and shown["id"] == course["id"]
    cohort = post(api, essex, f"/api/v1/courses/{course['id']}/cohorts", {
        "start_date": ago(14), "trainer_id": trainer["id"], "places": 2})
    assert cohort["places_left"] == 2 and cohort["course_name"] == "Community Parent core"
    base = f"/api/v1/cohorts/{cohort['id']}"
    for vid in (ada, bea):
        cohort = post(api, essex, f"{base}/enrolments", {"volunteer_id": vid})
    assert cohort["enrolled"] == [ada, bea] and cohort["places_left"] == 0
    third = register(api, essex, name="Cy")["id"]
    assert_problem(api.call("POST", f"{base}/enrolments", essex,
                            json={"volunteer_id": third}), 409)
    assert_problem(api.call("POST", f"{base}/enrolments", essex,
                            json={"volunteer_id": ada}), 409)

    post(api, essex, f"{base}/attendance", {"module_id": "m1", "session_date": ago(10),
                                            "present": [ada, bea]})
    cohort = post(api, essex, f"{base}/attendance", {
        "module_id": "m2", "session_date": ago(7), "present": [ada]})
    rows = {r["volunteer_id"]: r for r in cohort["progress"]}
    assert rows[ada]["completed_on"] == ago(7) and rows[ada]["modules_missing"] == []
    assert rows[bea]["completed_on"] is None and rows[bea]["modules_missing"] == ["m2"]
    record = api.call("GET", f"/api/v1/volunteers/{ada}", essex).json()
    [completion] = record["completions"]
    assert completion["cohort_id"] == cohort["id"] and completion["kind"] == "core"
    assert completion["completed_on"] == ago(7)
    assert record["eligibility"]["rules"][0] == {
        "rule": "core_course_completed", "passed": True, "reason": None, "valid_until": None}
    event = broker.get(completed)
    assert event["data"]["volunteer_id"] == ada and event["data"]["course_id"] == course["id"]
    # Recording more sessions never doubles a completion.
    post(api, essex, f"{base}/attendance", {"module_id": "m2", "session_date": ago(3),
                                            "present": [ada, bea]})
    assert broker.get(completed)["data"]["volunteer_id"] == bea
    assert broker.depth(completed) == 0
    assert len(api.call("GET", f"/api/v1/volunteers/{ada}", essex).json()["completions"]) == 1
    bea_record = api.call("GET", f"/api/v1/volunteers/{bea}", essex).json()
    assert bea_record["completions"][0]["completed_on"] == ago(3)

    # A completed core course (with the rest) makes a volunteer eligible.
    vid_base = f"/api/v1/volunteers/{ada}"
    post(api, essex, f"{vid_base}/dbs-checks", {
        "level": "enhanced", "issued_on": ago(30), "certificate_number": CERTIFICATE})
    post(api, essex, f"{vid_base}/supervisions", {"supervised_on": ago(2),
                                                  "supervisor_id": "coord-1"})
    post(api, essex, f"{vid_base}/stage", {"stage": "in_training"}, 200)
    assert post(api, essex, f"{vid_base}/stage", {"stage": "active"},
                200)["eligibility"]["eligible"] is True
    assert broker.get(changed)["data"]["volunteer_id"] == ada

    listed = api.call("GET", f"/api/v1/courses/{course['id']}/cohorts", essex).json()
    assert [c["id"] for c in listed] == [cohort["id"]]
    # Another site sees none of it.
    for path in (f"/api/v1/courses/{course['id']}", f"/api/v1/courses/{course['id']}/cohorts",
                 base):
        assert_problem(api.call("GET", path, derby), 404)
    assert_problem(api.call("POST", f"{base}/attendance", derby, json={
        "module_id": "m1", "session_date": ago(1), "present": []}), 404)


def test_bad_input_on_the_cohort_endpoints_names_the_fields(training):
    api, _, sites, coordinators, _ = training
    essex = coordinators["essex"]
    trainer = register(api, essex, role="trainer")["id"]
    plain = register(api, essex, name="Not A Trainer")["id"]
    course = post(api, essex, "/api/v1/courses", {"name": "Core", "kind": "core",
                                                  "modules": [{"title": "One"}]})
    cohorts = f"/api/v1/courses/{course['id']}/cohorts"
    cohort = post(api, essex, cohorts, {"start_date": ago(5), "trainer_id": trainer,
                                        "places": 1})
    base = f"/api/v1/cohorts/{cohort['id']}"
    post(api, essex, f"{base}/enrolments", {"volunteer_id": plain})
    cases = [
        (cohorts, {"start_date": "soon", "places": 0}, {"start_date", "places", "trainer_id"}),
        (cohorts, {"start_date": ago(1), "places": 2, "trainer_id": plain}, {"trainer_id"}),
        (cohorts, {"start_date": ago(1), "places": 2, "trainer_id": "nobody"},
         {"trainer_id"}),
        (cohorts, {"start_date": ago(1), "places": 2, "trainer_id": trainer, "x": 1}, {"x"}),
        (f"{base}/enrolments", {}, {"volunteer_id"}),
        (f"{base}/enrolments", {"volunteer_id": "nobody"}, {"volunteer_id"}),
        (f"{base}/attendance", {"module_id": "m1"}, {"session_date", "present"}),
        (f"{base}/attendance", {"module_id": "m7", "session_date": ago(10),
                                "present": ["nobody"]},
         {"module_id", "session_date", "present"}),
        (f"{base}/attendance", {"module_id": "m1", "session_date": ago(-2),
                                "present": [plain]}, {"session_date"}),
        (f"{base}/attendance", {"module_id": "m1", "session_date": ago(1),
                                "present": "everyone"}, {"present"}),
    ]
    for path, body, fields in cases:
        problem = assert_problem(api.call("POST", path, essex, json=body), 422)
        assert set(problem["errors"]) == fields, (path, body, problem)
    assert_problem(api.call("POST", cohorts, essex, json=[1]), 422)
    assert_problem(api.call("POST", "/api/v1/courses/nope/cohorts", essex, json={
        "start_date": ago(1), "trainer_id": trainer, "places": 1}), 404)
    assert_problem(api.call("POST", "/api/v1/cohorts/nope/attendance", essex, json={
        "module_id": "m1", "session_date": ago(1), "present": []}), 404)
    # Nothing was half-written: one cohort, no sessions, no completion.
    [only] = api.call("GET", cohorts, essex).json()
    assert only["sessions"] == [] and only["enrolled"] == [plain]
    assert api.call("GET", f"/api/v1/volunteers/{plain}", essex).json()["completions"] == []


def test_openapi_documents_the_cohort_endpoints(training):
    api = training[0]
    spec = api.call("GET", "/api/v1/openapi.json").json()
    for path, method in (("/api/v1/courses/{id}", "get"),
                         ("/api/v1/courses/{id}/cohorts", "post"),
                         ("/api/v1/courses/{id}/cohorts", "get"),
                         ("/api/v1/cohorts/{id}", "get"),
                         ("/api/v1/cohorts/{id}/enrolments", "post"),
                         ("/api/v1/cohorts/{id}/attendance", "post")):
        assert method in spec["paths"][path], (path, method)
