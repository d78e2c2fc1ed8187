"""The messaging rules, without a broker, a database or a clock."""
from datetime import date, datetime, time, timedelta, timezone

import pytest

from services.messaging import domain
from services.messaging.domain import EMAIL, SMS, QuietHours

LONDON_NIGHT = QuietHours(time(21, 0), time(8, 0), "Europe/London")


def utc(*parts):
    return datetime(*parts, tzinfo=timezone.utc)


def person(kind=domain.PARENT, email="a@example.test", phone="07700 900123", urgent=False):
    return domain.Recipient(kind, "p1", "Alex", email, phone, "en", urgent)


REFERRAL_DETAILS = {
    "parent": {"name": "Alex Parent", "email": "alex@example.test", "phone": "07700 900123",
               "preferred_language": "pl", "consent_to_contact": True},
    "referrer": {"name": "Sam Midwife", "email": "sam@nhs.test", "phone": None},
}


# -- who is told -------------------------------------------------------------------

def test_referral_received_tells_the_referrer_and_the_consenting_parent():
    found = domain.recipients(domain.REFERRAL_RECEIVED, {"referral_id": "r1"},
                              {"referral": REFERRAL_DETAILS})
    assert [(r.recipient_kind, r.person_id, r.language) for r in found] == [
        ("referrer", "r1", "en"), ("parent", "r1", "pl")]
    assert not any(r.urgent for r in found)


def test_a_parent_without_consent_and_a_referrer_without_an_address_are_not_told():
    details = {"referral": {"parent": dict(REFERRAL_DETAILS["parent"], consent_to_contact=False),
                            "referrer": {"name": "Sam", "email": None, "phone": None}}}
    assert domain.recipients(domain.REFERRAL_RECEIVED, {"referral_id": "r1"}, details) == []
    self_referral = {"referral": dict(REFERRAL_DETAILS, referrer=None)}
    assert [r.recipient_kind for r in domain.recipients(
        domain.REFERRAL_RECEIVED, {"referral_id": "r1"}, self_referral)] == ["parent"]


@pytest.mark.parametrize("kind", [domain.MATCH_PROPOSED, domain.MATCH_CONFIRMED])
def test_matches_tell_the_volunteer_and_the_parent(kind):
    found = domain.recipients(kind, {"referral_id": "r1", "volunteer_id": "v1", "match_id": "m"},
                              {"referral": REFERRAL_DETAILS,
                               "volunteer": {"name": "Vic", "email": "v@x.test", "phone": None,
                                             "preferred_language": "en"}})
    assert [(r.recipient_kind, r.person_id) for r in found] == [("volunteer", "v1"),
                                                                ("parent", "r1")]


def test_a_safeguarding_concern_is_urgent_to_every_coordinator_of_the_site():
    staff = [{"user_id": "u1", "name": "C One", "email": "c1@x.test", "role": "site_coordinator"},
             {"user_id": "u2", "name": "C Two", "email": "c2@x.test", "role": "site_coordinator"}]
    found = domain.recipients(domain.SAFEGUARDING_CONCERN,
                              {"concern_id": "c", "referral_id": "r1", "severity": "high"},
                              {"staff": staff})
    assert [(r.recipient_kind, r.person_id, r.urgent) for r in found] == [
        ("coordinator", "u1", True), ("coordinator", "u2", True)]


def test_dbs_expiring_tells_the_volunteer_and_the_coordinators():
    found = domain.recipients(domain.DBS_EXPIRING, {"volunteer_id": "v1"},
                              {"volunteer": {"name": "Vic", "email": "v@x.test"},
                               "staff": [{"user_id": "u1", "name": "C", "email": "c@x.test"}]})
    assert [r.recipient_kind for r in found] == ["volunteer", "coordinator"]


def test_lookups_cover_every_audience():
    needs = {domain.PARENT: domain.REFERRAL, domain.REFERRER: domain.REFERRAL,
             domain.VOLUNTEER: domain.VOLUNTEER_DETAILS, domain.COORDINATOR: domain.STAFF_LIST}
    for kind, audiences in domain.AUDIENCES.items():
        assert {needs[a] for a in audiences} == set(domain.LOOKUPS[kind]), kind


# -- on which channel -----------------------------------------------------------------

def test_the_default_order_picks_email_first():
    assert domain.choose_channel(person(), None, {EMAIL, SMS}) == (EMAIL, None)


def test_a_preferred_channel_comes_first():
    assert domain.choose_channel(person(), {"preferred_channel": SMS}, {EMAIL, SMS}) == (SMS, None)


def test_an_opt_out_stops_that_channel_and_falls_back_to_another():
    assert domain.choose_channel(person(), {"opt_outs": [EMAIL]}, {EMAIL, SMS}) == (SMS, None)
    assert domain.choose_channel(person(phone=None), {"opt_outs": [EMAIL]},
                                 {EMAIL, SMS}) == (None, domain.OPTED_OUT)
    assert domain.choose_channel(person(), {"opt_outs": [EMAIL, SMS],
                                            "preferred_channel": None},
                                 {EMAIL, SMS}) == (None, domain.OPTED_OUT)


def test_only_channels_with_an_address_and_set_up_here_are_used():
    assert domain.choose_channel(person(email=None), None, {EMAIL, SMS}) == (SMS, None)
    assert domain.choose_channel(person(email=None, phone=None), None,
                                 {EMAIL, SMS}) == (None, domain.NO_CONTACT_DETAILS)
    assert domain.choose_channel(person(email=None), None, {EMAIL}) == (None, domain.NO_CHANNEL)


# -- when -------------------------------------------------------------------------------

