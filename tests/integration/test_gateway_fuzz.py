"""A property-based run of the OpenAPI document against the running gateway
(schemathesis): whatever it sends, the gateway answers without a 5xx."""
import os
import re
import subprocess
import sys

import pytest

from services.gateway.service import GatewayService
from services.journeys.service import JourneysService
from services.matching.service import MatchingService
from services.messaging.service import MessagingService
from services.referrals.service import ReferralsService
from services.reporting.service import ReportingService
from services.training.service import TrainingService
from tests.support import ADMIN, Api, encryption_settings, gateway_settings

pytestmark = pytest.mark.slow   # a few minutes: runs with make test, apart with make test-slow

SCHEMATHESIS = os.path.join(os.path.dirname(sys.executable), "schemathesis")


def run_schemathesis(api, token, tmp_path, *only):
    result = subprocess.run(
        [SCHEMATHESIS, "run", f"{api.base}/api/v1/openapi.json",
         "--checks", "not_a_server_error", "--phases", "coverage,fuzzing",
         "--max-examples", "8", "--seed", "20261122", "--workers", "1",
         "--request-timeout", "10", "-H", f"Authorization: Bearer {token}",
         "--report-dir", str(tmp_path), "--no-color", *only],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    tested = re.search(r"Tested: (\d+)", result.stdout)
    assert tested and int(tested.group(1)) > 0, result.stdout[-3000:]
    return result.stdout


def test_schemathesis_finds_no_server_errors(start_service, tmp_path):
    # Every service behind the gateway runs, so no answer is a 503.
    start_service(ReferralsService, ENCRYPTION=encryption_settings())
    start_service(TrainingService, ENCRYPTION=encryption_settings())
    start_service(MatchingService)
    start_service(JourneysService, ENCRYPTION=encryption_settings())
    start_service(MessagingService, ENCRYPTION=encryption_settings(),
                  SMTP={"HOST": ""}, NOTIFY={"API_KEY": ""})
    start_service(ReportingService)
    _, config = start_service(GatewayService, GATEWAY=gateway_settings(
        RATE_LIMITS={"login": {"LIMIT": 100000, "WINDOW_SECONDS": 60}}))
    api = Api(config["WEB_SERVER_ADDRESS"])
    admin = api.login(*ADMIN)
    # The national admin's own area: identity, sites, keys, audit.
    run_schemathesis(api, admin, tmp_path, "--include-path-regex",
                     r"^/api/v1/(auth|me|sites|users|api-keys|audit)")
    # Most calls belong to a site coordinator: fuzz the whole API as one too.
    site = api.call("POST", "/api/v1/sites", admin, json={
        "name": "Fuzz", "code": "fuzz", "catchment": ["CM1"]}).json()
    api.call("POST", "/api/v1/users", admin, json={
        "email": "c@fuzz.test", "name": "c", "password": "a long enough pw",
        "role": "site_coordinator", "site_id": site["id"]})
    run_schemathesis(api, api.login("c@fuzz.test", "a long enough pw"), tmp_path)
