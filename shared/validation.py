"""Loading input with a marshmallow schema, failing with field errors."""
from marshmallow import RAISE, Schema, ValidationError

from shared.errors import ValidationFailed


def load_or_fail(schema, payload, detail="The request has invalid fields."):
    """``schema.load(payload)``, or :class:`ValidationFailed` naming each
    field at fault. Nothing is stored before this has passed."""
    if not isinstance(payload, dict):
        raise ValidationFailed(detail, {"_schema": ["Expected a JSON object."]})
    try:
        return schema.load(payload)
    except ValidationError as error:
        raise ValidationFailed(detail, error.messages)


class Strict(Schema):
    """The base of every input schema: a field it does not name is refused
    (a typo is an error, never silently dropped)."""
    class Meta:
        unknown = RAISE
