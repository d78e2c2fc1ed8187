"""infra/rabbitmq/definitions.json on a real RabbitMQ (integration).

The definitions are imported into a fresh vhost through the management API
(as a compose broker imports them at boot); then the topology is the one the
services declare (a service starts on it without PRECONDITION_FAILED), and
the per-service policy really dead-letters a message a consumer rejects into
that service's dead-letter queue, where `shared.deadletters` lists it.
Skipped where the management plugin does not answer on 127.0.0.1:15672.
"""
import json
import uuid
from urllib.parse import quote

import pytest
import requests
from kombu import Connection, Producer

from shared.deadletters import list_dead_letters
from shared.messaging import dead_letter_queue, declare_event_topology, handler_queue_name
from tests.ops.catalogue import ROOT
from tests.support import wait_until

pytestmark = pytest.mark.integration

API = "http://127.0.0.1:15672/api"
AUTH = ("guest", "guest")


@pytest.fixture
def vhost():
    try:
        requests.get(f"{API}/overview", auth=AUTH, timeout=3).raise_for_status()
    except requests.RequestException as error:   # make test enables it (localctl broker)
        pytest.fail(f"RabbitMQ's management API does not answer ({error})")
    name = f"alongside-definitions-{uuid.uuid4().hex[:8]}"
    path = quote(name, safe="")
    requests.put(f"{API}/vhosts/{path}", auth=AUTH, timeout=10).raise_for_status()
    requests.put(f"{API}/permissions/{path}/guest", auth=AUTH, timeout=10,
                 json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
    yield name
    requests.delete(f"{API}/vhosts/{path}", auth=AUTH, timeout=30)


def broker_version():
    version = requests.get(f"{API}/overview", auth=AUTH, timeout=5).json()["rabbitmq_version"]
    return tuple(int(part) for part in version.split(".")[:2])


def import_definitions(vhost):
    """Imports the definitions into `vhost`; on a broker older than 3.12
    (this machine's is 3.10), which knows no `apply-to: quorum_queues`,
    without those policies (compose runs 3.13)."""
    definitions = json.loads((ROOT / "infra/rabbitmq/definitions.json").read_text())
    if broker_version() < (3, 12):
        definitions["policies"] = [p for p in definitions["policies"]
                                   if p["apply-to"] != "quorum_queues"]
    body = {key: [{**item, "vhost": vhost} for item in definitions[key]]
            for key in ("policies", "exchanges", "queues", "bindings")}
    answer = requests.post(f"{API}/definitions/{quote(vhost, safe='')}", auth=AUTH,
                           json=body, timeout=30)
    assert answer.status_code in (200, 201, 204), answer.text
    return definitions


def test_definitions_import_and_agree_with_what_the_services_declare(vhost):
    definitions = import_definitions(vhost)
    path = quote(vhost, safe="")
    policies = requests.get(f"{API}/policies/{path}", auth=AUTH, timeout=10).json()
    assert {p["name"] for p in policies} == {p["name"] for p in definitions["policies"]}
    queues = {q["name"] for q in requests.get(f"{API}/queues/{path}", auth=AUTH,
                                              timeout=10).json()}
    assert {q["name"] for q in definitions["queues"]} <= queues
    uri = f"amqp://guest:guest@127.0.0.1:5672/{path}"
    services = sorted(p.parent.name for p in ROOT.glob("services/*/config.yaml"))
    with Connection(uri) as connection:
        for service in services:
            # What every service declares at start: refused if it differed.
            declare_event_topology(connection.channel(), service)


def test_a_rejected_event_is_dead_lettered_to_the_service_queue(vhost):
    import_definitions(vhost)
    path = quote(vhost, safe="")
    uri = f"amqp://guest:guest@127.0.0.1:5672/{path}"
    queue_name = handler_queue_name("referrals", "referral.received", "reporting",
                                    "on_referral_received")
    with Connection(uri) as connection:
        channel = connection.channel()
        declare_event_topology(channel, "referrals")
        dead_letter_queue("reporting")(channel).declare()
        channel.queue_declare(queue_name, durable=True)
        queue_url = f"{API}/queues/{path}/{quote(queue_name, safe='')}"
        policy = wait_until(
            lambda: requests.get(queue_url, auth=AUTH, timeout=5).json().get("policy"),
            timeout=15, what="the policy applied to the handler queue")
        assert policy == "alongside-reporting-handlers"
        event_id = str(uuid.uuid4())
        Producer(channel).publish({"id": event_id, "type": "referral.received"},
                                  exchange="", routing_key=queue_name,
                                  serializer="json", delivery_mode=2)
        message = wait_until(lambda: channel.basic_get(queue_name), timeout=10,
                             what="the published message")
        # What the broker does to a message a consumer gives up on (or, on a
        # quorum queue, one redelivered past the delivery limit).
        channel.basic_reject(message.delivery_info["delivery_tag"], requeue=False)
    listed = wait_until(lambda: list_dead_letters(uri, "reporting"), timeout=10,
                        what="the dead letter in reporting.dead-letters")
    assert [entry["event_id"] for entry in listed] == [event_id]
