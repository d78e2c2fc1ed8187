"""The event backbone end to end: real RabbitMQ, real MongoDB wire server,
the real referrals and reporting services in nameko containers."""
import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from services.referrals.service import ReferralsService
from services.reporting.service import ReportingService
from shared.errors import ValidationFailed
from shared.messaging import UNROUTED_QUEUE
from tests.support import (REFERRAL, SITE_RULES, encryption_settings, http_get,
                           metric_value, referral_received, wait_until)

REFERRAL = dict(REFERRAL, postcode="cm1 2ab")


def test_referral_travels_from_rpc_through_outbox_to_reporting(
        start_service, rabbit_config, broker):
    _, referrals_config = start_service(ReferralsService, ENCRYPTION=encryption_settings())
    reporting, _ = start_service(ReportingService)
    listener = broker.listen("referral.*")

    with ClusterRpcProxy(rabbit_config, context_data={"correlation_id": "corr-42"}) as cluster:
        referral = cluster.referrals.create_referral("essex", REFERRAL, SITE_RULES)
        counts = wait_until(lambda: cluster.reporting.referral_counts("essex"),
                            what="reporting to count the referral")
        archived = cluster.reporting.archived_events("essex")
        assert cluster.reporting.referral_counts("derby") == {}

    assert counts == {"midwife": 1}
    assert referral["postcode"] == "CM1 2AB" and referral["status"] == "received"
    [event] = archived
    assert event["type"] == "referral.received" and event["site_id"] == "essex"
    assert event["correlationid"] == "corr-42"   # carried from the RPC caller
    assert event["data"]["referral_id"] == referral["id"]
    # An integrator's own queue gets the same event, with no personal detail.
    seen = broker.get(listener)
    assert seen["id"] == event["id"] and seen["data"]["area"] == "CM1"
    assert "CM1 2AB" not in str(seen)
    assert metric_value(referrals_config, "alongside_events_published_total",
                        event_type="referral.received") == 1
    assert metric_value(referrals_config, "alongside_outbox_backlog") == 0


def test_bad_payload_is_refused_with_field_errors_and_nothing_stored(
        start_service, rabbit_config, broker):
    container, _ = start_service(ReferralsService, ENCRYPTION=encryption_settings())
    listener = broker.listen()
    with ClusterRpcProxy(rabbit_config) as cluster:
        with pytest.raises(ValidationFailed) as refused:
            cluster.referrals.create_referral(
                "essex", dict(REFERRAL, source="plumber", postcode="nowhere"),
                SITE_RULES)
        with pytest.raises(ValidationFailed):
            cluster.referrals.create_referral("essex", "not an object", SITE_RULES)
    assert set(refused.value.errors) == {"source", "postcode"}
    database = next(d for d in container.dependencies if d.attr_name == "db").database
    assert database.referrals.count_documents({}) == 0
    assert broker.depth(listener) == 0


def test_duplicate_delivery_is_applied_once(start_service, rabbit_config, broker):
    _, config = start_service(ReportingService)
    event = referral_received(source="gp")
    broker.publish(event)
    broker.publish(event)   # the broker redelivers, or the relay republishes
    wait_until(lambda: metric_value(config, "alongside_event_handling_duration_seconds_count",
                                    event_type="referral.received") == 2,
               what="both deliveries to be handled")
    with ClusterRpcProxy(rabbit_config) as cluster:
        assert cluster.reporting.referral_counts("essex") == {"gp": 1}
        assert len(cluster.reporting.archived_events("essex")) == 1


def test_invalid_event_goes_to_dead_letters_at_once_with_its_error(
        start_service, rabbit_config, broker):
    from shared.deadletters import count, list_dead_letters
    _, config = start_service(ReportingService)
    event = referral_received()
    event["data"]["source"] = "carrier pigeon"
    broker.publish(event)
    wait_until(lambda: count(rabbit_config["AMQP_URI"], "reporting") == 1,
               what="the event to be dead-lettered")
    [dead] = list_dead_letters(rabbit_config["AMQP_URI"], "reporting")
    assert dead["event_id"] == event["id"] and dead["attempts"] == 1
    assert "EventRejected" in dead["error"] and "source" in dead["error"]
    assert metric_value(config, "alongside_dead_letters") == 1
    with ClusterRpcProxy(rabbit_config) as cluster:
        assert cluster.reporting.archived_events("essex") == []


def test_an_event_no_queue_is_bound_to_is_caught_not_dropped(
        start_service, rabbit_config, broker):
    start_service(ReferralsService, ENCRYPTION=encryption_settings())   # no reporting: nobody listens
    with ClusterRpcProxy(rabbit_config) as cluster:
        referral = cluster.referrals.create_referral("essex", REFERRAL, SITE_RULES)
    caught = broker.get(UNROUTED_QUEUE)
    assert caught["type"] == "referral.received"
    assert caught["subject"] == referral["id"]


def test_health_and_metrics_endpoints(start_service, rabbit_config):
    _, config = start_service(ReferralsService, ENCRYPTION=encryption_settings())
    with ClusterRpcProxy(rabbit_config) as cluster:
        cluster.referrals.create_referral("essex", REFERRAL, SITE_RULES)
    assert http_get(config, "/health/live")[0] == 200
    status, body = http_get(config, "/health/ready")
    assert status == 200 and '"amqp": "ok"' in body and '"db": "ok"' in body
    _, text = http_get(config, "/metrics")
    for family in ("alongside_rpc_duration_seconds_bucket",
                   "alongside_http_request_duration_seconds_bucket",
                   "alongside_outbox_backlog", "alongside_dead_letters"):
        assert family in text, family
    assert metric_value(config, "alongside_rpc_duration_seconds_count",
                        method="create_referral", outcome="ok") == 1


def test_ready_is_503_when_the_broker_cannot_be_reached(start_service):
    container, config = start_service(ReferralsService, ENCRYPTION=encryption_settings())
    good_uri = config["AMQP_URI"]
    container.config["AMQP_URI"] = "amqp://guest:guest@127.0.0.1:1//"
    try:
        status, body = http_get(config, "/health/ready")
    finally:
        container.config["AMQP_URI"] = good_uri
    assert status == 503 and '"amqp": "failed' in body
    assert http_get(config, "/health/ready")[0] == 200
