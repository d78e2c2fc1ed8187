"""Journeys through the real gateway over HTTP, with the journeys service on
the real broker and datastore: a journey opened by a real ``match.confirmed``,
contacts and volunteer hours, goals and reviews, outcome measures scored by
the service (licensed per site), ending by hand and by ``match.ended``, a
volunteer kept to their own journeys, notes encrypted at rest, bad input."""
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from services.journeys.service import JourneysService
from shared.events import new_event
from shared.messaging import event_exchange
from tests.integration.test_matching import volunteer_user
from tests.support import REFERRAL, assert_problem, encryption_settings, wait_until

NOTE = "Parent said the nights are the hardest part"
WORDS = "I want to get out of the house with the baby twice a week"


@pytest.fixture
def journeys(world, start_service):
    api, admin, sites, coordinators = world
    container, config = start_service(JourneysService, ENCRYPTION=encryption_settings())
    database = next(d for d in container.dependencies if d.attr_name == "db").database
    return api, sites, coordinators, database


def confirm(broker, site_id, volunteer_user_id=None, days_ago=3, event=None):
    """Publish a real match.confirmed, as matching would; returns the event."""
    now = datetime.now(timezone.utc)
    if event is None:
        match_id = str(uuid.uuid4())
        event = new_event("match.confirmed", {
            "match_id": match_id, "referral_id": str(uuid.uuid4()),
            "volunteer_id": str(uuid.uuid4()), "volunteer_user_id": volunteer_user_id,
            "score": 0.75, "confirmed_at": (now - timedelta(days=days_ago)).isoformat()},
            site_id=site_id, subject=match_id, now=now)
    broker.publish(event)
    return event


def match_ended(broker, confirmed, reason, rematch):
    now = datetime.now(timezone.utc)
    data = confirmed["data"]
    broker.publish(new_event("match.ended", {
        "match_id": data["match_id"], "referral_id": data["referral_id"],
        "volunteer_id": data["volunteer_id"], "reason": reason, "rematch": rematch,
        "ended_at": now.isoformat()}, site_id=confirmed["siteid"],
        subject=data["match_id"], now=now))


def journey_of(api, token, match_id):
    def find():
        answer = api.call("GET", "/api/v1/journeys", token)
        assert answer.status_code == 200, answer.text
        return next((j for j in answer.json() if j["match_id"] == match_id), None)
    return wait_until(find, what=f"the journey of match {match_id}")


def license(api, token, site_id, measures):
    answer = api.call("PATCH", f"/api/v1/sites/{site_id}", token,
                      json={"licensed_measures": measures})
    assert answer.status_code == 200, answer.text


def post(api, token, path, body, status=201):
    answer = api.call("POST", path, token, json=body)
    assert answer.status_code == status, answer.text
    return answer.json()


def days_ago(days):
    return (datetime.now(timezone.utc).date() - timedelta(days=days)).isoformat()


def events_until(broker, listener, count):
    return [broker.get(listener) for _ in range(count)]


EPDS_SELF_HARM = [0, 0, 3, 0, 3, 3, 3, 3, 3, 1]   # total 2; item 10 scores 2


