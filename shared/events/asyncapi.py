"""The AsyncAPI 2.6 document of Alongside's events, generated from the
catalogue, for integrators who subscribe over AMQP.

For each event type it names the exchange and routing key it is published
with (:func:`shared.events.envelope.exchange_name_for`, ``routing_key_for``),
the CloudEvents envelope (``shared.events.envelope.Envelope``) and the data
schema (the catalogue's marshmallow schema, as JSON Schema by apispec's
marshmallow converter). Nothing here is written by hand per event type.

It also names the integrator feed: the messaging service republishes every
event, unchanged, on the topic exchange :data:`INTEGRATION_EXCHANGE` with
the routing key ``<siteid>.<event type>`` (:func:`integration_routing_key`),
so an integrator's queue is bound to its own site's events only. The
service exchanges route by event type alone, and a queue bound there would
receive every site's events.
"""
import copy

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.openapi import OpenAPIConverter

from shared.events.catalogue import CATALOGUE
from shared.events.envelope import Envelope, exchange_name_for, routing_key_for

ASYNCAPI_VERSION = "2.6.0"
AMQP_BINDING_VERSION = "0.2.0"
INTEGRATION_EXCHANGE = "alongside.integrations"
SITE_ID = r"^[A-Za-z0-9_-]+$"   # a routing-key word: no dots, no wildcards


def integration_routing_key(site_id, event_type):
    """``<siteid>.<event type>`` on :data:`INTEGRATION_EXCHANGE`."""
    if not site_id or any(c in site_id for c in ".*# "):
        raise ValueError(f"a site id cannot be a routing-key word: {site_id!r}")
    return f"{site_id}.{event_type}"


def _converter():
    spec = APISpec(title="events", version="1", openapi_version="3.1.0",
                   plugins=[MarshmallowPlugin()])
    return OpenAPIConverter(openapi_version="3.1.0",
                            schema_name_resolver=lambda schema: None, spec=spec)


def json_schema(converter, schema_cls):
    """A marshmallow schema as a self-contained JSON Schema (draft 7 subset)."""
    schema = converter.schema2jsonschema(schema_cls)
    _allow_null_in_enums(schema)
    return schema


def _allow_null_in_enums(node):
    """apispec marks a nullable field ``type: [x, "null"]`` but leaves a
    choice's ``enum`` without null, which would refuse the null it allows."""
    if isinstance(node, dict):
        types = node.get("type")
        if isinstance(types, list) and "null" in types and "enum" in node \
                and None not in node["enum"]:
            node["enum"] = list(node["enum"]) + [None]
        for value in node.values():
            _allow_null_in_enums(value)
    elif isinstance(node, list):
        for value in node:
            _allow_null_in_enums(value)


def _schema_name(event_type):
    return "".join(part.capitalize() for part in
                   event_type.replace("_", ".").split(".")) + "Data"


def _envelope_schema(converter):
    schema = json_schema(converter, Envelope)
    properties = schema["properties"]
    properties["time"]["format"] = "date-time"
    properties["siteid"]["description"] = "the site the event belongs to"
    properties["correlationid"]["description"] = "follows one request across services"
    properties["causationid"]["description"] = "the id of the event that caused this one"
    properties["id"]["description"] = ("unique per event: at-least-once delivery, "
                                       "so drop an id you have already handled")
    return schema


def _amqp_exchange(name):
    return {"name": name, "type": "topic", "durable": True, "autoDelete": False,
            "vhost": "/"}


def build_asyncapi(version="1.0.0", server_url="{host}:{port}"):
    converter = _converter()
    components = {"schemas": {"CloudEventEnvelope": _envelope_schema(converter)},
                  "messages": {}}
    channels = {}
    for name in sorted(CATALOGUE):
        entry = CATALOGUE[name]
        data_name = _schema_name(name)
        components["schemas"][data_name] = json_schema(converter, entry.schema)
        components["messages"][name] = {
            "name": name,
            "title": name,
            "summary": entry.description,
            "contentType": "application/json",
            "headers": {"type": "object", "properties": {
                "nameko.correlation_id": {"type": "string"}}},
            "correlationId": {"location": "$message.payload#/correlationid"},
            "payload": {"allOf": [
                {"$ref": "#/components/schemas/CloudEventEnvelope"},
                {"type": "object", "properties": {
                    "type": {"type": "string", "const": name},
                    "source": {"type": "string",
                               "const": f"/alongside/{entry.source_service}"},
                    "dataschema": {"type": "string", "const": entry.dataschema},
                    "data": {"$ref": f"#/components/schemas/{data_name}"}}}]},
            "bindings": {"amqp": {"contentEncoding": "utf-8", "messageType": name,
                                  "bindingVersion": AMQP_BINDING_VERSION}},
            "x-version": entry.version,
            "x-source-service": entry.source_service,
        }
        message_ref = {"$ref": f"#/components/messages/{name}"}
        exchange = exchange_name_for(name)
        channels[routing_key_for(name)] = {
            "description": f"{entry.description} Published on the topic exchange "
                           f"`{exchange}` with the routing key "
                           f"`{routing_key_for(name)}` (every site's).",
            "subscribe": {"operationId": f"receive_{name.replace('.', '_')}",
                          "message": message_ref},
            "bindings": {"amqp": {"is": "routingKey",
                                  "exchange": _amqp_exchange(exchange),
                                  "bindingVersion": AMQP_BINDING_VERSION}},
            "x-exchange": exchange,
            "x-routing-key": routing_key_for(name),
        }
        channels[f"{{siteid}}.{name}"] = {
            "description": f"{entry.description} The integrator feed: the same "
                           f"event, for one site, on the topic exchange "
                           f"`{INTEGRATION_EXCHANGE}`. An integrator's own queue "
                           f"(POST /api/v1/integrations/queues) is bound here.",
            "parameters": {"siteid": {"description": "the integrator's site id",
                                      "schema": {"type": "string",
                                                 "pattern": SITE_ID}}},
            "subscribe": {"operationId": f"receive_site_{name.replace('.', '_')}",
                          "message": message_ref},
            "bindings": {"amqp": {"is": "routingKey",
                                  "exchange": _amqp_exchange(INTEGRATION_EXCHANGE),
                                  "bindingVersion": AMQP_BINDING_VERSION}},
            "x-exchange": INTEGRATION_EXCHANGE,
            "x-routing-key": f"{{siteid}}.{name}",
        }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": "urn:alongside:events",
        "info": {
            "title": "Alongside events",
            "version": version,
            "description": (
                "Every event Alongside publishes, as CloudEvents 1.0 (structured "
                "JSON) with the extensions siteid, correlationid and causationid. "
                "Events carry ids and facts, never names, contact details or "
                "notes. Delivery is at least once: handle each event id once. "
                "Integrators consume their own queue (POST "
                "/api/v1/integrations/queues), bound to their site's events on "
                f"`{INTEGRATION_EXCHANGE}`, or register a webhook (POST "
                "/api/v1/webhooks) that receives the same envelopes, signed as "
                "Standard Webhooks does."),
        },
        "servers": {"broker": {
            "url": server_url, "protocol": "amqp", "protocolVersion": "0.9.1",
            "description": "RabbitMQ; the vhost is given with each integrator queue",
            "variables": {"host": {"default": "localhost"},
                          "port": {"default": "5672"}}}},
        "defaultContentType": "application/json",
        "channels": channels,
        "components": components,
    }


def data_schema(document, event_type):
    """The JSON Schema of one event type's data in a built document."""
    return copy.deepcopy(document["components"]["schemas"][_schema_name(event_type)])
