"""Payloads of the reporting service's RPC entrypoints."""
from marshmallow import Schema, fields


class ArchivedEventSchema(Schema):
    id = fields.String(attribute="_id")
    site_id = fields.String()
    type = fields.String()
    time = fields.DateTime()
    subject = fields.String(allow_none=True)
    correlationid = fields.String()
    causationid = fields.String(allow_none=True)
    data = fields.Dict()
    archived_at = fields.DateTime()
