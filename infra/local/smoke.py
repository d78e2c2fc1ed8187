"""Show the running system working: one referral, end to end, as people do it.

The national admin (from .local/secrets.env) logs in to the gateway, makes
sure a `demo` site and its coordinator exist, and the coordinator refers a
parent over HTTP. The gateway forwards it to `referrals` over RPC; its
`referral.received` event leaves through the outbox, crosses RabbitMQ and
is archived and counted by `reporting`.
"""
import eventlet

eventlet.monkey_patch()

import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timedelta, timezone  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import requests  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

from infra.local.localctl import local_secrets  # noqa: E402
from shared.config import load_service_config  # noqa: E402

API = "http://127.0.0.1:8000/api/v1"
COORDINATOR = ("coordinator@demo.alongside.local", "demo coordinator password")


def call(method, path, token=None, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = requests.request(method, API + path, headers=headers, timeout=15, **kwargs)
    if answer.status_code >= 400 and answer.status_code != 409:
        raise SystemExit(f"[alongside] {method} {path}: {answer.status_code} {answer.text}")
    return answer


def demo_referral():
    """A made-up parent, due in four months."""
    today = datetime.now(timezone.utc)
    return {"source": "midwife", "referrer_name": "Demo Midwife",
            "referrer_contact": "midwife@demo.alongside.local",
            "name": "Demo Parent", "date_of_birth": "1996-05-20",
            "phone": "07700 900001", "postcode": "SW1A 1AA",
            "preferred_language": "en", "interpreter_needed": False,
            "due_date": (today + timedelta(days=120)).date().isoformat(),
            "first_time_parent": True, "partner_included": True,
            "needs": ["isolation"], "preferred_support": ["home_visit"],
            "reason": "Demo referral from make run.",
            "consent_to_contact": True, "consent_to_share": True,
            "consent_obtained_at": today.isoformat(), "consent_obtained_how": "verbal"}


def login(email, password):
    return call("POST", "/auth/token", json={"email": email, "password": password}
                ).json()["access_token"]


def main():
    secrets = local_secrets()
    admin = login(secrets["ALONGSIDE_ADMIN_EMAIL"], secrets["ALONGSIDE_ADMIN_PASSWORD"])
    sites = {s["code"]: s for s in call("GET", "/sites", admin).json()}
    site = sites.get("demo") or call("POST", "/sites", admin, json={
        "name": "Demo programme", "code": "demo", "catchment": ["SW1A", "CM1"],
        "languages": ["en", "pl"]}).json()
    call("POST", "/users", admin, json={
        "email": COORDINATOR[0], "name": "Demo coordinator", "password": COORDINATOR[1],
        "role": "site_coordinator", "site_id": site["id"]})
    coordinator = login(*COORDINATOR)
    amqp = {"AMQP_URI": load_service_config("reporting")["AMQP_URI"]}
    with ClusterRpcProxy(amqp, timeout=15) as cluster:
        before = cluster.reporting.referral_counts(site["id"]).get("midwife", 0)
        started = time.monotonic()
        referral = call("POST", "/referrals", coordinator, json=demo_referral()).json()
        print(f"[alongside] POST /api/v1/referrals -> referral {referral['id']} "
              f"({referral['status']}) at site '{site['code']}'")
        while time.monotonic() - started < 15:
            counts = cluster.reporting.referral_counts(site["id"])
            if counts.get("midwife", 0) > before:
                elapsed = (time.monotonic() - started) * 1000
                print(f"[alongside] reporting archived and counted it {elapsed:.0f} ms "
                      f"later; referrals at '{site['code']}' by source: {counts}")
                return 0
            time.sleep(0.05)
    print("[alongside] reporting did not see the referral within 15 s: "
          "see .local/logs/", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