def test_a_journey_from_match_to_end(journeys, broker):
    api, sites, coordinators, database = journeys
    essex, site = coordinators["essex"], sites["essex"]
    listener = broker.listen("#", exchange=event_exchange("journeys"))
    license(api, essex, site, ["epds", "swemwbs"])
    anna_user, anna = volunteer_user(api, essex, "anna")
    _, ben = volunteer_user(api, essex, "ben")

    confirmed = confirm(broker, site, anna_user)
    confirm(broker, site, event=confirmed)          # redelivered: applied once
    journey = journey_of(api, essex, confirmed["data"]["match_id"])
    journey_id = journey["id"]
    assert journey["status"] == "open" and journey["volunteer_user_id"] == anna_user
    assert journey["totals"]["contacts"] == 0
    [started] = events_until(broker, listener, 1)
    assert started["type"] == "journey.started"
    assert started["data"]["journey_id"] == journey_id
    assert started["data"]["match_id"] == confirmed["data"]["match_id"]

    # A volunteer reaches their own journeys only.
    assert [j["id"] for j in api.call("GET", "/api/v1/journeys", anna).json()] == [journey_id]
    assert api.call("GET", "/api/v1/journeys", ben).json() == []
    base = f"/api/v1/journeys/{journey_id}"
    assert_problem(api.call("GET", base, ben), 404)
    assert_problem(api.call("POST", f"{base}/contacts", ben, json={
        "date": days_ago(1), "mode": "phone", "duration_minutes": 10}), 404)
    assert_problem(api.call("POST", f"{base}/goals", ben, json={
        "words": "x", "category": "social"}), 404)
    assert_problem(api.call("POST", f"{base}/outcome-measures", ben, json={
        "instrument": "epds", "time_point": "baseline", "answers": [0] * 10}), 404)
    assert_problem(api.call("GET", base, coordinators["derby"]), 404)   # other site

    # Contacts: hers, one the coordinator logs for her, one of the coordinator's.
    mine = post(api, anna, f"{base}/contacts", {
        "date": days_ago(2), "mode": "home_visit", "duration_minutes": 90, "notes": NOTE})
    assert mine["made_by"] == "volunteer" and mine["notes"] == NOTE
    assert mine["logged_by"] == anna_user and mine["logged_by_role"] == "volunteer"
    post(api, essex, f"{base}/contacts", {"date": days_ago(1), "mode": "phone",
                                          "duration_minutes": 30})
    post(api, essex, f"{base}/contacts", {"date": days_ago(1), "mode": "phone",
                                          "duration_minutes": 20,
                                          "made_by": "coordinator"})
    logged = events_until(broker, listener, 3)
    assert [e["type"] for e in logged] == ["contact.logged"] * 3
    assert sorted(e["data"]["made_by"] for e in logged) == ["coordinator", "volunteer",
                                                            "volunteer"]
    assert sorted(e["data"]["duration_minutes"] for e in logged) == [20, 30, 90]
    assert all(NOTE not in str(e) for e in logged)

    # Goals and a review.
    goal = post(api, anna, f"{base}/goals", {"words": WORDS, "category": "social",
                                             "target_date": days_ago(-30)})
    assert goal["words"] == WORDS and goal["status"] == "set"
    reviewed = post(api, essex, f"{base}/goals/{goal['id']}/reviews", {
        "status": "achieved", "note": "Goes to the Tuesday group now"})
    assert reviewed["status"] == "achieved" and reviewed["achieved_on"] == days_ago(0)
    assert reviewed["reviews"][0]["note"] == "Goes to the Tuesday group now"
    goal_events = events_until(broker, listener, 2)
    assert [e["type"] for e in goal_events] == ["goal.set", "goal.reviewed"]
    assert WORDS not in str(goal_events)

    # Outcome measures: scored by the service; EPDS item 10 carries the risk.
    epds = post(api, anna, f"{base}/outcome-measures", {
        "instrument": "epds", "time_point": "baseline", "answers": EPDS_SELF_HARM,
        "recorded_on": days_ago(2)})
    assert epds["scores"] == {"total": 2.0} and epds["self_harm_risk"] is True
    assert epds["item_scores"] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 2]
    assert epds["answers"] == EPDS_SELF_HARM
    [recorded] = events_until(broker, listener, 1)
    assert recorded["type"] == "outcome.recorded"
    assert recorded["data"]["self_harm_risk"] is True
    assert recorded["data"]["outcome_id"] == epds["id"]
    assert recorded["data"]["referral_id"] == confirmed["data"]["referral_id"]
    assert "answers" not in recorded["data"]
    swemwbs = post(api, essex, f"{base}/outcome-measures", {
        "instrument": "swemwbs", "time_point": "exit", "answers": [2, 2, 2, 2, 2, 2, 1]})
    assert swemwbs["scores"] == {"raw": 20.0, "metric": 18.59}
    events_until(broker, listener, 1)
    # One baseline per instrument; an unlicensed measure is refused, nothing stored.
    problem = assert_problem(api.call("POST", f"{base}/outcome-measures", anna, json={
        "instrument": "epds", "time_point": "baseline", "answers": [0] * 10}), 409)
    assert "time_point" in problem["errors"]
    problem = assert_problem(api.call("POST", f"{base}/outcome-measures", anna, json={
        "instrument": "hads", "time_point": "baseline", "answers": [0] * 14}), 422)
    assert set(problem["errors"]) == {"instrument"}
    assert database.outcomes.count_documents({}) == 2

    # The journey's totals: volunteer hours are the volunteer's contacts.
    detail = api.call("GET", base, anna).json()
    assert detail["totals"]["contacts"] == 3 and detail["totals"]["minutes"] == 140
    assert detail["totals"]["volunteer_minutes"] == 120
    assert detail["totals"]["volunteer_hours"] == 2.0
    assert detail["totals"]["by_mode"] == {"home_visit": {"contacts": 1, "minutes": 90},
                                           "phone": {"contacts": 2, "minutes": 50}}
    assert [c["notes"] for c in detail["contacts"]] == [NOTE, None, None]
    assert detail["goals"][0]["words"] == WORDS
    assert [o["instrument"] for o in detail["outcomes"]] == ["epds", "swemwbs"]
    listed = api.call("GET", "/api/v1/journeys", essex).json()
    assert listed[0]["totals"]["volunteer_hours"] == 2.0
    assert listed[0]["totals"]["minutes"] == 140

    # Volunteer hours over a period, per volunteer.
    volunteer_id = confirmed["data"]["volunteer_id"]
    hours = api.call("GET", "/api/v1/volunteer-hours", essex).json()
    assert [(h["volunteer_id"], h["contacts"], h["volunteer_minutes"],
             h["volunteer_hours"]) for h in hours] == [(volunteer_id, 3, 120, 2.0)]
    assert api.call("GET", "/api/v1/volunteer-hours", anna).json() == hours
    assert api.call("GET", "/api/v1/volunteer-hours", ben).json() == []
    assert api.call("GET", "/api/v1/volunteer-hours", ben,
                    params={"volunteer_id": volunteer_id}).json() == []
    recent = api.call("GET", "/api/v1/volunteer-hours", essex,
                      params={"from": days_ago(1), "to": days_ago(0)}).json()
    assert [(h["contacts"], h["minutes"], h["volunteer_minutes"]) for h in recent] == [
        (2, 50, 30)]
    problem = assert_problem(api.call("GET", "/api/v1/volunteer-hours", essex, params={
        "from": days_ago(0), "to": days_ago(1)}), 422)
    assert set(problem["errors"]) == {"to"}
    problem = assert_problem(api.call("GET", "/api/v1/volunteer-hours", essex, params={
        "from": "last week"}), 422)
    assert set(problem["errors"]) == {"from"}

    # At rest: no note, no goal's words, no answers in the clear.
    raw = str(list(database.contacts.find())) + str(list(database.goals.find()))
    assert NOTE not in raw and WORDS not in raw and "Tuesday group" not in raw
    stored = database.outcomes.find_one({"_id": epds["id"]})
    assert stored["answers"].startswith("v1:") and stored["item_scores"].startswith("v1:")
    assert stored["scores"] == {"total": 2} and stored["self_harm_risk"] is True

    # The end: a coordinator's, once.
    assert_problem(api.call("POST", f"{base}/end", anna, json={"reason": "completed"}), 403)
    ended = post(api, essex, f"{base}/end", {"reason": "completed"}, 200)
    assert ended["status"] == "ended" and ended["end_reason"] == "completed"
    [end] = events_until(broker, listener, 1)
    assert end["type"] == "journey.ended" and end["data"]["reason"] == "completed"
    assert_problem(api.call("POST", f"{base}/end", essex, json={"reason": "completed"}), 409)
    assert_problem(api.call("POST", f"{base}/goals", anna, json={
        "words": "late", "category": "social"}), 409)
    # A contact of the last days may still be logged; not one after the end.
    post(api, anna, f"{base}/contacts", {"date": days_ago(0), "mode": "text",
                                         "duration_minutes": 5})
    audit = api.call("GET", "/api/v1/audit", essex,
                     params={"action": "journey.contact_log"}).json()
    assert {a["outcome"] for a in audit} == {201, 404}


