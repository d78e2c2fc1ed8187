"""Fixtures for tests that run services on the real broker and datastore."""
import pytest

from services.gateway.service import GatewayService
from services.referrals.service import ReferralsService
from tests.support import (ADMIN, Api, Broker, MailServer, encryption_settings,
                           gateway_settings)


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


@pytest.fixture
def start_gateway(start_service):
    def start(**settings):
        container, config = start_service(GatewayService,
                                          GATEWAY=gateway_settings(**settings))
        return Api(config["WEB_SERVER_ADDRESS"]), container
    return start


@pytest.fixture
def world(start_service, start_gateway):
    """Two sites, a coordinator of each, and a national admin."""
    start_service(ReferralsService, ENCRYPTION=encryption_settings())
    api, _ = start_gateway()
    admin = api.login(*ADMIN)
    sites = {}
    for code, districts in (("essex", ["CM1", "cm2"]), ("derby", ["DE22"])):
        answer = api.call("POST", "/api/v1/sites", admin, json={
            "name": code.title(), "code": code, "catchment": districts,
            "languages": ["en", "pl"]})
        assert answer.status_code == 201, answer.text
        sites[code] = answer.json()["id"]
    coordinators = {}
    for code, site_id in sites.items():
        email = f"coord@{code}.test"
        answer = api.call("POST", "/api/v1/users", admin, json={
            "email": email, "name": f"{code} coordinator", "password": "a long enough pw",
            "role": "site_coordinator", "site_id": site_id})
        assert answer.status_code == 201, answer.text
        coordinators[code] = api.login(email, "a long enough pw")
    return api, admin, sites, coordinators


@pytest.fixture
def smtp_server():
    server = MailServer()
    server.controller.start()
    yield server
    server.controller.stop()
