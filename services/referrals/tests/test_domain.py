"""Referral rules, fast: intake form, eligibility, duplicates, triage state
machine, safeguarding. No broker, no datastore."""
from datetime import date, datetime, timezone

import pytest

from services.referrals import domain
from services.referrals.schemas import (NewReferralSchema, SelfReferralSchema,
                                        TriageSchema)
from shared.errors import Conflict, ValidationFailed
from shared.events import CATALOGUE
from shared.validation import load_or_fail

NOW = datetime(2026, 11, 2, 10, 0, tzinfo=timezone.utc)
TODAY = NOW.date()
RULES = {"catchment": ["CM1", "CM2"], "child_age_limit_months": 12}

FORM = {"source": "health_visitor", "referrer_name": "Pat HV",
        "referrer_contact": "01245 000000", "name": "Alex  Parent",
        "date_of_birth": "1995-04-12", "phone": "+44 7700 900123",
        "postcode": "cm1 2ab", "preferred_language": "pl",
        "interpreter_needed": True, "due_date": "2027-02-14",
        "first_time_parent": True, "partner_included": True,
        "needs": ["anxiety", "isolation"], "preferred_support": ["video", "home_visit"],
        "reason": "Low since the move.", "consent_to_contact": True,
        "consent_to_share": True, "consent_obtained_at": "2026-11-01T09:00:00Z",
        "consent_obtained_how": "verbal"}


def load(**changes):
    payload = {k: v for k, v in dict(FORM, **changes).items() if v is not None}
    return load_or_fail(NewReferralSchema(), payload)


def receive(form=None, rules=RULES, **kwargs):
    return domain.receive_referral("essex", form or load(), "r-1", NOW,
                                   site_rules=rules, parent_id="p-1", **kwargs)


# -- the form ----------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("sw1a1aa", "SW1A 1AA"), ("SW1A 1AA", "SW1A 1AA"), ("m1 1ae", "M1 1AE"),
    ("CM1  2AB", "CM1 2AB"), ("DE22 3NE", "DE22 3NE"), ("B33 8TH", "B33 8TH"),
    ("nope", None), ("SW1A", None), ("12345", None), ("", None), (None, None),
])
def test_normalise_postcode(text, expected):
    assert domain.normalise_postcode(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("07700 900123", "07700900123"), ("+44 7700 900123", "07700900123"),
    ("(01245) 000-000", "01245000000"), ("447700900123", "07700900123"),
    ("0048 123 456 789", "+48123456789"), ("12", None), ("call me", None),
])
def test_normalise_phone(text, expected):
    assert domain.normalise_phone(text) == expected


def test_received_referral_and_its_event_carry_no_personal_detail():
    referral, [event] = receive()
    assert referral["status"] == "received" and referral["version"] == 1
    assert referral["personal"]["postcode"] == "CM1 2AB"
    assert referral["personal"]["name"] == "Alex Parent"
    assert referral["personal"]["due_date"] == "2027-02-14"
    assert referral["needs"] == ["anxiety", "isolation"]
    assert referral["consent"]["obtained_how"] == "verbal"
    assert event["type"] == "referral.received" and event["siteid"] == "essex"
    assert event["data"] == {
        "referral_id": "r-1", "source": "health_visitor",
        "preferred_language": "pl", "area": "CM1", "due_month": "2027-02",
        "received_at": NOW.isoformat(), "triage_due_at": "2026-11-07T10:00:00+00:00"}
    assert referral["triage_due_at"] == datetime(2026, 11, 7, 10, 0, tzinfo=timezone.utc)
    later, [event] = receive(rules=dict(RULES, triage_target_days=2))
    assert event["data"]["triage_due_at"] == "2026-11-04T10:00:00+00:00"
    for secret in ("CM1 2AB", "Alex", "7700", "Low since", "Pat HV", "1995"):
        assert secret not in str(event)


