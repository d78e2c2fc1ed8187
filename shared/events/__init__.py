"""Events: the CloudEvents envelope and the catalogue of event types.

The catalogue is the single source of truth for every event's data: the
dispatching side builds events with :func:`new_event` (which validates the
data against the type's schema) and the handling side reads them with
:func:`load_event` (which loads it with the same schema).
"""
from shared.events.envelope import (  # noqa: F401
    Envelope, load_event, new_event, exchange_name_for, routing_key_for,
)
from shared.events.catalogue import CATALOGUE, EventType, event_type  # noqa: F401
from shared.events import types  # noqa: F401,E402  (registers every event type)
