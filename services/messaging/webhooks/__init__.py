"""Webhooks for integrators (the webhooks helper fills this in)."""