@pytest.mark.parametrize("now, ends", [
    (utc(2026, 11, 22, 21, 30), utc(2026, 11, 23, 8, 0)),    # winter: London = UTC
    (utc(2026, 11, 23, 2, 0), utc(2026, 11, 23, 8, 0)),
    (utc(2026, 11, 23, 7, 59), utc(2026, 11, 23, 8, 0)),
    (utc(2026, 11, 23, 8, 0), None),
    (utc(2026, 11, 23, 20, 59), None),
    (utc(2026, 7, 1, 20, 30), utc(2026, 7, 2, 7, 0)),       # summer: 21:30 BST, ends 08:00 BST
    (utc(2026, 7, 1, 19, 59), None),
])
def test_quiet_hours_wrap_midnight_in_local_time(now, ends):
    assert domain.quiet_hours_end(now, LONDON_NIGHT) == ends


def test_quiet_hours_within_one_day_and_none_at_all():
    lunch = QuietHours(time(12, 0), time(13, 0), "UTC")
    assert domain.quiet_hours_end(utc(2026, 1, 5, 12, 30), lunch) == utc(2026, 1, 5, 13, 0)
    assert domain.quiet_hours_end(utc(2026, 1, 5, 13, 0), lunch) is None
    never = QuietHours(time(0, 0), time(0, 0), "UTC")
    assert domain.quiet_hours_end(utc(2026, 1, 5, 3, 0), never) is None


def test_no_sms_at_night_except_urgent_to_staff_and_email_any_time():
    night = utc(2026, 11, 22, 23, 0)
    morning = utc(2026, 11, 23, 8, 0)
    assert domain.not_before(night, SMS, domain.PARENT, False, LONDON_NIGHT) == morning
    assert domain.not_before(night, SMS, domain.PARENT, True, LONDON_NIGHT) == morning
    assert domain.not_before(night, SMS, domain.COORDINATOR, True, LONDON_NIGHT) == night
    assert domain.not_before(night, SMS, domain.COORDINATOR, False, LONDON_NIGHT) == morning
    assert domain.not_before(night, EMAIL, domain.PARENT, False, LONDON_NIGHT) == night
    assert domain.not_before(utc(2026, 11, 22, 12, 0), SMS, domain.PARENT, False,
                             LONDON_NIGHT) == utc(2026, 11, 22, 12, 0)


def test_a_reminder_goes_the_day_before_at_the_set_time_or_at_once_if_later():
    contact = utc(2026, 11, 25, 14, 0)
    assert domain.reminder_time(contact, utc(2026, 11, 20, 9, 0), time(10, 0),
                                "Europe/London") == utc(2026, 11, 24, 10, 0)
    late = utc(2026, 11, 24, 18, 0)
    assert domain.reminder_time(contact, late, time(10, 0), "Europe/London") == late
    assert domain.reminder_time(contact, contact + timedelta(minutes=1), time(10, 0),
                                "Europe/London") is None
    summer = utc(2026, 7, 2, 9, 0)   # 10:00 BST on 2 July
    assert domain.reminder_time(summer, utc(2026, 6, 1, 0, 0), time(10, 0),
                                "Europe/London") == utc(2026, 7, 1, 9, 0)


# -- after a failed attempt ------------------------------------------------------------------

def test_retry_delays_grow_and_the_last_one_repeats():
    delays = [30, 120, 600]
    assert [domain.retry_delay(n, delays) for n in (1, 2, 3, 4, 9)] == [30, 120, 600, 600, 600]


def test_transient_failures_retry_until_the_last_attempt_and_permanent_ones_fail_at_once():
    now = utc(2026, 11, 22, 12, 0)
    assert domain.after_failure(1, 3, True, now, [30, 120]) == (
        domain.RETRYING, now + timedelta(seconds=30))
    assert domain.after_failure(2, 3, True, now, [30, 120]) == (
        domain.RETRYING, now + timedelta(seconds=120))
    assert domain.after_failure(3, 3, True, now, [30, 120]) == (domain.FAILED, None)
    assert domain.after_failure(1, 3, False, now, [30, 120]) == (domain.FAILED, None)


# -- what the templates see --------------------------------------------------------------------

def test_the_context_has_every_variable_of_its_kind_and_no_none():
    from services.messaging.templates import SAMPLES
    recipient = person(domain.VOLUNTEER)
    data = {domain.REFERRAL_RECEIVED: {"referral_id": "abcdef123456",
                                       "received_at": "2026-11-22T10:00:00Z"},
            domain.MATCH_PROPOSED: {"match_id": "m1", "referral_id": "r", "volunteer_id": "v"},
            domain.MATCH_CONFIRMED: {"match_id": "m1", "referral_id": "r", "volunteer_id": "v"},
            domain.SAFEGUARDING_CONCERN: {"concern_id": "c1", "referral_id": "r1",
                                          "severity": "urgent"},
            domain.DBS_EXPIRING: {"volunteer_id": "v", "expires_on": date(2026, 12, 1)},
            domain.CONTACT_REMINDER: {"referral_id": "r", "volunteer_id": "v",
                                      "contact_at": "2026-11-25T14:00:00+00:00", "mode": None}}
    for kind, event_data in data.items():
        context = domain.template_context(kind, recipient, event_data,
                                          {"referral": REFERRAL_DETAILS})
        assert set(context) == set(SAMPLES[kind]), kind
        assert None not in context.values()
    context = domain.template_context(domain.REFERRAL_RECEIVED, recipient,
                                      data[domain.REFERRAL_RECEIVED], {})
    assert context["reference"] == "ABCDEF12" and context["received_on"] == "22 November 2026"
    reminder = domain.template_context(domain.CONTACT_REMINDER, recipient,
                                       data[domain.CONTACT_REMINDER], {})
    assert reminder["contact_at"] == "Wednesday 25 November at 14:00"
