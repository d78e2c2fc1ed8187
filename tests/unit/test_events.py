"""The envelope and the catalogue, with no broker."""
from datetime import datetime, timezone

import pytest

from shared.errors import EventRejected
from shared.events import CATALOGUE, exchange_name_for, load_event, new_event

NOW = datetime(2026, 11, 1, 9, 30, tzinfo=timezone.utc)
GOOD = {"referral_id": "r1", "source": "midwife", "preferred_language": "en",
        "area": "SW1A", "due_month": "2027-03", "received_at": NOW.isoformat(),
        "triage_due_at": "2026-11-06T09:30:00+00:00"}


def make(**overrides):
    return new_event("referral.received", dict(GOOD, **overrides),
                     site_id="essex", subject="r1", now=NOW,
                     correlation_id="corr-1")


def test_envelope_carries_cloudevents_and_alongside_attributes():
    event = make()
    assert event["specversion"] == "1.0"
    assert event["type"] == "referral.received"
    assert event["source"] == "/alongside/referrals"
    assert event["time"] == "2026-11-01T09:30:00Z"
    assert event["datacontenttype"] == "application/json"
    assert event["dataschema"] == "urn:alongside:event:referral.received:1"
    assert (event["siteid"], event["correlationid"], event["causationid"]) == (
        "essex", "corr-1", None)
    assert event["id"] and event["data"]["area"] == "SW1A"


def test_round_trip_loads_with_the_same_schema():
    envelope, data = load_event(make())
    assert data == GOOD
    assert envelope["time"] == NOW


def test_dispatch_refuses_invalid_data_naming_the_field():
    with pytest.raises(EventRejected) as refused:
        make(source="plumber")
    assert "source" in refused.value.errors["data"]


def test_dispatch_refuses_personal_fields_the_catalogue_does_not_name():
    with pytest.raises(EventRejected) as refused:
        make(parent_name="Jo Bloggs")
    assert refused.value.errors["data"]["parent_name"] == ["Unknown field."]


def test_unknown_type_is_refused_on_both_sides():
    with pytest.raises(EventRejected):
        new_event("referral.teleported", {}, site_id="essex", now=NOW)
    body = dict(make(), type="referral.teleported")
    with pytest.raises(EventRejected) as refused:
        load_event(body)
    assert "type" in refused.value.errors


def test_handler_refuses_a_broken_envelope_with_field_errors():
    body = make()
    del body["siteid"]
    body["specversion"] = "0.3"
    with pytest.raises(EventRejected) as refused:
        load_event(body)
    assert set(refused.value.errors) == {"siteid", "specversion"}


def test_handler_refuses_invalid_data_even_if_the_envelope_is_fine():
    body = make()
    body["data"]["area"] = "not a district"
    with pytest.raises(EventRejected) as refused:
        load_event(body)
    assert "area" in refused.value.errors["data"]


def test_handler_refuses_non_objects():
    with pytest.raises(EventRejected):
        load_event("referral.received")


def test_every_event_belongs_to_a_site():
    with pytest.raises(EventRejected):
        new_event("referral.received", GOOD, site_id="", now=NOW)


def test_catalogue_entries_name_their_owner_exchange():
    for name, entry in CATALOGUE.items():
        assert exchange_name_for(name) == f"{entry.source_service}.events"