def test_match_ending_closes_the_journey_and_an_early_end_opens_none(journeys, broker):
    api, sites, coordinators, database = journeys
    essex, site = coordinators["essex"], sites["essex"]
    listener = broker.listen("journey.ended", exchange=event_exchange("journeys"))
    confirmed = confirm(broker, site)
    journey = journey_of(api, essex, confirmed["data"]["match_id"])
    match_ended(broker, confirmed, "volunteer_left", True)
    event = broker.get(listener)
    assert event["data"]["journey_id"] == journey["id"]
    assert event["data"]["reason"] == "rematched"
    detail = api.call("GET", f"/api/v1/journeys/{journey['id']}", essex).json()
    assert detail["status"] == "ended" and detail["end_reason"] == "rematched"

    other = confirm(broker, site)
    journey = journey_of(api, essex, other["data"]["match_id"])
    match_ended(broker, other, "parent_moved", False)
    assert broker.get(listener)["data"]["reason"] == "moved_away"

    # A match that ended before its confirmation was handled opens no journey.
    now = datetime.now(timezone.utc)
    match_id = str(uuid.uuid4())
    early = new_event("match.confirmed", {
        "match_id": match_id, "referral_id": str(uuid.uuid4()),
        "volunteer_id": str(uuid.uuid4()), "score": 0.5,
        "confirmed_at": now.isoformat()}, site_id=site, subject=match_id, now=now)
    match_ended(broker, early, "completed", False)
    wait_until(lambda: database.closed_matches.count_documents({"_id": match_id}),
               what="the early end to be remembered")
    confirm(broker, site, event=early)
    wait_until(lambda: database.inbox.count_documents({"event_id": early["id"]}),
               what="the late confirmation to be handled")
    assert database.journeys.count_documents({"match_id": match_id}) == 0


