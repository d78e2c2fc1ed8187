"""What every Alongside service has: metrics, health, correlation ids.

    class ReferralsService(ServiceBase):
        name = "referrals"
        ...

gives ``GET /metrics``, ``GET /health/live`` and ``GET /health/ready`` on
the service's own HTTP port (``WEB_SERVER_ADDRESS``).
"""
import json

from kombu import Connection
from nameko.extensions import DependencyProvider
from nameko.web.handlers import http
from werkzeug.wrappers import Response

from shared.metrics import Metrics
from shared.observability import CorrelationId


class Health(DependencyProvider):
    """Ready means: the broker accepts a connection and every dependency
    with a ``health_check`` (the database) answers."""

    def get_dependency(self, worker_ctx):
        return self

    def readiness(self):
        checks = {}
        try:
            with Connection(self.container.config["AMQP_URI"],
                            connect_timeout=2) as connection:
                connection.ensure_connection(max_retries=1)
            checks["amqp"] = "ok"
        except Exception as error:
            checks["amqp"] = f"failed: {error}"
        for extension in self.container.dependencies:
            check = getattr(extension, "health_check", None)
            if check:
                name = getattr(extension, "attr_name", type(extension).__name__)
                try:
                    checks[name] = check()
                except Exception as error:
                    checks[name] = f"failed: {error}"
        # Ready also means consuming: nameko serves HTTP before its queue
        # consumer has declared and bound the RPC and event queues.
        for extension in self.container.subextensions:
            consuming = getattr(extension, "_consumers_ready", None)
            if consuming is not None:
                checks["consumers"] = "ok" if consuming.ready() else "starting"
        ready = all(value == "ok" for value in checks.values())
        return ready, checks


def json_response(status, body, content_type="application/json"):
    return Response(json.dumps(body), status=status, mimetype=content_type)


class ServiceBase:
    metrics = Metrics()
    health = Health()
    correlation_id = CorrelationId()

    @http("GET", "/metrics")
    def get_metrics(self, request):
        body, content_type = self.metrics.expose()
        return Response(body, status=200, content_type=content_type)

    @http("GET", "/health/live")
    def get_liveness(self, request):
        return json_response(200, {"status": "live", "service": self.name})

    @http("GET", "/health/ready")
    def get_readiness(self, request):
        ready, checks = self.health.readiness()
        return json_response(200 if ready else 503, {
            "status": "ready" if ready else "not ready",
            "service": self.name, "checks": checks})