def test_bad_referral_is_refused_field_by_field():
    with pytest.raises(ValidationFailed) as refused:
        load(source="plumber", postcode="XYZ", due_date="soon",
             preferred_language="English!", parent_name="Jo", needs=["sadness"],
             preferred_support=["carrier pigeon"], phone="call me",
             email="not-an-email", consent_obtained_how="telepathy")
    assert set(refused.value.errors) == {
        "source", "postcode", "due_date", "preferred_language", "parent_name",
        "needs", "preferred_support", "phone", "email", "consent_obtained_how"}


def test_missing_fields_are_named():
    with pytest.raises(ValidationFailed) as refused:
        load_or_fail(NewReferralSchema(), {})
    assert set(refused.value.errors) == {
        "source", "postcode", "name", "date_of_birth", "first_time_parent",
        "consent_to_contact", "consent_to_share", "consent_obtained_at",
        "consent_obtained_how"}
    with pytest.raises(ValidationFailed):
        load_or_fail(NewReferralSchema(), ["not", "an", "object"])


def test_blank_names_are_refused():
    with pytest.raises(ValidationFailed) as refused:
        load(name="   ", referrer_name=" ")
    assert set(refused.value.errors) == {"name", "referrer_name"}


def test_consent_is_required_to_be_given():
    with pytest.raises(ValidationFailed) as refused:
        load(consent_to_contact=False, consent_to_share=False)
    assert set(refused.value.errors) == {"consent_to_contact", "consent_to_share"}


def test_a_phone_or_an_email_and_one_date_of_the_baby():
    with pytest.raises(ValidationFailed) as refused:
        load(phone=None, email=None)
    assert set(refused.value.errors) == {"phone"}
    assert load(phone=None, email="a@b.test")["phone"] is None
    with pytest.raises(ValidationFailed) as refused:
        load(due_date=None)
    assert set(refused.value.errors) == {"due_date"}
    with pytest.raises(ValidationFailed) as refused:
        load(baby_date_of_birth="2026-10-01")
    assert set(refused.value.errors) == {"due_date"}
    assert load(due_date=None, baby_date_of_birth="2026-10-01")["due_date"] is None


def test_a_professional_referrer_is_named_a_self_referral_need_not():
    with pytest.raises(ValidationFailed) as refused:
        load(referrer_name=None, referrer_contact=None)
    assert set(refused.value.errors) == {"referrer_name", "referrer_contact"}
    assert load(source="self", referrer_name=None, referrer_contact=None)


def test_self_referral_form_becomes_a_self_sourced_referral():
    payload = {k: v for k, v in FORM.items() if k not in (
        "source", "referrer_name", "referrer_contact", "consent_obtained_at",
        "consent_obtained_how")}
    schema = SelfReferralSchema()
    with pytest.raises(ValidationFailed) as refused:
        load_or_fail(schema, dict(payload, source="midwife"))
    assert set(refused.value.errors) == {"site_code", "source"}
    form = schema.to_referral(load_or_fail(schema, dict(payload, site_code="essex")), NOW)
    referral, [event] = receive(form)
    assert referral["source"] == "self" and event["data"]["source"] == "self"
    assert referral["consent"] == {"to_be_contacted": True, "to_share": True,
                                   "obtained_at": NOW, "obtained_how": "self_referral"}


@pytest.mark.parametrize("field, value", [
    ("date_of_birth", "2030-01-01"), ("date_of_birth", "2020-01-01"),
    ("date_of_birth", "1900-01-01"), ("due_date", "2028-06-01"),
    ("due_date", "2020-01-01"), ("consent_obtained_at", "2026-12-01T00:00:00Z"),
])
def test_impossible_dates_are_refused_before_anything_is_built(field, value):
    with pytest.raises(ValidationFailed) as refused:
        receive(load(**{field: value}))
    assert set(refused.value.errors) == {field}


def test_a_future_baby_birth_is_refused():
    with pytest.raises(ValidationFailed) as refused:
        receive(load(due_date=None, baby_date_of_birth="2026-12-01"))
    assert set(refused.value.errors) == {"baby_date_of_birth"}