def test_bad_input_on_every_endpoint_is_refused_and_nothing_stored(journeys, broker):
    api, sites, coordinators, database = journeys
    essex, site = coordinators["essex"], sites["essex"]
    license(api, essex, site, ["epds", "hads", "wemwbs", "swemwbs"])
    confirmed = confirm(broker, site, days_ago=3)
    journey = journey_of(api, essex, confirmed["data"]["match_id"])
    base = f"/api/v1/journeys/{journey['id']}"

    def refused(path, body, fields, status=422):
        problem = assert_problem(api.call("POST", path, essex, json=body), status)
        if fields is not None:
            assert set(problem["errors"]) == set(fields), problem
        return problem

    refused(f"{base}/contacts", {"date": "yesterday", "mode": "carrier pigeon",
                                 "duration_minutes": 0, "made_by": "parent",
                                 "colour": "red"},
            {"date", "mode", "duration_minutes", "made_by", "colour"})
    refused(f"{base}/contacts", {}, {"date", "mode", "duration_minutes"})
    refused(f"{base}/contacts", {"date": days_ago(-1), "mode": "phone",
                                 "duration_minutes": 10}, {"date"})     # future
    refused(f"{base}/contacts", {"date": days_ago(4), "mode": "phone",
                                 "duration_minutes": 10}, {"date"})     # before start
    refused(f"{base}/contacts", {"date": days_ago(1), "mode": "phone",
                                 "duration_minutes": "10"}, {"duration_minutes"})
    refused(f"{base}/goals", {"words": "", "category": "money", "set_on": "soon"},
            {"words", "category", "set_on"})
    refused(f"{base}/goals", {"words": "x", "category": "social", "set_on": days_ago(1),
                              "target_date": days_ago(2)}, {"target_date"})
    refused(f"{base}/goals/{uuid.uuid4()}/reviews", {"status": "done"}, {"status"})
    refused(f"{base}/goals/{uuid.uuid4()}/reviews", {"status": "achieved"}, None, 404)
    refused(f"{base}/outcome-measures", {"instrument": "gad7", "time_point": "later",
                                         "answers": "all fine"},
            {"instrument", "time_point", "answers"})
    problem = refused(f"{base}/outcome-measures", {
        "instrument": "epds", "time_point": "baseline", "answers": [0] * 9 + [4]},
        {"answers.10"})
    assert "Item 10" in problem["errors"]["answers.10"][0]
    refused(f"{base}/outcome-measures", {"instrument": "hads", "time_point": "baseline",
                                         "answers": [0, 1, 2]},
            {f"answers.{n}" for n in range(4, 15)})
    refused(f"{base}/outcome-measures", {"instrument": "wemwbs", "time_point": "review",
                                         "answers": [0] * 13 + [None]}, {"answers.14"})
    refused(f"{base}/outcome-measures", {"instrument": "swemwbs", "time_point": "review",
                                         "answers": [0] * 14}, {"answers"})
    refused(f"{base}/end", {"reason": "bored"}, {"reason"})
    refused(f"{base}/end", {}, {"reason"})
    assert_problem(api.call("POST", f"{base}/contacts", essex, data="{not json",
                            headers={"Content-Type": "application/json"}), 400)
    assert_problem(api.call("GET", "/api/v1/journeys", essex,
                            params={"status": "paused", "limit": 0}), 422)
    missing = f"/api/v1/journeys/{uuid.uuid4()}"
    assert_problem(api.call("GET", missing, essex), 404)
    refused(f"{missing}/contacts", {"date": days_ago(1), "mode": "phone",
                                    "duration_minutes": 10}, None, 404)
    refused(f"{missing}/end", {"reason": "completed"}, None, 404)
    for name in ("contacts", "goals", "outcomes"):
        assert database[name].count_documents({}) == 0, name
    assert api.call("GET", base, essex).json()["status"] == "open"


