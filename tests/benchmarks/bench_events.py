"""Event path benchmark: Alongside (outbox -> RabbitMQ -> inbox) against raw kombu.

    .venv/bin/python tests/benchmarks/bench_events.py [--events N] [--warmup N]

Not a pytest test: it prints figures. It starts its own secantus server (temp
storage, fsync on commit) and its own RabbitMQ vhost, so it disturbs nothing
else on the broker; both go away at the end, also on error.

Alongside path, measured per event:
  dispatch  the benchmark builds a referral and its ``referral.received``
            event with ``domain.receive_referral`` and writes both with
            ``ReferralStore.add`` (one insert), then wakes the outbox relay as
            a worker's teardown would (``--via rpc`` calls
            ``referrals.create_referral`` instead, which adds the RPC round trip)
  applied   the reporting service's inbox transaction committed, i.e. the
            event is in ``event_archive`` (timed where ``apply_once`` returns;
            the archive is checked afterwards, and ``archived_at`` is shown as
            a cross-check)
Raw path: kombu publish with confirm (persistent, durable queue, same body size)
-> consume -> ack, latency from a timestamp in the message to its consumption.

Both paths get the same offered load: as fast as possible unless ``--rate``.
Latency under "as fast as possible" includes queueing at the slowest stage.
"""
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()  # first: nameko, kombu and pymongo must see green sockets

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections import Counter  # noqa: E402
from importlib.metadata import version as package_version  # noqa: E402
from urllib.parse import quote  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)  # run as a script: make `shared` and `services` importable

import requests  # noqa: E402
from eventlet.event import Event  # noqa: E402
from eventlet.queue import LightQueue  # noqa: E402
from kombu import Connection, Consumer, Exchange, Producer, Queue  # noqa: E402
from nameko.constants import PERSISTENT  # noqa: E402
from nameko.containers import ServiceContainer  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402
from pymongo import MongoClient, monitoring  # noqa: E402

from services.referrals.domain import receive_referral  # noqa: E402
from services.referrals.schemas import NewReferralSchema, SiteRulesSchema  # noqa: E402
from services.referrals.service import ReferralsService  # noqa: E402
from services.referrals.store import ReferralStore  # noqa: E402
from services.reporting.service import ReportingService  # noqa: E402
from services.reporting.store import EVENT_ARCHIVE  # noqa: E402
from shared.config import load_service_config  # noqa: E402
from shared.crypto import FieldCipher  # noqa: E402
from tests.support import MASTER_KEY, REFERRAL, SITE_RULES  # noqa: E402
from shared.events.catalogue import REFERRAL_SOURCES  # noqa: E402
from shared.events.envelope import utcnow  # noqa: E402
from shared.inbox import Inbox  # noqa: E402
from shared.metrics import Metrics  # noqa: E402
from shared.outbox import Outbox  # noqa: E402
from shared.storage import connect  # noqa: E402

AMQP_HOST = "127.0.0.1:5672"
MANAGEMENT = "http://127.0.0.1:15672/api"
MANAGEMENT_AUTH = ("guest", "guest")
SITE_ID = "bench-site"
# The referral form the tests use (a made-up parent, inside SITE_RULES' catchment).
PAYLOAD = REFERRAL


class BenchmarkFailed(Exception):
    pass


# -- infrastructure: a private MongoDB server and a private vhost -------------

