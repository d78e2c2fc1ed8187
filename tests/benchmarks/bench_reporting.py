"""Reporting benchmark: rebuild the projections from an archive of 50,000
events, and time the quarterly report.

    .venv/bin/python tests/benchmarks/bench_reporting.py [--events N]
        [--sites N] [--reports N]

Not a pytest test: it prints figures. Like the other benchmarks it starts
its own secantus server (temp storage, fsync on commit) and its own
RabbitMQ vhost, and removes both at the end, also on error.

- Seeding (not measured): a year of made-up support at a few sites (each
  referral received, triaged, matched, contacts, goals, outcome measures,
  ended; volunteers registered, eligibility, some leaving), every event
  built with ``new_event`` (so checked by its catalogue schema) and written
  straight into the archive as the service archives it.
- Measured: ``python -m services.reporting.rebuild``'s work
  (``rebuild.rebuild``): read the archive, fold it in memory, replace the
  projections; events/s. Then ``reporting.quarterly_report`` over RPC for
  the busiest site (end to end at the caller), and the national view.
"""
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()  # first: nameko, kombu and pymongo must see green sockets

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from datetime import datetime, timedelta, timezone  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)  # run as a script: make `shared` and `services` importable

from nameko.containers import ServiceContainer  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

from services.reporting import domain, rebuild, store  # noqa: E402
from services.reporting.service import ReportingService  # noqa: E402
from shared.config import load_service_config  # noqa: E402
from shared.events import load_event, new_event  # noqa: E402
from shared.events.catalogue import REFERRAL_SOURCES  # noqa: E402
from shared.events.types.journeys import CONTACT_MODES, GOAL_CATEGORIES  # noqa: E402
from shared.storage import connect  # noqa: E402
from tests.benchmarks.bench_events import (BenchmarkFailed, SecantusServer,  # noqa: E402
                                           Vhost, free_port, machine_facts,
                                           percentile)

YEAR_START = datetime(2026, 1, 1, 9, tzinfo=timezone.utc)


class Seeder:
    def __init__(self, rng, sites):
        self.rng, self.sites, self.events = rng, sites, []

    def add(self, site, kind, data, when):
        self.events.append(new_event(kind, data, site_id=site, now=when))

    def volunteers(self, site, count):
        ids = []
        for _ in range(count):
            v = str(uuid.uuid4())
            ids.append(v)
            joined = YEAR_START + timedelta(days=self.rng.randint(-200, 200))
            self.add(site, "volunteer.registered", {
                "volunteer_id": v, "role": "volunteer", "stage": "applicant",
                "area": "CM1", "registered_at": joined.isoformat()}, joined)
            eligible = joined + timedelta(days=self.rng.randint(20, 60))
            self.add(site, "volunteer.eligibility_changed", {
                "volunteer_id": v, "eligible": True, "reasons": [],
                "evaluated_on": eligible.date().isoformat()}, eligible)
            if self.rng.random() < 0.15:
                left = eligible + timedelta(days=self.rng.randint(30, 300))
                self.add(site, "volunteer.left", {
                    "volunteer_id": v, "previous_stage": "active",
                    "left_on": left.date().isoformat()}, left)
        return ids

    def referral(self, site, volunteers):
        rng = self.rng
        r, j = str(uuid.uuid4()), str(uuid.uuid4())
        got = YEAR_START + timedelta(days=rng.randint(0, 330), hours=rng.randint(0, 8))
        self.add(site, "referral.received", {
            "referral_id": r, "source": rng.choice(REFERRAL_SOURCES),
            "preferred_language": "en", "area": "CM1",
            "received_at": got.isoformat()}, got)
        decided = got + timedelta(days=rng.randint(0, 6))
        roll = rng.random()
        if roll < 0.1:
            self.add(site, "referral.declined", {"referral_id": r, "reason": "not_eligible",
                                                 "declined_at": decided.isoformat()}, decided)
            return
        if roll < 0.2:
            self.add(site, "referral.signposted", {
                "referral_id": r, "signposted_at": decided.isoformat()}, decided)
            return
        self.add(site, "referral.accepted", {
            "referral_id": r, "preferred_language": "en", "interpreter_needed": False,
            "area": "CM1", "needs": ["isolation"], "preferred_support": ["home_visit"],
            "accepted_at": decided.isoformat()}, decided)
        v, m = rng.choice(volunteers), str(uuid.uuid4())
        matched = decided + timedelta(days=rng.randint(1, 20))
        self.add(site, "match.confirmed", {
            "match_id": m, "referral_id": r, "volunteer_id": v, "score": 0.7,
            "confirmed_at": matched.isoformat()}, matched)
        facts = {"journey_id": j, "referral_id": r, "volunteer_id": v}
        self.add(site, "journey.started", dict(facts, match_id=m,
                                               started_at=matched.isoformat()), matched)
        day = matched
        for _ in range(rng.randint(4, 10)):
            day += timedelta(days=rng.randint(3, 14))
            self.add(site, "contact.logged", dict(
                facts, contact_id=str(uuid.uuid4()), date=day.date().isoformat(),
                mode=rng.choice(CONTACT_MODES), duration_minutes=rng.randint(15, 120)), day)
        for _ in range(2):
            g = str(uuid.uuid4())
            category = rng.choice(GOAL_CATEGORIES)
            self.add(site, "goal.set", dict(facts, goal_id=g, category=category,
                                            set_on=matched.date().isoformat()), matched)
            self.add(site, "goal.reviewed", dict(
                facts, goal_id=g, category=category,
                status=rng.choice(["in_progress", "achieved", "achieved"]),
                reviewed_on=day.date().isoformat()), day)
        baseline = rng.randint(30, 55)
        for point, when, total in (("baseline", matched, baseline),
                                   ("exit", day, min(70, baseline + rng.randint(-4, 12)))):
            self.add(site, "outcome.recorded", dict(
                facts, outcome_id=str(uuid.uuid4()), instrument="wemwbs", time_point=point,
                recorded_on=when.date().isoformat(), scores={"total": total}), when)
        self.add(site, "journey.ended", dict(facts, reason="completed",
                                             ended_at=day.isoformat()), day)

    def fill(self, target):
        pools = {site: self.volunteers(site, 120) for site in self.sites}
        while len(self.events) < target:
            site = self.sites[0] if self.rng.random() < 0.5 else self.rng.choice(self.sites)
            self.referral(site, pools[site])
        return self.events[:target]


