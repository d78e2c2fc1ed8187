from datetime import datetime, timezone

import pytest

from services.referrals import domain
from services.referrals.schemas import NewReferralSchema
from shared.validation import load_or_fail
from shared.errors import ValidationFailed

NOW = datetime(2026, 11, 2, 10, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("text, expected", [
    ("sw1a1aa", "SW1A 1AA"), ("SW1A 1AA", "SW1A 1AA"), ("m1 1ae", "M1 1AE"),
    ("CM1  2AB", "CM1 2AB"), ("DE22 3NE", "DE22 3NE"), ("B33 8TH", "B33 8TH"),
    ("nope", None), ("SW1A", None), ("12345", None), ("", None), (None, None),
])
def test_normalise_postcode(text, expected):
    assert domain.normalise_postcode(text) == expected


def test_received_referral_and_its_event_carry_no_personal_detail():
    form = load_or_fail(NewReferralSchema(), {
        "source": "health_visitor", "postcode": "cm1 2ab",
        "preferred_language": "pl", "interpreter_needed": True,
        "due_date": "2027-02-14"})
    referral, [event] = domain.receive_referral("essex", form, "r-1", NOW)
    assert referral["status"] == "received"
    assert referral["postcode"] == "CM1 2AB"
    assert referral["due_date"] == "2027-02-14"
    assert event["type"] == "referral.received" and event["siteid"] == "essex"
    assert event["data"] == {
        "referral_id": "r-1", "source": "health_visitor",
        "preferred_language": "pl", "area": "CM1", "due_month": "2027-02",
        "received_at": NOW.isoformat()}
    assert "CM1 2AB" not in str(event)


def test_bad_referral_is_refused_field_by_field():
    with pytest.raises(ValidationFailed) as refused:
        load_or_fail(NewReferralSchema(), {
            "source": "plumber", "postcode": "XYZ", "due_date": "soon",
            "preferred_language": "English!", "parent_name": "Jo"})
    assert set(refused.value.errors) == {
        "source", "postcode", "due_date", "preferred_language", "parent_name"}


def test_missing_fields_are_named():
    with pytest.raises(ValidationFailed) as refused:
        load_or_fail(NewReferralSchema(), {})
    assert set(refused.value.errors) == {"source", "postcode"}
    with pytest.raises(ValidationFailed):
        load_or_fail(NewReferralSchema(), ["not", "an", "object"])


def test_due_date_is_optional():
    form = load_or_fail(NewReferralSchema(), {"source": "self", "postcode": "M1 1AE"})
    assert form["due_date"] is None and form["preferred_language"] == "en"
    _, [event] = domain.receive_referral("derby", form, "r-2", NOW)
    assert event["data"]["due_month"] is None
