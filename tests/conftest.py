"""Fixtures for tests that run services on the real broker and datastore."""
import pytest

from tests.support import Broker


@pytest.fixture
def broker(rabbit_config):
    broker = Broker(rabbit_config["AMQP_URI"])
    yield broker
    broker.close()


@pytest.fixture
def start_service(container_factory, service_config):
    """Start a service class in-process on the test's vhost and database
    (with the config of ``config_from``, for a service made up by a test)."""
    def start(service_cls, config_from=None, **overrides):
        config = service_config(config_from or service_cls.name, **overrides)
        container = container_factory(service_cls, config)
        container.start()
        return container, config
    return start
