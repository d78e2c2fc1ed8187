"""A service killed after its write and before its publish loses nothing.

`referrals` runs as its own `nameko run` process, as in production. With
the failpoint `outbox.before_publish` on, it dies (like kill -9) the moment
its relay is about to publish: the referral is stored, the event is not
sent. Restarted without the failpoint, the relay publishes it.
"""
import os
import signal
import subprocess
import sys
import time

from nameko.standalone.rpc import ClusterRpcProxy
from nameko.exceptions import RpcTimeout
from pymongo import MongoClient

from shared.config import ROOT
from tests.support import MASTER_KEY, REFERRAL, SITE_RULES, http_get, wait_until

NAMEKO = os.path.join(os.path.dirname(sys.executable), "nameko")


def run_referrals(config, log_path, failpoints=""):
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONWARNINGS="ignore",
               AMQP_URI=config["AMQP_URI"], MONGODB_URI=config["MONGODB_URI"],
               REFERRALS_DATABASE=config["MONGODB_DATABASE"],
               REFERRALS_HTTP_ADDRESS=config["WEB_SERVER_ADDRESS"],
               OUTBOX_POLL_INTERVAL_SECONDS="0.2",
               ALONGSIDE_MASTER_KEY=MASTER_KEY, ALONGSIDE_FAILPOINTS=failpoints)
    process = subprocess.Popen(
        [NAMEKO, "run", "--config", "services/referrals/config.yaml",
         "services.referrals.service:ReferralsService"],
        cwd=ROOT, env=env, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT)

    def ready_or_dead():
        if process.poll() is not None:
            return True
        try:
            return http_get(config, "/health/ready")[0] == 200
        except OSError:
            return False

    wait_until(ready_or_dead, timeout=30, what="referrals to be ready")
    assert process.poll() is None, open(log_path).read()[-2000:]
    return process


def test_event_written_but_not_published_is_published_after_restart(
        service_config, broker, tmp_path):
    config = service_config("referrals")
    listener = broker.listen("referral.received")
    log_path = tmp_path / "referrals.log"

    doomed = run_referrals(config, log_path, failpoints="outbox.before_publish")
    try:
        with ClusterRpcProxy(config, timeout=5) as cluster:
            try:
                cluster.referrals.create_referral(
                    "essex", dict(REFERRAL, source="gp", postcode="DE22 3NE"),
                    SITE_RULES)
            except RpcTimeout:
                pass   # it may die before its reply leaves: that is the point
        assert doomed.wait(timeout=15) == 137, "the failpoint should have killed it"
    finally:
        if doomed.poll() is None:
            doomed.send_signal(signal.SIGKILL)

    database = MongoClient(config["MONGODB_URI"])[config["MONGODB_DATABASE"]]
    [stored] = list(database.referrals.find())
    assert [e["event"]["type"] for e in stored["_outbox"]] == ["referral.received"]
    time.sleep(0.5)
    assert broker.depth(listener) == 0, "nothing may have been published yet"

    revived = run_referrals(config, log_path)
    try:
        wait_until(lambda: not database.referrals.find_one(
            {"_id": stored["_id"]}).get("_outbox"), timeout=15, what="the outbox to empty")
        time.sleep(0.5)
        # The RPC request itself may be redelivered to the revived process
        # (the doomed one died before acking it), creating a second referral
        # with its own event: nameko RPC is at-least-once. The stored one's
        # event must be there exactly once.
        events = []
        while broker.depth(listener):
            events.append(broker.get(listener))
        ours = [e for e in events if e["subject"] == stored["_id"]]
        assert len(ours) == 1 and ours[0]["siteid"] == "essex", events
    finally:
        revived.send_signal(signal.SIGTERM)
        revived.wait(timeout=15)