# -- eligibility ----------------------------------------------------------------

@pytest.mark.parametrize("district, due, baby, reasons", [
    ("CM1", date(2027, 2, 1), None, []),                      # pregnant, in area
    ("CM2", None, date(2026, 1, 3), []),                      # 9 months old
    ("CM1", None, date(2025, 11, 3), []),                     # 11 months 30 days
    ("CM1", None, date(2025, 11, 2), ["baby_over_age_limit"]),  # 12 months
    ("CM1", date(2025, 6, 1), None, ["baby_over_age_limit"]),  # due date long past
    ("CM1", date(2026, 10, 1), None, []),                     # due date just past
    ("SW1A", date(2027, 2, 1), None, ["outside_catchment"]),
    ("DE22", None, date(2024, 1, 1), ["outside_catchment", "baby_over_age_limit"]),
])
def test_eligibility_with_its_reasons(district, due, baby, reasons):
    assert domain.assess_eligibility(district, due, baby, RULES, TODAY) == {
        "eligible": not reasons, "reasons": reasons}


def test_the_age_limit_is_the_sites():
    baby = date(2025, 8, 1)   # 15 months
    assert not domain.assess_eligibility("CM1", None, baby, RULES, TODAY)["eligible"]
    assert domain.assess_eligibility(
        "CM1", None, baby, dict(RULES, child_age_limit_months=24), TODAY)["eligible"]


def test_outside_the_catchment_is_kept_and_flagged_for_signposting():
    referral, [event] = receive(load(postcode="SW1A 1AA"))
    assert referral["status"] == "received"
    assert referral["needs_signposting"] is True
    assert referral["eligibility"] == {"eligible": False, "reasons": ["outside_catchment"]}
    assert event["type"] == "referral.received" and event["data"]["area"] == "SW1A"
    inside, _ = receive()
    assert inside["needs_signposting"] is False


# -- duplicates -------------------------------------------------------------------

@pytest.mark.parametrize("a, b, close", [
    ("Alex Parent", "alex  parent", True), ("Alex Parent", "Alex Parant", True),
    ("Alexandra Smith", "Alexandra Smyth", True), ("Alex Parent", "Sam Parent", False),
    ("Jo Li", "Jo Lu", False), ("Maria Kowalska", "Marek Kowalski", False),
])
def test_names_close(a, b, close):
    assert domain.names_close(a, b) is close


def test_existing_parent_by_phone_or_by_dob_postcode_and_close_name():
    assert domain.existing_parent("Alex Parent", ["p-1"], []) == "p-1"
    assert domain.existing_parent("Alex Parent", [], [("p-2", "Sam Other"),
                                                      ("p-3", "alex parrent")]) == "p-3"
    assert domain.existing_parent("Alex Parent", [], [("p-2", "Sam Other")]) is None
    assert domain.existing_parent("Alex Parent", [], []) is None


def test_lookup_values_are_normalised():
    a = domain.lookup_values(load(phone="+44 7700 900123", postcode="cm12ab"))
    b = domain.lookup_values(load(phone="07700900123", postcode="CM1 2AB"))
    c = domain.lookup_values(load(phone="07700900123", name=" alex   PARENT"))
    assert a == b == c == {"phone": "07700900123", "dob_postcode": "1995-04-12|CM1 2AB",
                           "exact": "1995-04-12|CM1 2AB|alex parent"}
    assert domain.lookup_values(load(phone=None, email="a@b.test"))["phone"] is None


# -- triage: every legal and illegal move -----------------------------------------

ARGS = {"decline": {"reason": "not_eligible"}, "close": {"reason": "completed"},
        "signpost": {"signposted_to": "Home-Start Essex"}}
LEGAL = {(status, action) for action, (sources, _) in domain.TRANSITIONS.items()
         for status in sources}