def seed_archive(database, events, batch=2000):
    # Archived a day ago, not just now: the rebuild re-applies, one by one,
    # whatever was archived in its last minutes (events a live handler
    # added meanwhile), which would otherwise be the whole seed.
    archived_at = datetime.now(timezone.utc) - timedelta(days=1)
    records = []
    for event in events:
        envelope, data = load_event(event)
        records.append(domain.archive_record(envelope, data, archived_at=archived_at))
    for start in range(0, len(records), batch):
        database[store.EVENT_ARCHIVE].insert_many(records[start:start + batch])


def figures(label, seconds):
    ms = sorted(s * 1000 for s in seconds)
    return (f"  {label:<40} n {len(ms):>3}  p50 {percentile(ms, .5):8.1f}  "
            f"max {ms[-1]:8.1f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50000)
    parser.add_argument("--sites", type=int, default=4)
    parser.add_argument("--reports", type=int, default=5, help="measured report calls")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    rng = random.Random(args.seed)
    sites = [f"bench-site-{i}" for i in range(args.sites)]

    print("Alongside reporting benchmark")
    print(f"machine: {machine_facts()}")
    server, vhost, container, client = SecantusServer(), Vhost(), None, None
    try:
        server.start()
        vhost.create()
        config = load_service_config(
            "reporting", AMQP_URI=vhost.amqp_uri, MONGODB_URI=server.uri,
            MONGODB_DATABASE="bench_reporting",
            WEB_SERVER_ADDRESS=f"127.0.0.1:{free_port()}")
        config.pop("LOGGING", None)
        container = ServiceContainer(ReportingService, config)
        container.start()
        client = connect(server.uri)
        database = client["bench_reporting"]

        started = time.monotonic()
        events = Seeder(rng, sites).fill(args.events)
        seed_archive(database, events)
        print(f"seeded {len(events)} archived events at {len(sites)} sites in "
              f"{time.monotonic() - started:.1f}s (secantus on :{server.port}, "
              f"--sync-on-commit; vhost {vhost.name})")

        result = rebuild.rebuild(database)
        if result["events"] != len(events):
            raise BenchmarkFailed(f"the rebuild read {result['events']} events")
        print(f"\nrebuild from scratch: {result['events']} events -> "
              f"{result['documents']} projection documents in {result['seconds']:.2f} s: "
              f"{result['events_per_second']:.0f} events/s")
        again = rebuild.rebuild(database)
        print(f"rebuild again (projections present): {again['seconds']:.2f} s, "
              f"{again['events_per_second']:.0f} events/s")

        busiest = sites[0]
        referrals = database[store.REFERRAL_FACTS].count_documents({"site_id": busiest})
        with ClusterRpcProxy({"AMQP_URI": vhost.amqp_uri}, timeout=120) as cluster:
            times, national_times, report = [], [], None
            for _ in range(args.reports):
                began = time.perf_counter()
                report = cluster.reporting.quarterly_report(busiest, {"quarter": "2026Q3"})
                times.append(time.perf_counter() - began)
            for _ in range(max(1, args.reports // 2)):
                began = time.perf_counter()
                cluster.reporting.national_report({"quarter": "2026Q3",
                                                   "site_ids": sites})
                national_times.append(time.perf_counter() - began)
        if not report["referrals"]["received"]:
            raise BenchmarkFailed("the quarter came back empty")
        [wemwbs] = [o for o in report["outcomes"] if o["instrument"] == "wemwbs"]
        print(f"\nquarterly report, {busiest} ({referrals} referrals in all; 2026Q3: "
              f"{report['referrals']['received']} received, {report['contacts']['total']} "
              f"contacts, {wemwbs['n_pairs']} WEMWBS pairs, p = {wemwbs['p_value']}):")
        print(figures("reporting.quarterly_report over RPC", times))
        print(figures(f"reporting.national_report ({len(sites)} sites)", national_times))
        return 0
    except BenchmarkFailed as failure:
        print(f"benchmark failed: {failure}", file=sys.stderr)
        return 1
    finally:
        if container is not None:
            container.stop()
        if client is not None:
            client.close()
        vhost.delete()
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
