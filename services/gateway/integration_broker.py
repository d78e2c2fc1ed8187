"""An integrator's own AMQP queue on the services' broker (kombu), and,
where the gateway knows the broker's management API
(``GATEWAY.RABBITMQ_MANAGEMENT_URL``), a broker user that may read only
that queue and its dead-letter queue (the adapter; the endpoints are in
``endpoints/integrations.py``)."""
import re
import secrets
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import requests
from kombu import Connection, Exchange, Queue
from nameko.constants import PERSISTENT
from nameko.extensions import DependencyProvider

from shared.errors import ServiceUnavailable
from shared.events.asyncapi import INTEGRATION_EXCHANGE

QUEUE_PREFIX = "integrator"
MAX_QUEUE_LENGTH = 100_000   # then the oldest go to the dead-letter queue


def queue_names(site_id, key_id):
    queue = f"{QUEUE_PREFIX}.{site_id}.{key_id}"
    return queue, f"{queue}.dead-letters"


def vhost_of(amqp_uri):
    path = urlsplit(amqp_uri).path
    return unquote(path[1:]) if len(path) > 1 else "/"


class IntegrationBroker(DependencyProvider):
    """Declares integrators' queues on the service's own broker."""

    def setup(self):
        self.amqp_uri = self.container.config["AMQP_URI"]
        self.vhost = vhost_of(self.amqp_uri)
        self.feed = Exchange(INTEGRATION_EXCHANGE, type="topic", durable=True,
                             delivery_mode=PERSISTENT)
        settings = self.container.config.get("GATEWAY", {}) or {}
        self.management = _management_api(settings.get("RABBITMQ_MANAGEMENT_URL"))

    def get_dependency(self, worker_ctx):
        return self

    def declare(self, queue_name, dead_letter_name, routing_keys, stale_keys):
        with Connection(self.amqp_uri, connect_timeout=5) as connection:
            channel = connection.default_channel
            Queue(dead_letter_name, durable=True)(channel).declare()
            queue = Queue(queue_name, durable=True, queue_arguments={
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": dead_letter_name,
                "x-max-length": MAX_QUEUE_LENGTH})(channel)
            self.feed(channel).declare()
            queue.declare()
            for key in routing_keys:
                queue.bind_to(exchange=self.feed, routing_key=key)
            for key in stale_keys:
                queue.unbind_from(exchange=self.feed, routing_key=key)


    def grant(self, username, queue_name, dead_letter_name, new_password):
        """Make (or re-permit) the queue's own broker user; returns its
        credentials, the password only if one was set now. None without
        the management API."""
        if self.management is None:
            return None
        base, auth = self.management
        own = f"^({re.escape(queue_name)}|{re.escape(dead_letter_name)})$"
        permissions = {"configure": own, "write": "^$", "read": own}
        user_url = f"{base}/api/users/{quote(username, safe='')}"
        try:
            exists = requests.get(user_url, auth=auth, timeout=5).status_code == 200
            password = None
            if new_password or not exists:
                password = secrets.token_urlsafe(32)
                _ok(requests.put(user_url, auth=auth, timeout=5,
                                 json={"password": password, "tags": ""}))
            _ok(requests.put(
                f"{base}/api/permissions/{quote(self.vhost, safe='')}/"
                f"{quote(username, safe='')}", auth=auth, timeout=5, json=permissions))
        except requests.RequestException as error:
            raise ServiceUnavailable(f"The broker's management API failed: {error}.")
        return {"username": username, "password": password, "permissions": permissions}


    def revoke(self, queue_name, dead_letter_name):
        """When the integrator's API key is revoked: its broker user and its
        queues go (identity's revoke_api_key calls this for an integrator)."""
        with Connection(self.amqp_uri, connect_timeout=5) as connection:
            channel = connection.default_channel
            for name in (queue_name, dead_letter_name):
                Queue(name, no_declare=True)(channel).delete()
        if self.management is not None:
            base, auth = self.management
            answer = requests.delete(f"{base}/api/users/{quote(queue_name, safe='')}",
                                     auth=auth, timeout=5)
            if answer.status_code not in (204, 404):
                _ok(answer)


def _management_api(url):
    """(base URL, (user, password)) from ``http://user:pw@host:15672``."""
    if not url:
        return None
    parts = urlsplit(url)
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    return base, (unquote(parts.username or ""), unquote(parts.password or ""))


def _ok(answer):
    if answer.status_code >= 300:
        raise ServiceUnavailable(
            f"The broker's management API answered {answer.status_code}.")
