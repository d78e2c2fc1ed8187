"""The reporting service: entrypoints only."""
from nameko.rpc import rpc

from services.reporting import domain, store
from services.reporting.schemas import ArchivedEventSchema
from shared.errors import DOMAIN_ERRORS
from shared.events import load_event
from shared.events.envelope import utcnow
from shared.inbox import Inbox
from shared.messaging import event_handler
from shared.service_base import ServiceBase
from shared.storage import Database


class ReportingService(ServiceBase):
    name = "reporting"

    db = Database(prepare=store.ensure_indexes)
    inbox = Inbox()

    @event_handler("referrals", "#")
    def on_referrals_event(self, body):
        envelope, data = load_event(body)
        self.inbox.apply_once(envelope, lambda session: self._project(
            envelope, data, session))

    def _project(self, envelope, data, session):
        store.EventArchive(self.db, envelope["siteid"], session).append(
            domain.archive_record(envelope, data, archived_at=utcnow()))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def referral_counts(self, site_id):
        return store.EventArchive(self.db, site_id).count_by(
            "referral.received", "source")

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def archived_events(self, site_id, limit=100):
        records = store.EventArchive(self.db, site_id).latest(int(limit))
        return ArchivedEventSchema(many=True).dump(records)