EXPECTED_LEGAL = {
    ("received", "start_triage"), ("received", "withdraw"),
    ("in_triage", "accept"), ("in_triage", "decline"), ("in_triage", "signpost"),
    ("in_triage", "withdraw"), ("accepted", "match"), ("matched", "activate"),
    ("accepted", "close"), ("matched", "close"), ("active", "close")}
EVENTS = {"accept": "referral.accepted", "decline": "referral.declined",
          "signpost": "referral.signposted", "withdraw": "referral.withdrawn",
          "close": "referral.closed"}


def referral_in(status, version=3):
    referral, _ = receive()
    return dict(referral, status=status, version=version)


def test_the_legal_moves_are_exactly_those_of_the_issue():
    assert LEGAL == EXPECTED_LEGAL


@pytest.mark.parametrize("status, action", sorted(EXPECTED_LEGAL))
def test_every_legal_move(status, action):
    update, events = domain.triage(referral_in(status), action, NOW,
                                   actor={"id": "u-1", "role": "site_coordinator"},
                                   **ARGS.get(action, {}))
    target = domain.TRANSITIONS[action][1]
    assert update["$set"]["status"] == target
    assert update["$set"]["version"] == 4
    assert update["$push"]["status_history"]["status"] == target
    assert update["$push"]["status_history"]["by"]["id"] == "u-1"
    assert [e["type"] for e in events] == ([EVENTS[action]] if action in EVENTS else [])
    for event in events:   # each is valid against its catalogue schema
        CATALOGUE[event["type"]].schema().load(event["data"])


@pytest.mark.parametrize("status, action", sorted(
    (s, a) for s in domain.STATUSES for a in domain.ACTIONS
    if (s, a) not in EXPECTED_LEGAL))
def test_every_illegal_move_is_a_conflict(status, action):
    with pytest.raises(Conflict):
        domain.triage(referral_in(status), action, NOW, **ARGS.get(action, {}))


def test_accepted_event_carries_what_matching_needs_and_nothing_personal():
    _, [event] = domain.triage(referral_in("in_triage"), "accept", NOW)
    assert event["data"] == {
        "referral_id": "r-1", "preferred_language": "pl", "interpreter_needed": True,
        "area": "CM1", "needs": ["anxiety", "isolation"],
        "preferred_support": ["home_visit", "video"], "due_month": "2027-02",
        "accepted_at": NOW.isoformat()}


def test_decline_and_close_need_a_reason_from_the_list_signpost_a_place():
    with pytest.raises(ValidationFailed):
        domain.triage(referral_in("in_triage"), "decline", NOW, reason="because")
    with pytest.raises(ValidationFailed):
        domain.triage(referral_in("active"), "close", NOW)
    with pytest.raises(ValidationFailed):
        domain.triage(referral_in("in_triage"), "signpost", NOW, signposted_to=" ")
    update, [event] = domain.triage(referral_in("in_triage"), "signpost", NOW,
                                    signposted_to="Home-Start Essex")
    assert update["$set"]["personal.signposted_to"] == "Home-Start Essex"
    assert "Home-Start" not in str(event)


def test_triage_body_names_what_each_action_needs():
    schema = TriageSchema()
    assert load_or_fail(schema, {"action": "accept", "version": 1})
    for body, field in (
            ({"action": "decline", "version": 1}, "reason"),
            ({"action": "close", "version": 1, "reason": "not_eligible"}, "reason"),
            ({"action": "signpost", "version": 1}, "signposted_to"),
            ({"action": "accept", "version": 1, "reason": "completed"}, "reason"),
            ({"action": "fly", "version": 1}, "action"),
            ({"action": "accept"}, "version"),
            ({"action": "accept", "version": 0}, "version")):
        with pytest.raises(ValidationFailed) as refused:
            load_or_fail(schema, body)
        assert set(refused.value.errors) == {field}, body


