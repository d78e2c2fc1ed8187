"""Integrators over AMQP: the AsyncAPI document generated from the event
catalogue, and an integrator's own durable queue bound to its site's events
(real broker, real kombu consumer, the messaging service's integrator feed)."""
import json
import socket
from datetime import datetime, timezone

from urllib.parse import quote, urlsplit

import jsonschema
import pytest
import requests
from kombu import Connection, Consumer, Queue
from marshmallow import fields, validate

from shared.events import CATALOGUE, exchange_name_for, new_event, routing_key_for
from shared.events.asyncapi import INTEGRATION_EXCHANGE, build_asyncapi, data_schema
from tests.integration.test_webhooks import start_webhooks
from services.referrals.service import ReferralsService
from shared.messaging import event_exchange
from tests.support import (ADMIN, REFERRAL, assert_problem, encryption_settings,
                           referral_received, wait_until)

SAMPLES = {r"^[0-9]{4}-(0[1-9]|1[0-2])$": "2026-11",
           r"^[A-Z]{1,2}[0-9][A-Z0-9]?$": "CM1",
           r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$": "pa-IN"}


def example(field):
    """A value the field accepts, chosen from its own validators."""
    for validator in field.validators:
        if isinstance(validator, validate.OneOf):
            return list(validator.choices)[-1]
        if isinstance(validator, validate.Regexp):
            return SAMPLES[validator.regex.pattern]
        if isinstance(validator, validate.Range):
            return validator.min if validator.min is not None else validator.max
    if isinstance(field, fields.List):
        return [example(field.inner)]
    return {fields.Boolean: True, fields.Integer: 3, fields.Float: 2.5,
            fields.Date: "2026-11-02", fields.Dict: {}}.get(type(field), "an-id-1")


def examples(event_type):
    """Data for the type, every field set; and again with every nullable
    field null. Both pass the catalogue's own check (new_event)."""
    schema_fields = CATALOGUE[event_type].schema().fields
    full = {name: example(field) for name, field in schema_fields.items()}
    nulls = dict(full, **{name: None for name, field in schema_fields.items()
                          if field.allow_none})
    return [new_event(event_type, data, site_id="essex", now=_now())["data"]
            for data in (full, nulls)]


def _now():
    return datetime.now(timezone.utc)


def message_validator(document, event_type):
    return jsonschema.Draft7Validator({
        "$ref": f"#/components/messages/{event_type}/payload",
        "components": document["components"]})


def test_asyncapi_names_every_event_and_its_schemas_accept_what_the_catalogue_does():
    document = build_asyncapi()
    assert document["asyncapi"] == "2.6.0"
    for event_type, entry in CATALOGUE.items():
        channel = document["channels"][routing_key_for(event_type)]
        amqp = channel["bindings"]["amqp"]
        assert amqp["is"] == "routingKey"
        assert amqp["exchange"]["name"] == exchange_name_for(event_type)
        assert amqp["exchange"]["type"] == "topic"
        feed = document["channels"][f"{{siteid}}.{event_type}"]
        assert feed["bindings"]["amqp"]["exchange"]["name"] == INTEGRATION_EXCHANGE
        message = document["components"]["messages"][event_type]
        assert message["summary"] == entry.description
        schema = data_schema(document, event_type)
        jsonschema.Draft7Validator.check_schema(schema)
        for data in examples(event_type):
            jsonschema.validate(data, schema)
            envelope = new_event(event_type, data, site_id="essex", now=_now())
            message_validator(document, event_type).validate(envelope)
        # ... and refuses what the catalogue refuses.
        data = examples(event_type)[0]
        required = [n for n, f in entry.schema().fields.items() if f.required]
        assert required, event_type
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({k: v for k, v in data.items() if k != required[0]},
                                schema)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(dict(data, parent_name="Alex"), schema)
        envelope = new_event(event_type, data, site_id="essex", now=_now())
        with pytest.raises(jsonschema.ValidationError):
            message_validator(document, event_type).validate(
                dict(envelope, type="something.else"))
    assert set(document["components"]["messages"]) == set(CATALOGUE)


def test_the_gateway_serves_the_document_and_a_real_event_fits_it(world, broker):
    api, _, sites, coordinators = world
    listener = broker.listen("referral.received")
    answer = api.call("GET", "/api/v1/asyncapi.json")   # public, like openapi.json
    assert answer.status_code == 200, answer.text
    document = answer.json()
    assert set(document["components"]["messages"]) == set(CATALOGUE)
    assert api.call("POST", "/api/v1/referrals", coordinators["essex"],
                    json=REFERRAL).status_code == 201
    event = broker.get(listener)   # as the referrals service published it
    message_validator(document, "referral.received").validate(event)
    jsonschema.validate(event["data"], data_schema(document, "referral.received"))


def integrator_key(api, coordinator, name):
    answer = api.call("POST", "/api/v1/api-keys", coordinator,
                      json={"name": name, "role": "integrator"})
    assert answer.status_code == 201, answer.text
    return answer.json()


def drain(amqp_uri, queue_name, seconds=1.5, reject=False):
    """What a real kombu consumer gets from the queue within ``seconds``."""
    got = []
    with Connection(amqp_uri) as connection:
        def on_message(body, message):
            got.append(json.loads(body) if isinstance(body, (str, bytes)) else body)
            message.reject() if reject else message.ack()

        with Consumer(connection, queues=[Queue(queue_name, no_declare=True)],
                      callbacks=[on_message], accept=["json"]):
            try:
                while True:
                    connection.drain_events(timeout=seconds)
            except socket.timeout:
                pass
    return got


@pytest.fixture
def managed_world(request, start_service, start_gateway):
    """Two sites and their coordinators, with a gateway that makes broker
    users through the management API (removed again afterwards)."""
    management = request.config.getoption("RABBIT_API_URI")
    start_service(ReferralsService, ENCRYPTION=encryption_settings())
    api, gateway = start_gateway(RABBITMQ_MANAGEMENT_URL=management)
    admin = api.login(*ADMIN)
    sites, coordinators = {}, {}
    for code in ("essex", "derby"):
        sites[code] = api.call("POST", "/api/v1/sites", admin, json={
            "name": code.title(), "code": code, "catchment": ["CM1"]}).json()["id"]
        api.call("POST", "/api/v1/users", admin, json={
            "email": f"c@{code}.test", "name": "c", "password": "a long enough pw",
            "role": "site_coordinator", "site_id": sites[code]})
        coordinators[code] = api.login(f"c@{code}.test", "a long enough pw")
    users = []
    yield api, sites, coordinators, users, gateway
    parts = urlsplit(management)
    for user in users:
        requests.delete(f"{parts.scheme}://{parts.hostname}:{parts.port}/api/users/"
                        f"{quote(user, safe='')}", auth=(parts.username, parts.password),
                        timeout=5)


def test_an_integrators_queue_gets_its_own_sites_events_only(
        managed_world, start_service, broker, rabbit_config):
    api, sites, coordinators, users, gateway = managed_world
    start_webhooks(start_service)   # the messaging service feeds integrators
    essex_key = integrator_key(api, coordinators["essex"], "Essex council CRM")
    derby_key = integrator_key(api, coordinators["derby"], "Derby trust")

    # Only an integrator's key, only catalogue types.
    assert_problem(api.call("POST", "/api/v1/integrations/queues", coordinators["essex"],
                            json={"event_types": ["referral.received"]}), 403)
    problem = assert_problem(api.call("POST", "/api/v1/integrations/queues",
                                      key=essex_key["key"],
                                      json={"event_types": ["parent.named"]}), 422)
    assert "event_types" in problem["errors"]
    assert_problem(api.call("POST", "/api/v1/integrations/queues", key=essex_key["key"],
                            json={"event_types": []}), 422)

    answers = {}
    for code, key in (("essex", essex_key), ("derby", derby_key)):
        answer = api.call("POST", "/api/v1/integrations/queues", key=key["key"],
                          json={"event_types": ["referral.received", "match.confirmed"]})
        assert answer.status_code == 201, answer.text
        answers[code] = answer.json()
        users.append(answers[code]["credentials"]["username"])
    essex = answers["essex"]
    assert essex["queue"] == f"integrator.{sites['essex']}.{essex_key['id']}"
    assert essex["dead_letter_queue"] == essex["queue"] + ".dead-letters"
    assert essex["vhost"] == rabbit_config["vhost"]
    assert {b["routing_key"] for b in essex["bindings"]} == {
        f"{sites['essex']}.referral.received", f"{sites['essex']}.match.confirmed"}
    assert all(b["exchange"] == INTEGRATION_EXCHANGE for b in essex["bindings"])

    mine, theirs = (referral_received(site=sites["essex"]),
                    referral_received(site=sites["derby"]))
    broker.publish(theirs)
    broker.publish(mine)
    wait_until(lambda: broker.depth(essex["queue"]) >= 1, what="the essex event")
    wait_until(lambda: broker.depth(answers["derby"]["queue"]) >= 1, what="derby's")
    amqp_uri = rabbit_config["AMQP_URI"]
    assert [e["id"] for e in drain(amqp_uri, essex["queue"])] == [mine["id"]]
    assert [e["id"] for e in drain(amqp_uri, answers["derby"]["queue"])] == [theirs["id"]]

    # Narrowing the types unbinds the others; what the consumer rejects
    # goes to the queue's own dead-letter queue.
    narrowed = api.call("POST", "/api/v1/integrations/queues", key=essex_key["key"],
                        json={"event_types": ["match.confirmed"]})
    assert narrowed.status_code == 201, narrowed.text
    assert [b["routing_key"] for b in narrowed.json()["bindings"]] == [
        f"{sites['essex']}.match.confirmed"]
    broker.publish(referral_received(site=sites["essex"]))
    confirmed = new_event("match.confirmed", examples("match.confirmed")[0],
                          site_id=sites["essex"], now=_now())
    broker.publish(confirmed)
    wait_until(lambda: broker.depth(essex["queue"]) >= 1, what="the match event")
    assert [e["id"] for e in drain(amqp_uri, essex["queue"], reject=True)] == [
        confirmed["id"]]
    wait_until(lambda: broker.depth(essex["dead_letter_queue"]) == 1,
               what="the rejected event in the dead-letter queue")
    assert broker.depth(essex["queue"]) == 0
    listed = api.call("GET", "/api/v1/integrations/queues", key=essex_key["key"]).json()
    assert [q["queue"] for q in listed] == [essex["queue"]]
    assert narrowed.json()["credentials"]["password"] is None   # shown once only

    # The integrator's own broker user reads its queues, and nothing else.
    credentials = essex["credentials"]
    assert credentials["username"] == essex["queue"] and credentials["password"]
    own_uri = "amqp://{}:{}@127.0.0.1:5672/{}".format(
        quote(credentials["username"], safe=""), quote(credentials["password"], safe=""),
        quote(rabbit_config["vhost"], safe=""))
    event = referral_received(site=sites["essex"])
    broker.publish(event)   # no binding for it now: nothing arrives
    broker.publish(dict(confirmed, id="again"))
    wait_until(lambda: broker.depth(essex["queue"]) >= 1, what="the match event")
    assert [e["id"] for e in drain(own_uri, essex["queue"])] == ["again"]
    assert [e["id"] for e in drain(own_uri, essex["dead_letter_queue"])] == [
        confirmed["id"]]
    with pytest.raises(Exception, match="ACCESS_REFUSED"):
        drain(own_uri, answers["derby"]["queue"])
    with pytest.raises(Exception, match="ACCESS_REFUSED"):   # no sniffing every site
        with Connection(own_uri) as connection:
            connection.default_channel.queue_bind(
                essex["queue"], exchange=event_exchange("referrals").name, routing_key="#")

    # Revoking the integrator's API key takes its queues and its broker user away.
    answer = api.call("DELETE", f"/api/v1/api-keys/{essex_key['id']}", coordinators["essex"])
    assert answer.status_code == 204, answer.text
    for name in (essex["queue"], essex["dead_letter_queue"]):
        with pytest.raises(Exception, match="NOT_FOUND"):
            with Connection(rabbit_config["AMQP_URI"]) as connection:
                connection.default_channel.queue_declare(name, passive=True)
    with pytest.raises(Exception, match="ACCESS_REFUSED"):
        drain(own_uri, essex["queue"])

