"""The gateway: the one door to Alongside. Entrypoints only: the endpoints
live in ``endpoints/`` by area, each declared with
:func:`services.gateway.api.endpoint`; this class gives them their
dependencies and serves the description of the API."""
import json

from nameko.rpc import RpcProxy
from nameko.web.handlers import http
from werkzeug.wrappers import Response

from services.gateway import store
from services.gateway.api import Gateway
from services.gateway.endpoints.identity import IdentityEndpoints
from services.gateway.endpoints.integrations import IntegrationEndpoints
from services.gateway.endpoints.journeys import JourneyEndpoints
from services.gateway.endpoints.matching import MatchingEndpoints
from services.gateway.endpoints.messaging import MessagingEndpoints
from services.gateway.endpoints.referrals import ReferralEndpoints
from services.gateway.endpoints.reports import ReportEndpoints
from services.gateway.endpoints.training import TrainingEndpoints
from services.gateway.openapi import build_spec, docs_page
from shared.errors import PROBLEM_CONTENT_TYPE
from shared.service_base import ServiceBase
from shared.storage import Database

API_VERSION = "1.0.0"


class GatewayService(IdentityEndpoints, ReferralEndpoints, TrainingEndpoints,
                     MatchingEndpoints, JourneyEndpoints, MessagingEndpoints,
                     ReportEndpoints, IntegrationEndpoints, ServiceBase):
    name = "gateway"

    db = Database(prepare=store.ensure_indexes)
    gateway = Gateway()
    referrals = RpcProxy("referrals")
    training = RpcProxy("training")
    matching = RpcProxy("matching")
    journeys = RpcProxy("journeys")
    messaging = RpcProxy("messaging")
    reporting = RpcProxy("reporting")

    # -- the API described ---------------------------------------------------

    @http("GET", "/api/v1/openapi.json")
    def openapi(self, request):
        return Response(json.dumps(build_spec(type(self), API_VERSION)),
                        mimetype="application/json")

    @http("GET", "/api/v1/docs")
    def docs(self, request):
        return Response(docs_page(build_spec(type(self), API_VERSION)),
                        mimetype="text/html")

    @http("GET,POST,PUT,PATCH,DELETE", "/api/v1/<path:rest>")
    def unknown(self, request, rest):
        problem = {"type": "urn:alongside:problem:not_found", "title": "Not found",
                   "status": 404, "detail": f"No endpoint {request.path}."}
        return Response(json.dumps(problem), status=404, mimetype=PROBLEM_CONTENT_TYPE)
