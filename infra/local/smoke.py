"""Show the running system working: one referral, end to end.

A referral goes to `referrals` over RPC; its `referral.received` event
leaves through the outbox, crosses RabbitMQ and is archived and counted by
`reporting`. Uses the site code `demo`.
"""
import eventlet

eventlet.monkey_patch()

import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

from shared.config import load_service_config  # noqa: E402

SITE = "demo"


def main():
    config = {"AMQP_URI": load_service_config("referrals")["AMQP_URI"]}
    with ClusterRpcProxy(config, timeout=15) as cluster:
        before = cluster.reporting.referral_counts(SITE).get("midwife", 0)
        started = time.monotonic()
        referral = cluster.referrals.create_referral(
            SITE, {"source": "midwife", "postcode": "SW1A 1AA",
                   "preferred_language": "en"})
        print(f"[alongside] referral {referral['id']} received for site '{SITE}'")
        while time.monotonic() - started < 15:
            counts = cluster.reporting.referral_counts(SITE)
            if counts.get("midwife", 0) > before:
                elapsed = (time.monotonic() - started) * 1000
                print(f"[alongside] reporting counted it {elapsed:.0f} ms later; "
                      f"referrals at '{SITE}' by source: {counts}")
                return 0
            time.sleep(0.05)
    print("[alongside] reporting did not see the referral within 15 s: "
          "see .local/logs/", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
