"""CloudEvents 1.0 envelope (structured JSON mode) plus Alongside's
extension attributes ``siteid``, ``correlationid`` and ``causationid``."""
import uuid
from datetime import datetime, timezone

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from shared.errors import EventRejected
from shared.events.catalogue import CATALOGUE
from shared.observability import current_correlation_id


class Envelope(Schema):
    class Meta:
        unknown = RAISE

    specversion = fields.String(required=True, validate=validate.Equal("1.0"))
    id = fields.String(required=True, validate=validate.Length(min=1))
    source = fields.String(required=True, validate=validate.Length(min=1))
    type = fields.String(required=True, validate=validate.Length(min=1))
    time = fields.DateTime(required=True, format="iso")
    subject = fields.String(load_default=None, allow_none=True)
    datacontenttype = fields.String(
        required=True, validate=validate.Equal("application/json"))
    dataschema = fields.String(required=True)
    siteid = fields.String(required=True, validate=validate.Length(min=1))
    correlationid = fields.String(required=True)
    causationid = fields.String(load_default=None, allow_none=True)
    data = fields.Dict(required=True)


_ENVELOPE = Envelope()


def exchange_name_for(event_type_name):
    """Events are published on their owning service's topic exchange."""
    return f"{_entry(event_type_name).source_service}.events"


def routing_key_for(event_type_name):
    return event_type_name


def _entry(event_type_name):
    entry = CATALOGUE.get(event_type_name)
    if entry is None:
        raise EventRejected(
            f"Unknown event type {event_type_name!r}.",
            {"type": [f"not in the event catalogue: {event_type_name!r}"]})
    return entry


def new_event(event_type_name, data, *, site_id, now, subject=None,
              correlation_id=None, causation_id=None, event_id=None):
    """Build an envelope, refusing data that its schema does not accept."""
    entry = _entry(event_type_name)
    schema = entry.schema()
    try:
        clean = schema.dump(schema.load(data))
    except ValidationError as error:
        raise EventRejected(f"Invalid data for {event_type_name}.",
                            {"data": error.messages})
    if not site_id:
        raise EventRejected("Every event belongs to a site.",
                            {"siteid": ["missing"]})
    return {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": f"/alongside/{entry.source_service}",
        "type": event_type_name,
        "time": now.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"),
        "subject": subject,
        "datacontenttype": "application/json",
        "dataschema": entry.dataschema,
        "siteid": site_id,
        "correlationid": correlation_id or current_correlation_id() or str(uuid.uuid4()),
        "causationid": causation_id,
        "data": clean,
    }


def load_event(body, expected_types=None):
    """Check an incoming envelope and load its data with the catalogue schema.

    Returns ``(envelope, data)``; raises :class:`EventRejected` naming the
    fields at fault. Nothing is applied before this has passed.
    """
    if not isinstance(body, dict):
        raise EventRejected("An event must be a JSON object.",
                            {"_schema": ["not an object"]})
    try:
        envelope = _ENVELOPE.load(body)
    except ValidationError as error:
        raise EventRejected("Invalid event envelope.", error.messages)
    entry = _entry(envelope["type"])
    if expected_types and envelope["type"] not in expected_types:
        raise EventRejected(f"Unexpected event type {envelope['type']!r}.",
                            {"type": [f"expected one of {sorted(expected_types)}"]})
    try:
        data = entry.schema().load(envelope["data"])
    except ValidationError as error:
        raise EventRejected(f"Invalid data for {envelope['type']}.",
                            {"data": error.messages})
    envelope["time"] = envelope["time"].astimezone(timezone.utc)
    return envelope, data


def utcnow():
    return datetime.now(timezone.utc)
