"""A handler that keeps failing: retried with backoff, dead-lettered after
N attempts with its error, and replayed by ops once the fault is fixed."""
from nameko.rpc import rpc

from shared.deadletters import count, list_dead_letters, replay
from shared.events import load_event
from shared.inbox import Inbox
from shared.messaging import event_handler
from shared.service_base import ServiceBase
from shared.storage import Database
from tests.support import metric_value, referral_received, wait_until


class Fault:
    """Stands for a real fault, say a bug fixed by a deploy."""
    broken = True
    attempts = 0


class FragileService(ServiceBase):
    name = "fragile"
    db = Database()
    inbox = Inbox()

    @event_handler("referrals", "referral.received")
    def on_referral(self, body):
        envelope, data = load_event(body)
        Fault.attempts += 1
        if Fault.broken:
            raise RuntimeError("projection bug")
        self.inbox.apply_once(envelope, lambda session: self.db.applied.insert_one(
            {"_id": envelope["id"]}, session=session))

    @rpc
    def applied(self):
        return [d["_id"] for d in self.db.applied.find()]


def test_poison_message_is_dead_lettered_after_n_attempts_and_replayed(
        start_service, rabbit_config, broker):
    Fault.broken, Fault.attempts = True, 0
    amqp_uri = rabbit_config["AMQP_URI"]
    container, config = start_service(
        FragileService, config_from="reporting",
        EVENTS={"MAX_ATTEMPTS": 3, "RETRY_DELAYS_MS": [50, 100]})
    event = referral_received()
    broker.publish(event)

    wait_until(lambda: count(amqp_uri, "fragile") == 1, what="a dead letter")
    assert Fault.attempts == 3   # the first try and two retries, then no more
    [dead] = list_dead_letters(amqp_uri, "fragile")
    assert dead["event_id"] == event["id"] and dead["attempts"] == 3
    assert dead["error"].startswith("RuntimeError: projection bug")
    assert dead["queue"] == "evt-referrals-referral.received--fragile.on_referral"
    # Listing does not consume.
    assert count(amqp_uri, "fragile") == 1
    assert metric_value(config, "alongside_event_handling_failures_total",
                        event_type="referral.received") == 3
    assert metric_value(config, "alongside_dead_letters") == 1
    database = next(d for d in container.dependencies if d.attr_name == "db").database
    assert database.applied.count_documents({}) == 0

    Fault.broken = False   # the fix is deployed
    replayed = replay(amqp_uri, "fragile")
    assert [r["event_id"] for r in replayed] == [event["id"]]
    wait_until(lambda: database.applied.count_documents({}) == 1, what="the replay")
    assert count(amqp_uri, "fragile") == 0
    assert Fault.attempts == 4


def test_replay_can_pick_events_by_id(start_service, rabbit_config, broker):
    Fault.broken, Fault.attempts = True, 0
    amqp_uri = rabbit_config["AMQP_URI"]
    container, _ = start_service(FragileService, config_from="reporting",
                                 EVENTS={"MAX_ATTEMPTS": 1})
    first, second = referral_received(), referral_received()
    broker.publish(first)
    broker.publish(second)
    wait_until(lambda: count(amqp_uri, "fragile") == 2, what="two dead letters")
    Fault.broken = False
    assert [r["event_id"] for r in replay(amqp_uri, "fragile", [second["id"]])] == [second["id"]]
    database = next(d for d in container.dependencies if d.attr_name == "db").database
    wait_until(lambda: database.applied.count_documents({}) == 1, what="the replay")
    assert database.applied.find_one()["_id"] == second["id"]
    assert [d["event_id"] for d in list_dead_letters(amqp_uri, "fragile")] == [first["id"]]
