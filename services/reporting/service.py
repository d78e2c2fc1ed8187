"""The reporting service: entrypoints only."""
import logging
import threading
import time

from nameko.extensions import DependencyProvider
from nameko.rpc import rpc
from prometheus_client.core import GaugeMetricFamily
from pymongo.errors import PyMongoError

from services.reporting import domain, store
from services.reporting.schemas import (ArchivedEventSchema, NationalQuerySchema,
                                        QuarterlyQuerySchema)
from shared.errors import DOMAIN_ERRORS
from shared.events import load_event
from shared.events.envelope import utcnow
from shared.inbox import Inbox
from shared.messaging import event_handler
from shared.service_base import ServiceBase
from shared.storage import Database, database_provider
from shared.validation import load_or_fail

log = logging.getLogger(__name__)

METRIC_HELP = {
    "alongside_referrals_awaiting_triage": "Referrals received and not yet triaged",
    "alongside_referrals_awaiting_triage_oldest_seconds":
        "Age of the oldest referral waiting for triage",
    "alongside_referrals_over_triage_target":
        "Referrals waiting for triage past the site's triage target",
    "alongside_safeguarding_concerns_unacknowledged":
        "Safeguarding concerns raised and neither acknowledged nor resolved",
    "alongside_safeguarding_concern_oldest_unacknowledged_seconds":
        "Age of the oldest unacknowledged safeguarding concern",
    "alongside_parents_waiting_for_match": "Accepted referrals waiting for a match",
    "alongside_matches_confirmed_this_week": "Matches confirmed this ISO week (UTC)",
    "alongside_contacts_logged_this_week": "Contacts logged this ISO week (UTC)",
    "alongside_messages_failed_last_24h": "Notifications failed in the last 24 hours",
}


class BusinessMetrics(DependencyProvider):
    """The programme gauges, labelled by site, computed from the projections
    on scrape (at most every ``REPORTING.METRICS_MAX_AGE_SECONDS``)."""

    def setup(self):
        self.database_dependency = database_provider(self.container)
        settings = self.container.config.get("REPORTING", {}) or {}
        self.max_age = float(settings.get("METRICS_MAX_AGE_SECONDS", 10))
        self._lock = threading.Lock()
        self._cached_at, self._values = None, {}

    def register_metrics(self, metrics):
        metrics.registry.register(self)

    def values(self):
        with self._lock:
            fresh = (self._cached_at is not None
                     and time.monotonic() - self._cached_at < self.max_age)
            if not fresh:
                try:
                    database = self.database_dependency.database
                    now = utcnow()
                    referrals, messages = store.metric_inputs(database, now)
                    self._values = domain.business_metrics(
                        store.sites_with_facts(database), referrals, messages, now)
                    self._cached_at = time.monotonic()
                except PyMongoError:
                    # The rest of /metrics still answers; these go missing
                    # (absent() alerts see it) until the database is back.
                    log.exception("could not compute the business gauges")
                    return {}
            return self._values

    def collect(self):
        values = self.values()
        for name in domain.METRIC_NAMES:
            family = GaugeMetricFamily(name, METRIC_HELP[name], labels=["site"])
            for site_id, row in sorted(values.items()):
                family.add_metric([site_id], row[name])
            yield family

    def describe(self):
        return []   # no collect at registration


class ReportingService(ServiceBase):
    name = "reporting"

    db = Database(prepare=store.ensure_indexes)
    inbox = Inbox()
    business_metrics = BusinessMetrics()

    # -- events in: archived whole, projected ---------------------------------

    @event_handler("referrals", "#")
    def on_referrals_event(self, body):
        self._archive_and_project(body)

    @event_handler("training", "#")
    def on_training_event(self, body):
        self._archive_and_project(body)

    @event_handler("matching", "#")
    def on_matching_event(self, body):
        self._archive_and_project(body)

    @event_handler("journeys", "#")
    def on_journeys_event(self, body):
        self._archive_and_project(body)

    @event_handler("messaging", "#")
    def on_messaging_event(self, body):
        self._archive_and_project(body)

    def _archive_and_project(self, body):
        envelope, data = load_event(body)
        self.inbox.apply_once(envelope, lambda session: self._project(
            envelope, data, session))

    def _project(self, envelope, data, session):
        site_id = envelope["siteid"]
        store.EventArchive(self.db, site_id, session).append(
            domain.archive_record(envelope, data, archived_at=utcnow()))
        # The event's data as archived (not as loaded): the rebuild folds
        # exactly what the live path applied.
        store.Projections(self.db, site_id, session).apply(
            domain.changes_for(envelope, envelope["data"]))

    # -- reports ------------------------------------------------------------------

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def quarterly_report(self, site_id, query):
        """One site's quarter; ``suppressed`` for a national role's view."""
        query = load_or_fail(QuarterlyQuerySchema(), query)
        quarter = domain.parse_quarter(query["quarter"])
        projections = store.Projections(self.db, site_id)
        report = domain.quarterly_report(
            site_id, quarter, projections.referrals(active_since=quarter.starts_at),
            projections.volunteers())
        return domain.suppressed_report(report) if query["suppressed"] else report

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def national_report(self, query):
        """Every named site's quarter, aggregated with small counts hidden."""
        query = load_or_fail(NationalQuerySchema(), query)
        quarter = domain.parse_quarter(query["quarter"])
        reports, referrals_by_site = [], []
        for site_id in query["site_ids"]:
            projections = store.Projections(self.db, site_id)
            referrals = projections.referrals(active_since=quarter.starts_at)
            referrals_by_site.append(referrals)
            reports.append(domain.quarterly_report(site_id, quarter, referrals,
                                                   projections.volunteers()))
        return domain.national_report(quarter, reports,
                                      domain.pooled_outcomes(referrals_by_site, quarter))

    # -- the archive ----------------------------------------------------------------

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def referral_counts(self, site_id):
        return store.EventArchive(self.db, site_id).count_by(
            "referral.received", "source")

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def archived_events(self, site_id, limit=100):
        records = store.EventArchive(self.db, site_id).latest(int(limit))
        return ArchivedEventSchema(many=True).dump(records)
