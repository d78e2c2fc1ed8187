"""Matching benchmark: suggestions for a site with 10,000 volunteers, and a
match plan for 500 waiting parents.

    .venv/bin/python tests/benchmarks/bench_matching.py [--volunteers N]
        [--waiting N] [--calls N] [--plans N]

Not a pytest test: it prints figures. Like bench_events.py it starts its own
secantus server (temp storage, fsync on commit) and its own RabbitMQ vhost,
and removes both at the end, also on error.

- The matching service runs in a nameko container on that vhost and server.
- Seeding (not measured) writes the volunteers' profiles (eligible, some
  places taken) and the waiting referrals straight into the service's
  collections, built with the service's own domain functions: 10,000 profile
  PUTs and eligibility events would take minutes and measure something else.
- Measured: ``matching.suggestions`` over RPC (one caller, one call at a time,
  a random waiting referral each), end to end at the caller, in three
  states of the service's in-memory pool (services/matching/pool.py):
  current (one version read, scoring as arrays, ranking); one volunteer
  changed before each call (a real profile write and its version raise:
  the pool re-reads that volunteer and rebuilds its arrays); and cold (the
  whole pool read from the datastore, as on a first call). Beside them, the
  same suggestion in-process without the pool (the candidates query and
  scoring): what every call cost before.
- Then ``matching.match_plan`` over RPC for the whole waiting list, and the
  same plan computed in-process (``domain.plan``) to show the solver's share.
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
from datetime import datetime, timezone  # noqa: E402
from importlib.metadata import version as package_version  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)  # run as a script: make `shared` and `services` importable

from nameko.containers import ServiceContainer  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

from services.matching import domain, store  # noqa: E402
from services.matching.pool import Pools  # noqa: E402
from services.matching.service import MatchingService  # noqa: E402
from shared.config import load_service_config  # noqa: E402
from shared.events.types.referrals import NEEDS, SUPPORT_MODES  # noqa: E402
from shared.storage import connect  # noqa: E402
from tests.benchmarks.bench_events import (BenchmarkFailed, SecantusServer,  # noqa: E402
                                           Vhost, free_port, machine_facts,
                                           percentile)

SITE_ID = "bench-site"
DISTRICTS = [f"CM{i}" for i in range(1, 31)] + ["SS1", "SS2", "CO1", "CO2"]
LANGUAGES = ["pl", "ur", "pa", "ro", "ar", "bn", "so", "lt"]


def seed(database, volunteers, waiting, rng):
    now = datetime.now(timezone.utc)
    profiles = []
    for i in range(volunteers):
        capacity = rng.randint(1, 3)
        form = {"languages": sorted({"en"} | set(rng.sample(LANGUAGES, rng.randint(0, 1)))),
                "districts": sorted(rng.sample(DISTRICTS, 3)),
                "lived_experience": sorted(rng.sample(NEEDS, rng.randint(0, 3))),
                "support_modes": sorted(rng.sample(SUPPORT_MODES, rng.randint(1, 3))),
                "capacity": capacity, "birth_buddy": rng.random() < 0.2,
                "available_days": ["mon", "thu"], "user_id": None}
        fields = domain.profile_fields(form, now)
        fields.update(eligible=True, eligibility_reasons=[], eligibility_as_of=now,
                      active=rng.randint(0, capacity))   # some are full
        volunteer_id = f"vol-{i:05d}"
        profiles.append(dict(domain.insert_defaults(volunteer_id, fields), **fields,
                             _id=volunteer_id, site_id=SITE_ID))
    demand = []
    for i in range(waiting):
        english = rng.random() < 0.8
        data = {"preferred_language": "en" if english else rng.choice(LANGUAGES),
                "interpreter_needed": (not english) and rng.random() < 0.5,
                "area": rng.choice(DISTRICTS), "needs": rng.sample(NEEDS, rng.randint(0, 3)),
                "preferred_support": rng.sample(SUPPORT_MODES, rng.randint(0, 2)),
                "due_month": "2027-03", "accepted_at": now.isoformat()}
        demand.append(dict(domain.demand_from_accepted(data, now), _id=f"ref-{i:04d}",
                           site_id=SITE_ID, status=domain.WAITING, match_id=None))
    for start in range(0, len(profiles), 1000):
        database[store.PROFILES].insert_many(profiles[start:start + 1000])
    database[store.DEMAND].insert_many(demand)
    return [d["_id"] for d in demand], sum(p["active"] < p["capacity"] for p in profiles)


def figures(label, seconds):
    ms = sorted(s * 1000 for s in seconds)
    return (f"  {label:<34} n {len(ms):>4}  p50 {percentile(ms, .5):8.1f}  "
            f"p95 {percentile(ms, .95):8.1f}  max {ms[-1]:8.1f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--volunteers", type=int, default=10000)
    parser.add_argument("--waiting", type=int, default=500)
    parser.add_argument("--calls", type=int, default=60,
                        help="measured suggestion calls (default 60)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--plans", type=int, default=3,
                        help="measured match plans (default 3)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    rng = random.Random(args.seed)

    print("Alongside matching benchmark")
    print(f"machine: {machine_facts()}, numpy {package_version('numpy')}, "
          f"scipy {package_version('scipy')}")
    server, vhost, container, client = SecantusServer(), Vhost(), None, None
    try:
        server.start()
        vhost.create()
        config = load_service_config(
            "matching", AMQP_URI=vhost.amqp_uri, MONGODB_URI=server.uri,
            MONGODB_DATABASE="bench_matching",
            WEB_SERVER_ADDRESS=f"127.0.0.1:{free_port()}")
        config.pop("LOGGING", None)
        container = ServiceContainer(MatchingService, config)
        container.start()
        client = connect(server.uri)
        database = client["bench_matching"]

        started = time.monotonic()
        referral_ids, with_room = seed(database, args.volunteers, args.waiting, rng)
        print(f"seeded {args.volunteers} eligible volunteers ({with_room} with a place "
              f"left) and {args.waiting} waiting referrals in "
              f"{time.monotonic() - started:.1f}s (secantus on :{server.port}, "
              f"--sync-on-commit; vhost {vhost.name})")

        with ClusterRpcProxy({"AMQP_URI": vhost.amqp_uri}, timeout=120) as cluster:
            started = time.perf_counter()
            cluster.matching.suggestions(SITE_ID, referral_ids[0])
            first = time.perf_counter() - started
            for referral_id in referral_ids[1:args.warmup]:
                cluster.matching.suggestions(SITE_ID, referral_id)
            times, candidates = [], []
            for _ in range(args.calls):
                referral_id = rng.choice(referral_ids)
                started = time.perf_counter()
                answer = cluster.matching.suggestions(SITE_ID, referral_id, {"limit": 10})
                times.append(time.perf_counter() - started)
                candidates.append(answer["candidates"])
                if not answer["suggestions"] and answer["candidates"]:
                    raise BenchmarkFailed("suggestions came back empty")
            # One volunteer changes before each call (capacity up or down by
            # one, as a coordinator editing a profile would), then its version.
            changed_times = []
            volunteers_ids = [f"vol-{i:05d}" for i in range(args.volunteers)]
            for _ in range(args.calls):
                volunteer_id = rng.choice(volunteers_ids)
                database[store.PROFILES].update_one(
                    {"_id": volunteer_id}, {"$set": {"capacity": rng.randint(1, 3)}})
                store.PoolVersions(database, SITE_ID).touch([volunteer_id])
                referral_id = rng.choice(referral_ids)
                started = time.perf_counter()
                cluster.matching.suggestions(SITE_ID, referral_id, {"limit": 10})
                changed_times.append(time.perf_counter() - started)
            print(f"\nsuggestions ({args.volunteers} volunteers; candidates passing the "
                  f"hard rules per call: min {min(candidates)}, median "
                  f"{sorted(candidates)[len(candidates) // 2]}, max {max(candidates)}):")
            print(figures("over RPC, pool current", times))
            print(figures("over RPC, 1 volunteer changed", changed_times))
            print(f"  {'over RPC, cold (first call)':<34} {first * 1000:8.1f} ms")
            # In-process: a full reload of the pool, and the path without it.
            cold, direct = [], []
            weights = store.Settings(database, SITE_ID).weights()
            today = datetime.now(timezone.utc).date()
            for _ in range(5):
                referral = domain.with_pregnancy(
                    store.Demand(database, SITE_ID).get(rng.choice(referral_ids)), today)
                started = time.perf_counter()
                domain.suggest(referral, Pools().get(database, SITE_ID), weights, 10)
                cold.append(time.perf_counter() - started)
                started = time.perf_counter()
                domain.suggest(referral, store.Profiles(database, SITE_ID).candidates(referral),
                               weights, 10)
                direct.append(time.perf_counter() - started)
            print(figures("in-process, cold pool", cold))
            print(figures("in-process, no pool (query+score)", direct))

            plan_times, plan = [], None
            for _ in range(args.plans):
                started = time.perf_counter()
                plan = cluster.matching.match_plan(SITE_ID, {})
                plan_times.append(time.perf_counter() - started)
        if len(plan["pairs"]) + len(plan["unmatched"]) != args.waiting:
            raise BenchmarkFailed("the plan does not account for every waiting referral")
        given = {}
        for pair in plan["pairs"]:
            given[pair["volunteer_id"]] = given.get(pair["volunteer_id"], 0) + 1
        profiles = {p["_id"]: p for p in database[store.PROFILES].find(
            {"_id": {"$in": list(given)}}, {"active": 1, "capacity": 1})}
        over = [v for v, n in given.items()
                if profiles[v]["active"] + n > profiles[v]["capacity"]]
        if over:
            raise BenchmarkFailed(f"the plan overfills {len(over)} volunteers")

        # The same plan in-process: how much of it is the solver.
        volunteers = store.Profiles(database, SITE_ID).candidates()
        today = datetime.now(timezone.utc).date()
        waiting = [domain.with_pregnancy(d, today)
                   for d in store.Demand(database, SITE_ID).waiting()]
        weights = dict(domain.DEFAULT_WEIGHTS)
        pool = domain.Pool(volunteers)
        solves = []
        for _ in range(3):
            started = time.perf_counter()
            domain.plan(waiting, pool, weights)
            solves.append(time.perf_counter() - started)
        solve = sorted(solves)[1]

        print(f"\nmatch plan ({plan['waiting']} waiting, {plan['volunteers']} volunteers "
              f"with {plan['places']} places left): {len(plan['pairs'])} pairs, "
              f"{len(plan['unmatched'])} unmatched, total score {plan['total_score']:.2f}")
        print(figures("matching.match_plan over RPC", plan_times))
        print(f"  {'of which domain.plan in-process':<34} {solve * 1000:8.1f} ms "
              f"(scores, {plan['waiting']} x places matrix, linear_sum_assignment)")
    except BenchmarkFailed as error:
        print(f"\nBENCHMARK FAILED: {error}", file=sys.stderr)
        return 1
    finally:
        if container is not None:
            try:
                with eventlet.Timeout(20):
                    container.stop()
            except BaseException:
                container.kill()
        if client is not None:
            client.close()
        try:
            vhost.delete()
        except Exception as error:
            print(f"cleanup: could not delete vhost {vhost.name}: {error!r}", file=sys.stderr)
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
