"""The golden path of the design, whole: every service on the real broker
and datastore, a real SMTP server, and `make demo`'s own script driving the
HTTP API (so the demo and this test cannot drift apart)."""
import pytest

from infra.local import demo
from services.gateway.service import GatewayService
from services.journeys.service import JourneysService
from services.matching.service import MatchingService
from services.messaging.service import MessagingService
from services.referrals.service import ReferralsService
from services.reporting.service import ReportingService
from services.training.service import TrainingService
from tests.support import ADMIN, encryption_settings, gateway_settings

pytestmark = pytest.mark.slow

NO_QUIET_HOURS = {"START": "00:00", "END": "00:00", "TIMEZONE": "Europe/London"}


def test_golden_path_end_to_end(start_service, smtp_server, tmp_path, capsys):
    for service in (ReferralsService, TrainingService, JourneysService):
        start_service(service, ENCRYPTION=encryption_settings())
    start_service(MatchingService)
    start_service(ReportingService)
    start_service(MessagingService, ENCRYPTION=encryption_settings(),
                  MESSAGING={"DISPATCH_INTERVAL_SECONDS": 0.1, "QUIET_HOURS": NO_QUIET_HOURS},
                  SMTP={"HOST": "127.0.0.1", "PORT": smtp_server.port, "SECURITY": "none",
                        "FROM": "Alongside <no-reply@alongside.test>"},
                  NOTIFY={"API_KEY": ""})
    _, gateway = start_service(GatewayService, GATEWAY=gateway_settings())

    api = f"http://{gateway['WEB_SERVER_ADDRESS']}/api/v1"
    assert demo.main(["--parents", "2", "--out", str(tmp_path), "--api", api],
                     admin_credentials=ADMIN) == 0
    printed = capsys.readouterr().out

    # Referral received: the referrer and the consenting parent are told;
    # match confirmed: the volunteer and the parent.
    smtp_server.wait_for("sam.midwife@nhs.example", count=2)
    assert len(smtp_server.wait_for("parent1@example.test", count=2)) >= 2
    # The EPDS item 10 answer reached the coordinator as an urgent concern.
    [alert] = smtp_server.wait_for(demo.COORDINATOR[0])
    assert "safeguarding" in alert["Subject"].lower()
    assert "talked about the birth plan" not in alert.get_body().get_content()

    assert "safeguarding concern" in printed and "raised at once" in printed
    assert "match_confirmed" in printed
    # The quarter's report, with the paired outcome change, in every format.
    assert "WEMWBS" in printed.upper() and "p =" in printed
    for fmt in ("csv", "xlsx", "html"):
        assert any(path.suffix == f".{fmt}" and path.stat().st_size > 0
                   for path in tmp_path.iterdir()), fmt
