"""Event data schemas, one module per owning service."""
from shared.events.types import referrals  # noqa: F401
