"""The event catalogue: one marshmallow schema per event type and version.

The schemas live in ``shared/events/types/<owning service>.py`` and
register here with :func:`event_type`; ``shared.events`` imports them all.

Data minimisation: events carry ids and the facts other services need
(source, language, area, due month), never names, contact details,
addresses or free text. A schema here is what every consumer loads with;
consumers never copy it.
"""
from dataclasses import dataclass

from marshmallow import RAISE, Schema

CATALOGUE = {}


@dataclass(frozen=True)
class EventType:
    type: str
    version: int
    source_service: str
    schema: type
    description: str

    @property
    def dataschema(self):
        return f"urn:alongside:event:{self.type}:{self.version}"


def event_type(name, version, source_service, description):
    """Register a data schema in the catalogue under its type name."""
    def register(schema_cls):
        if name in CATALOGUE:
            raise ValueError(f"event type {name} is registered twice")
        CATALOGUE[name] = EventType(name, version, source_service, schema_cls,
                                    description)
        return schema_cls
    return register


class EventData(Schema):
    class Meta:
        unknown = RAISE   # a field the catalogue does not name is refused


# Shared vocabularies (the referral form and the events agree on these).
REFERRAL_SOURCES = (
    "midwife", "health_visitor", "gp", "perinatal_mental_health",
    "iapt", "social_worker", "family_support_worker",
    "family_nurse_partnership", "self", "other",
)

POSTCODE_DISTRICT = r"^[A-Z]{1,2}[0-9][A-Z0-9]?$"
LANGUAGE_TAG = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$"   # BCP 47, e.g. en, pl, pa-IN
MONTH = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