def test_instruments_offered_by_licence_and_roles_refused(journeys, start_gateway):
    api, sites, coordinators, _ = journeys
    essex, site = coordinators["essex"], sites["essex"]
    rows = api.call("GET", "/api/v1/outcome-instruments", essex).json()
    assert {r["instrument"]: r["licensed"] for r in rows} == {
        "wemwbs": False, "swemwbs": False, "hads": False, "epds": False}
    license(api, essex, site, ["hads"])
    rows = {r["instrument"]: r for r in
            api.call("GET", "/api/v1/outcome-instruments", essex).json()}
    assert rows["hads"]["licensed"] is True and rows["hads"]["items"] == 14
    assert rows["swemwbs"]["items"] == 7 and rows["epds"]["items"] == 10
    # A referrer's key and the national admin reach no journeys.
    admin = api.login("admin@alongside.test", "correct horse battery staple")
    assert_problem(api.call("GET", "/api/v1/journeys", admin), 403)
    answer = api.call("POST", "/api/v1/api-keys", essex, json={
        "name": "Maternity unit", "role": "referrer"})
    assert answer.status_code == 201, answer.text
    key = answer.json()["key"]
    assert_problem(api.call("GET", "/api/v1/journeys", key=key), 403)
    assert_problem(api.call("GET", "/api/v1/journeys"), 401)


def test_the_golden_path_through_referrals_self_harm_raises_a_concern(journeys, broker):
    """With the real referrals service: the journey moves the referral to
    active, EPDS item 10 above 0 raises an urgent concern at once, and the
    journey's end closes the referral."""
    api, sites, coordinators, _ = journeys
    essex, site = coordinators["essex"], sites["essex"]
    license(api, essex, site, ["epds"])
    referral = post(api, essex, "/api/v1/referrals", REFERRAL)
    for action in ("start_triage", "accept"):
        version = api.call("GET", f"/api/v1/referrals/{referral['id']}", essex).json()[
            "version"]
        post(api, essex, f"/api/v1/referrals/{referral['id']}/triage",
             {"action": action, "version": version}, 200)
    now = datetime.now(timezone.utc)
    match_id = str(uuid.uuid4())
    confirmed = confirm(broker, site, event=new_event("match.confirmed", {
        "match_id": match_id, "referral_id": referral["id"],
        "volunteer_id": str(uuid.uuid4()), "score": 0.9,
        "confirmed_at": now.isoformat()}, site_id=site, subject=match_id, now=now))
    journey = journey_of(api, essex, confirmed["data"]["match_id"])

    def referral_status(status):
        answer = api.call("GET", f"/api/v1/referrals/{referral['id']}", essex)
        return answer.json()["status"] == status
    wait_until(lambda: referral_status("active"), what="the referral to be active")

    outcome = post(api, essex, f"/api/v1/journeys/{journey['id']}/outcome-measures", {
        "instrument": "epds", "time_point": "baseline", "answers": EPDS_SELF_HARM})
    assert outcome["self_harm_risk"] is True

    def concern():
        answer = api.call("GET", "/api/v1/safeguarding-concerns", essex,
                          params={"referral_id": referral["id"]})
        assert answer.status_code == 200, answer.text
        return answer.json()["items"] and answer.json()["items"][0]
    raised = wait_until(concern, what="the self-harm concern")
    assert raised["severity"] == "urgent" and raised["outcome_id"] == outcome["id"]

    post(api, essex, f"/api/v1/journeys/{journey['id']}/end", {"reason": "completed"}, 200)
    wait_until(lambda: referral_status("closed"), what="the referral to be closed")
