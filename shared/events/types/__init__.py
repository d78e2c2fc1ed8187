"""Event data schemas, one module per owning service."""
from shared.events.types import (journeys, matching, messaging, referrals,  # noqa: F401
                                 training)