def test_allowed_actions():
    assert domain.allowed_actions("in_triage") == ["accept", "decline", "signpost",
                                                   "withdraw"]
    assert domain.allowed_actions("closed") == []


# -- safeguarding ----------------------------------------------------------------

def test_concern_raised_acknowledged_resolved_with_no_notes_in_events():
    referral = referral_in("matched")
    actor = {"id": "u-1", "role": "site_coordinator"}
    concern, [raised] = domain.raise_concern(referral, "c-1", "urgent",
                                             "Partner shouted at visit", NOW, actor)
    assert concern["status"] == "open" and concern["notes"] == "Partner shouted at visit"
    assert raised["type"] == "safeguarding.concern_raised"
    CATALOGUE[raised["type"]].schema().load(raised["data"])
    assert "shouted" not in str(raised) and raised["data"]["severity"] == "urgent"
    update, [seen] = domain.acknowledge_concern(concern, NOW, None, actor)
    assert update["$set"]["status"] == "acknowledged"
    assert seen["type"] == "safeguarding.concern_acknowledged"
    assert CATALOGUE[seen["type"]].schema().load(seen["data"]) == {
        "concern_id": "c-1", "referral_id": referral["_id"], "severity": "urgent",
        "acknowledged_at": NOW.isoformat()}
    acknowledged = dict(concern, **update["$set"])
    with pytest.raises(Conflict):
        domain.acknowledge_concern(acknowledged, NOW)
    update, [resolved] = domain.resolve_concern(acknowledged, NOW, "Police informed", actor)
    assert update["$set"]["status"] == "resolved"
    assert "acknowledged_at" not in update["$set"]
    assert "Police" not in str(resolved)
    CATALOGUE[resolved["type"]].schema().load(resolved["data"])
    with pytest.raises(Conflict):
        domain.resolve_concern(dict(concern, status="resolved"), NOW, "again")


def test_resolving_an_open_concern_acknowledges_it_and_severity_is_checked():
    concern, _ = domain.raise_concern(referral_in("received"), "c-2", "low", "n", NOW)
    update, events = domain.resolve_concern(concern, NOW, "fine")
    assert update["$set"]["acknowledged_at"] == NOW
    assert [e["type"] for e in events] == ["safeguarding.concern_acknowledged",
                                           "safeguarding.concern_resolved"]
    with pytest.raises(ValidationFailed):
        domain.raise_concern(referral_in("received"), "c-3", "apocalyptic", "n", NOW)


# -- contact details (for messaging, over RPC only) ------------------------------

def test_contact_details_of_a_professional_referral_split_the_referrers_contact():
    referral, _ = receive()
    personal = {"name": "Alex Parent", "email": None, "phone": "+44 7700 900123",
                "referrer_name": "Pat HV", "referrer_contact": "01245 000000"}
    details = domain.contact_details(referral, personal)
    assert details == {
        "parent": {"name": "Alex Parent", "email": None, "phone": "+44 7700 900123",
                   "preferred_language": "pl", "consent_to_contact": True},
        "referrer": {"name": "Pat HV", "email": None, "phone": "01245 000000"}}
    by_email = domain.contact_details(referral, dict(personal,
                                                     referrer_contact=" pat@nhs.test "))
    assert by_email["referrer"] == {"name": "Pat HV", "email": "pat@nhs.test",
                                    "phone": None}


def test_contact_details_of_a_self_referral_have_no_referrer():
    form = SelfReferralSchema().to_referral(load_or_fail(SelfReferralSchema(), {
        k: v for k, v in FORM.items() if k not in (
            "source", "referrer_name", "referrer_contact", "consent_obtained_at",
            "consent_obtained_how")} | {"site_code": "essex"}), NOW)
    referral, _ = receive(form)
    details = domain.contact_details(referral, {"name": "Alex Parent", "email": "a@b.test",
                                                "phone": None, "referrer_name": None,
                                                "referrer_contact": None})
    assert details["referrer"] is None
    assert details["parent"]["email"] == "a@b.test"