def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SecantusServer:
    """A secantus process on a free port with a temp storage dir."""

    def __init__(self):
        self.port = free_port()
        self.directory = tempfile.mkdtemp(prefix="bench-secantus-")
        self.uri = (f"mongodb://127.0.0.1:{self.port}/"
                    "?retryWrites=false&directConnection=true")
        self.process = None

    def start(self, timeout=30):
        self.log = open(os.path.join(self.directory, "server.log"), "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "secantus", "--host", "127.0.0.1",
             "--port", str(self.port),
             "--storage-path", os.path.join(self.directory, "data"),
             "--sync-on-commit", "--log-level", "WARNING"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise BenchmarkFailed(
                    f"secantus exited with {self.process.returncode}:\n{self._tail()}")
            try:
                client = MongoClient(self.uri, serverSelectionTimeoutMS=500)
                client.admin.command("ping")
                client.close()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise BenchmarkFailed(
                        f"secantus did not answer within {timeout}s:\n{self._tail()}")
                eventlet.sleep(0.2)

    def _tail(self):
        self.log.flush()
        with open(self.log.name, "rb") as log:
            return log.read()[-2000:].decode(errors="replace")

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process is not None:
            self.log.close()
        shutil.rmtree(self.directory, ignore_errors=True)


class Vhost:
    """A RabbitMQ vhost of our own, made and removed through the management API."""

    def __init__(self):
        self.name = f"alongside-bench-{uuid.uuid4().hex[:8]}"
        self.amqp_uri = f"amqp://guest:guest@{AMQP_HOST}/{self.name}"
        self.created = False

    def create(self):
        name = quote(self.name, safe="")
        response = requests.put(f"{MANAGEMENT}/vhosts/{name}",
                                auth=MANAGEMENT_AUTH, timeout=10)
        response.raise_for_status()
        self.created = True
        response = requests.put(
            f"{MANAGEMENT}/permissions/{name}/guest", auth=MANAGEMENT_AUTH,
            json={"configure": ".*", "write": ".*", "read": ".*"}, timeout=10)
        response.raise_for_status()

    def queues(self):
        """{queue name: (ready, unacked)}, for diagnostics."""
        response = requests.get(f"{MANAGEMENT}/queues/{quote(self.name, safe='')}",
                                auth=MANAGEMENT_AUTH, timeout=10)
        response.raise_for_status()
        return {q["name"]: (q.get("messages_ready", 0),
                            q.get("messages_unacknowledged", 0))
                for q in response.json()}

    def delete(self):
        if self.created:
            requests.delete(f"{MANAGEMENT}/vhosts/{quote(self.name, safe='')}",
                            auth=MANAGEMENT_AUTH, timeout=10)


# -- measuring helpers --------------------------------------------------------

def percentile(sorted_values, fraction):
    """Nearest-rank percentile of an already sorted list."""
    rank = math.ceil(fraction * len(sorted_values))
    return sorted_values[max(0, min(len(sorted_values), rank) - 1)]


def summarise(name, sent, arrived):
    """sent/arrived: {key: seconds}. Throughput over first send -> last arrival."""
    latencies = sorted((arrived[key] - sent[key]) * 1000 for key in sent)
    wall = max(arrived[key] for key in sent) - min(sent.values())
    return {"path": name, "n": len(sent), "wall_s": wall,
            "rate": len(sent) / wall,
            "p50": percentile(latencies, 0.50), "p95": percentile(latencies, 0.95),
            "p99": percentile(latencies, 0.99), "max": latencies[-1]}


def run_load(count, concurrency, rate, send_one):
    """Call send_one(i) count times from `concurrency` greenthreads.

    rate 0: each greenthread sends as fast as it can (closed loop);
    rate R: send i starts at i/R seconds, still at most `concurrency` in flight.
    """
    counter = itertools.count()
    start = time.monotonic()
    errors = []

    def worker():
        for i in counter:
            if i >= count or errors:
                return
            if rate:
                eventlet.sleep(max(0.0, start + i / rate - time.monotonic()))
            try:
                send_one(i)
            except Exception as error:  # stop the load; reported below
                errors.append(error)

    pool = eventlet.GreenPool(concurrency)
    for _ in range(concurrency):
        pool.spawn(worker)
    pool.waitall()
    if errors:
        raise BenchmarkFailed(f"dispatch failed: {errors[0]!r}") from errors[0]


def wait_for(done, timeout, what, diagnose):
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise BenchmarkFailed(f"{what} did not happen within {timeout:.0f}s\n"
                                  + diagnose())
        eventlet.sleep(0.05)


class CommandCounter(monitoring.CommandListener):
    """Counts MongoDB commands (all clients in this process): round trips
    per event, and failures such as transaction write conflicts."""

    def __init__(self):
        self.enabled = False
        self.ok = Counter()
        self.failures = Counter()

    def started(self, event):
        pass

    def succeeded(self, event):
        if self.enabled:
            self.ok[event.command_name] += 1

    def failed(self, event):
        if self.enabled:
            failure = event.failure or {}
            self.failures[f"{event.command_name}:{failure.get('codeName', '?')}"] += 1


COMMANDS = CommandCounter()
monitoring.register(COMMANDS)  # before any client exists: services included


# -- the Alongside path -------------------------------------------------------

def extension(container, cls):
    for dependency in container.dependencies:
        if isinstance(dependency, cls):
            return dependency
    raise BenchmarkFailed(f"{container.service_name} has no {cls.__name__}")


class AlongsideBench:
    """The two real services in this process, instrumented (not changed) to
    time each event where the relay got its publish confirm and where the
    reporting inbox committed it. Events are keyed by referral id, which is
    the envelope's subject."""

    def __init__(self, vhost, mongo_uri, args):
        self.args = args
        self.vhost = vhost
        amqp_uri = self.amqp_uri = vhost.amqp_uri
        run_id = uuid.uuid4().hex[:8]
        self.configs = {
            name: load_service_config(
                name, AMQP_URI=amqp_uri, MONGODB_URI=mongo_uri,
                MONGODB_DATABASE=f"bench_{run_id}_{name}",
                WEB_SERVER_ADDRESS=f"127.0.0.1:{free_port()}",
                ENCRYPTION={"MASTER_KEY": MASTER_KEY})
            for name in ("referrals", "reporting")}
        self.containers = {}
        self.dispatched = {}   # referral id -> time before the write / call
        self.published = {}    # referral id -> relay's publish confirmed
        self.applied = {}      # referral id -> inbox transaction committed
        self.client = None

    def start(self):
        # Reporting first: its queue must be bound before referrals publish,
        # or the alternate exchange parks events in alongside.unrouted.
        for name, cls in (("reporting", ReportingService),
                          ("referrals", ReferralsService)):
            container = ServiceContainer(cls, self.configs[name])
            self.containers[name] = container
            container.start()
        self.outbox = extension(self.containers["referrals"], Outbox)
        self._instrument(self.outbox, extension(self.containers["reporting"], Inbox))
        self.client = connect(self.configs["referrals"]["MONGODB_URI"])
        self.referrals_db = self.client[self.configs["referrals"]["MONGODB_DATABASE"]]
        self.reporting_db = self.client[self.configs["reporting"]["MONGODB_DATABASE"]]

    def _instrument(self, outbox, inbox):
        publish = outbox._publish

        def timed_publish(event):
            publish(event)  # returns once the broker confirmed
            self.published.setdefault(event["subject"], time.time())
        outbox._publish = timed_publish

        get_dependency = inbox.get_dependency

        def timed_get_dependency(worker_ctx):
            handle = get_dependency(worker_ctx)
            apply_once = handle.apply_once

            def timed_apply_once(envelope, apply):
                ran = apply_once(envelope, apply)
                if ran:  # False for a redelivery the inbox ignored
                    self.applied.setdefault(envelope["subject"], time.time())
                return ran
            handle.apply_once = timed_apply_once
            return handle
        inbox.get_dependency = timed_get_dependency

    def stop(self):  # idempotent: also called from the final cleanup
        containers, self.containers = list(self.containers.values()), {}
        for container in reversed(containers):  # referrals before reporting
            try:
                with eventlet.Timeout(20):
                    container.stop()
            except BaseException:
                container.kill()
        if self.client is not None:
            self.client.close()
            self.client = None

    # dispatching

    def dispatch(self, count):
        """Dispatch `count` referrals; returns their referral ids."""
        ids = []
        # Reporting keeps one counter document per (site, source): --sources
        # spreads the events over that many of them (1 = every event the same).
        payloads = [dict(PAYLOAD, source=source)
                    for source in REFERRAL_SOURCES[:self.args.sources]]
        if self.args.via == "store":
            forms = [NewReferralSchema().load(p)  # as create_referral does
                     for p in payloads]
            store = ReferralStore(self.referrals_db, SITE_ID)
            rules = SiteRulesSchema().load(SITE_RULES)
            cipher = FieldCipher(MASTER_KEY)

            def send_one(i):
                referral_id = str(uuid.uuid4())
                ids.append(referral_id)
                self.dispatched[referral_id] = time.time()
                referral, events = receive_referral(
                    SITE_ID, forms[i % len(forms)], referral_id, utcnow(),
                    site_rules=rules)
                # As the service does: personal fields leave encrypted.
                referral["personal"] = cipher.encrypt_fields(
                    SITE_ID, referral["personal"], "referral.")
                store.add(referral, events)
                self.outbox.wake()  # what worker_teardown does after an RPC
            run_load(count, self.args.concurrency, self.args.rate, send_one)
            return ids

        # --via rpc: one proxy per greenthread (a standalone proxy's reply
        # consumer must not be drained by two greenthreads at once).
        proxies = [ClusterRpcProxy({"AMQP_URI": self.amqp_uri}, timeout=60)
                   for _ in range(self.args.concurrency)]
        free = LightQueue()
        try:
            for proxy in proxies:
                free.put(proxy.start())

            def call_one(i):
                cluster = free.get()
                try:
                    started = time.time()
                    result = cluster.referrals.create_referral(
                        SITE_ID, payloads[i % len(payloads)], SITE_RULES)
                finally:
                    free.put(cluster)
                ids.append(result["id"])
                self.dispatched[result["id"]] = started
            run_load(count, self.args.concurrency, self.args.rate, call_one)
        finally:
            for proxy in proxies:
                proxy.stop()
        return ids

    def run(self, count, timeout, phase):
        ids = self.dispatch(count)
        wait_for(lambda: all(i in self.applied for i in ids), timeout,
                 f"{phase}: applying {count} events", lambda: self.diagnose(ids))
        return ids

    def diagnose(self, ids):
        lines = [f"  dispatched {len(ids)}, published "
                 f"{sum(i in self.published for i in ids)}, applied "
                 f"{sum(i in self.applied for i in ids)}"]
        try:
            lines.append(f"  outbox backlog: {self.outbox.backlog()}")
            lines.append("  queues (ready, unacked; management stats lag ~5 s): "
                         f"{self.vhost.queues()}")
        except Exception as error:
            lines.append(f"  (diagnostics failed: {error!r})")
        return "\n".join(lines)

    # reporting

    def verify(self, ids):
        """The archive must hold every measured event; returns archived_at
        per referral id for the cross-check."""
        archived = {
            doc["subject"]: doc["archived_at"].timestamp()
            for doc in self.reporting_db[EVENT_ARCHIVE].find(
                {"subject": {"$in": ids}}, {"subject": 1, "archived_at": 1})}
        missing = len(set(ids) - set(archived))
        if missing:
            raise BenchmarkFailed(f"{missing} applied events are not in {EVENT_ARCHIVE}")
        backlog = self.outbox.backlog()
        if backlog:
            raise BenchmarkFailed(f"outbox still holds {backlog} events")
        return archived

    def handler_failures(self):
        metrics = extension(self.containers["reporting"], Metrics)
        return sum(sample.value for metric in metrics.event_failures.collect()
                   for sample in metric.samples if sample.name.endswith("_total"))


def queue_depths(amqp_uri, names):
    """Ready messages per queue, exact (a passive declare, not management
    stats); None for a queue that does not exist."""
    depths = {}
    with Connection(amqp_uri) as connection:
        for name in names:
            channel = connection.channel()  # a failed passive declare closes it
            try:
                depths[name] = channel.queue_declare(name, passive=True).message_count
            except Exception:
                depths[name] = None
            finally:
                try:
                    channel.close()
                except Exception:
                    pass
    return depths


def envelope_size():
    form = NewReferralSchema().load(PAYLOAD)
    _, events = receive_referral(SITE_ID, form, str(uuid.uuid4()), utcnow(),
                                 site_rules=SiteRulesSchema().load(SITE_RULES))
    return len(json.dumps(events[0]))


# -- the raw kombu baseline ---------------------------------------------------

class RawBench:
    """Publish with confirm -> consume -> ack on the same broker and vhost.

    Mirrors the relay (one publisher, waiting for each confirm, persistent
    messages, a durable queue) and nameko's consumer (prefetch = max_workers).
    """

    def __init__(self, amqp_uri, body_size, prefetch, args):
        self.amqp_uri = amqp_uri
        self.body_size = body_size
        self.prefetch = prefetch
        self.args = args
        exchange = Exchange("bench.raw", type="direct", durable=True)
        self.queue = Queue("bench.raw", exchange, routing_key="bench.raw",
                           durable=True)
        self.sent = {}
        self.received = {}
        self._stop = False
        self.consumer = self.connection = None

    def body(self, seq):
        body = {"seq": seq, "t": time.time(), "pad": ""}
        padding = self.body_size - len(json.dumps(body))
        body["pad"] = "x" * max(0, padding)
        return body

    def _consume(self, ready):
        def on_message(body, message):
            self.received.setdefault(body["seq"], time.time())
            message.ack()

        with Connection(self.amqp_uri) as connection:
            channel = connection.channel()
            with Consumer(channel, [self.queue], callbacks=[on_message],
                          accept=["json"], prefetch_count=self.prefetch):
                ready.send(True)
                while not self._stop:
                    try:
                        connection.drain_events(timeout=0.5)
                    except socket.timeout:
                        pass

    def start(self):
        ready = Event()
        self.consumer = eventlet.spawn(self._consume, ready)
        with eventlet.Timeout(15, BenchmarkFailed("raw consumer did not start")):
            ready.wait()
        self.connection = Connection(
            self.amqp_uri, transport_options={"confirm_publish": True})
        self.producer = Producer(self.connection.default_channel)
        self.seqs = itertools.count()

    def stop(self):  # idempotent: also called from the final cleanup
        self._stop = True
        if self.consumer is not None:
            with eventlet.Timeout(5, False):
                self.consumer.wait()
            self.consumer.kill()
            self.consumer = None
        if self.connection is not None:
            self.connection.release()
            self.connection = None

    def run(self, count, timeout, phase):
        seqs = [next(self.seqs) for _ in range(count)]

        def send_one(i):
            body = self.body(seqs[i])
            self.sent[seqs[i]] = body["t"]
            self.producer.publish(
                json.dumps(body), exchange=self.queue.exchange,
                routing_key=self.queue.routing_key, declare=[self.queue],
                content_type="application/json", content_encoding="utf-8",
                delivery_mode=PERSISTENT)
        run_load(count, 1, self.args.rate, send_one)  # one publisher, like the relay
        if self.consumer.dead:
            self.consumer.wait()  # re-raises the consumer's error
        wait_for(lambda: all(s in self.received for s in seqs), timeout,
                 f"{phase}: consuming {count} raw messages",
                 lambda: f"  received {sum(s in self.received for s in seqs)}")
        return seqs


# -- the run ------------------------------------------------------------------

def machine_facts():
    try:
        rabbit = requests.get(f"{MANAGEMENT}/overview", auth=MANAGEMENT_AUTH,
                              timeout=5).json().get("rabbitmq_version", "?")
    except Exception:
        rabbit = "?"
    return (f"nproc {os.cpu_count()} (usable {len(os.sched_getaffinity(0))}), "
            f"Python {platform.python_version()}, {platform.system()} "
            f"{platform.release()}, RabbitMQ {rabbit}, nameko "
            f"{package_version('nameko')}, kombu {package_version('kombu')}, "
            f"pymongo {package_version('pymongo')}, eventlet "
            f"{package_version('eventlet')}, SecantusDB {package_version('SecantusDB')}")


def print_table(rows):
    print(f"\n{'path':<12}{'events/s':>10}{'p50 ms':>10}{'p95 ms':>10}"
          f"{'p99 ms':>10}{'max ms':>10}{'wall s':>9}")
    for row in rows:
        print(f"{row['path']:<12}{row['rate']:>10.1f}{row['p50']:>10.1f}"
              f"{row['p95']:>10.1f}{row['p99']:>10.1f}{row['max']:>10.1f}"
              f"{row['wall_s']:>9.2f}")


def latency_line(label, sent, arrived, keys):
    values = sorted((arrived[k] - sent[k]) * 1000 for k in keys)
    return (f"  {label:<44} p50 {percentile(values, .5):8.1f}  p95 "
            f"{percentile(values, .95):8.1f}  max {values[-1]:8.1f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    # 1000, not 2000: with the shared code as it is, the Alongside path
    # sustains ~20-30 events/s here, so 2000 takes ~100 s of the timeout.
    parser.add_argument("--events", type=int, default=1000,
                        help="measured events per path (default 1000)")
    parser.add_argument("--warmup", type=int, default=100,
                        help="unmeasured events first, per path (default 100)")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="dispatching greenthreads for Alongside (default 4)")
    parser.add_argument("--rate", type=float, default=0,
                        help="offered events/s for both paths (default 0: as fast "
                             "as possible)")
    parser.add_argument("--via", choices=("store", "rpc"), default="store",
                        help="dispatch by ReferralStore.add + outbox wake "
                             "(default) or by the create_referral RPC")
    parser.add_argument("--sources", type=int, default=1,
                        choices=range(1, len(REFERRAL_SOURCES) + 1),
                        metavar="K", help="cycle the referral source over K "
                        "values (default 1: every event is a midwife referral)")
    parser.add_argument("--timeout", type=float, default=120,
                        help="seconds to wait for each phase's events (default 120)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")

    print("Alongside event path benchmark")
    print(f"machine: {machine_facts()}")
    load = f"{args.rate:g}/s offered" if args.rate else "as fast as possible"
    print(f"N = {args.events} measured events per path, warmup {args.warmup}, "
          f"load: {load}, referral sources: {args.sources}")

    server, vhost, alongside, raw = SecantusServer(), Vhost(), None, None
    try:
        server.start()
        vhost.create()
        print(f"secantus on :{server.port} (--sync-on-commit), vhost {vhost.name}")

        # Alongside: warm up, then measure with the Mongo command counter on.
        alongside = AlongsideBench(vhost, server.uri, args)
        alongside.start()
        if args.warmup:
            alongside.run(args.warmup, args.timeout, "Alongside warmup")
        failures_before = alongside.handler_failures()
        COMMANDS.enabled = True
        ids = alongside.run(args.events, args.timeout, "Alongside")
        COMMANDS.enabled = False
        archived = alongside.verify(ids)
        dispatched = {i: alongside.dispatched[i] for i in ids}
        alongside_row = summarise("alongside", dispatched, alongside.applied)
        failures = alongside.handler_failures() - failures_before
        # None: a queue never declared, so nothing parked in it either.
        parked = queue_depths(vhost.amqp_uri, [
            "alongside.unrouted", "referrals.dead-letters", "reporting.dead-letters"])
        alongside.stop()

        # Raw kombu, same broker, same vhost, its own queue.
        body_size = envelope_size()
        prefetch = alongside.configs["reporting"].get("max_workers") or 10
        raw = RawBench(vhost.amqp_uri, body_size, prefetch, args)
        raw.start()
        if args.warmup:
            raw.run(args.warmup, args.timeout, "raw warmup")
        seqs = raw.run(args.events, args.timeout, "raw")
        raw_row = summarise("raw kombu", {s: raw.sent[s] for s in seqs},
                            raw.received)
        raw.stop()

        how = ("ReferralStore.add(referral, [event]) + Outbox.wake(), "
               f"{args.concurrency} greenthreads" if args.via == "store" else
               f"referrals.create_referral RPC, {args.concurrency} greenthreads")
        print(f"\nalongside: dispatch = {how}; applied = reporting inbox "
              "transaction committed (event in event_archive)")
        print(f"raw kombu: 1 publisher with confirms (persistent, durable queue), "
              f"{body_size}-byte JSON bodies, consumer greenthread with "
              f"prefetch {prefetch}, ack each")
        print_table([alongside_row, raw_row])
        print(f"\nratio alongside/raw: throughput {alongside_row['rate'] / raw_row['rate']:.3f}x, "
              f"p50 {alongside_row['p50'] / raw_row['p50']:.1f}x")

        # Where the Alongside time goes (same event keys, same clock).
        print("\nalongside breakdown:")
        print(latency_line("dispatch -> publish confirmed (outbox)",
                           dispatched, alongside.published, ids))
        print(latency_line("publish confirmed -> inbox committed",
                           alongside.published, alongside.applied, ids))
        print(latency_line("dispatch -> archived_at (ms, before commit)",
                           dispatched, archived, ids))
        dispatch_wall = max(dispatched.values()) - min(dispatched.values())
        print(f"  dispatch alone took {dispatch_wall:.2f}s "
              f"({len(ids) / max(dispatch_wall, 1e-9):.0f}/s offered)")
        per_event = ", ".join(f"{name} {n / len(ids):.2f}"
                              for name, n in COMMANDS.ok.most_common(8))
        print(f"  mongo commands per event (all clients, the dispatch insert "
              f"included): {per_event}")
        if COMMANDS.failures:
            print(f"  mongo command failures: {dict(COMMANDS.failures)}")
        print(f"  handler failures (sent to retry): {failures:.0f}; "
              f"messages parked: {parked}")
    except BenchmarkFailed as error:
        print(f"\nBENCHMARK FAILED: {error}", file=sys.stderr)
        return 1
    finally:
        for part in (raw, alongside):
            if part is not None:
                try:
                    part.stop()
                except Exception as error:
                    print(f"cleanup: {error!r}", file=sys.stderr)
        try:
            vhost.delete()
        except Exception as error:
            print(f"cleanup: could not delete vhost {vhost.name}: {error!r}",
                  file=sys.stderr)
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
