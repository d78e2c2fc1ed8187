"""Plumbing every Alongside service shares: written once, used by all.

config     YAML config with ${VAR:default} substitution
errors     typed domain errors, carried over RPC, mapped to HTTP problems
events     CloudEvents envelope and the event catalogue (one schema per type)
storage    the Database dependency and the site-scoped repository base
outbox     state change + events in one atomic write; the relay that publishes
inbox      handled event ids, so a redelivery changes nothing
messaging  the AMQP topology and the event handler with retries and dead letters
deadletters  list and replay dead letters (ops command)
metrics    Prometheus metrics per container; observability  health and logs
"""
