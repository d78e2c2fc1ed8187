"""Event data schemas, one module per owning service."""
from shared.events.types import matching, referrals, training  # noqa: F401
