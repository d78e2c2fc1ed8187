"""Integrations over AMQP: the AsyncAPI document and an integrator's own queue."""


class IntegrationEndpoints:
    pass
