"""The golden path of the design, end to end on a running system, over the
HTTP API only; then the quarter's report.

    make run            # first: everything running
    .venv/bin/python infra/local/demo.py [--parents N] [--out DIR]

1. The national admin (from .local/secrets.env) makes sure a `golden` site
   exists, licensed for WEMWBS and EPDS, with a coordinator.
2. The coordinator registers a volunteer (record, core course, enhanced DBS,
   supervision, stage active), gives them a matching profile and a login.
3. A midwife's system refers parents with an API key.
4. The coordinator triages each (accept), asks for suggestions and confirms
   the volunteer; journeys opens the journey.
5. The volunteer logs contacts, a goal is set and reviewed, WEMWBS and EPDS
   are recorded at baseline and exit, and the journey ends. For the first
   parent an EPDS review answers item 10 (self-harm) above 0: referrals
   raises a safeguarding concern at once and the coordinator acknowledges
   and resolves it.
6. Messaging's delivery log shows who was told (email lands in the mail
   catcher, .local/mail/); reporting shows the quarter (printed here; CSV,
   XLSX and the chart page saved under --out).

Every person is made up. Run it again and it adds to the same site.
"""
import argparse
import os
import sys
import time
import uuid
from datetime import date, datetime, timedelta, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import requests  # noqa: E402

from infra.local.localctl import local_secrets  # noqa: E402

API = os.environ.get("ALONGSIDE_API", "http://127.0.0.1:8000/api/v1")
SITE_CODE = "golden"
COORDINATOR = ("coordinator@golden.alongside.local", "golden coordinator password")
PASSWORD = "golden volunteer password"


class DemoFailed(SystemExit):
    pass


def say(text):
    print(f"[demo] {text}", flush=True)


def call(method, path, token=None, key=None, ok=(), **kwargs):
    headers = kwargs.pop("headers", {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if key:
        headers["X-API-Key"] = key
    answer = requests.request(method, API + path, headers=headers, timeout=20, **kwargs)
    if answer.status_code >= 400 and answer.status_code not in ok:
        raise DemoFailed(f"[demo] {method} {path}: {answer.status_code} {answer.text[:800]}")
    return answer


def wait_for(what, check, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise DemoFailed(f"[demo] gave up waiting for {what} after {timeout:.0f} s "
                             "(see .local/logs/)")
        time.sleep(0.2)


def login(email, password):
    return call("POST", "/auth/token", json={"email": email, "password": password}
                ).json()["access_token"]


def current_quarter(today):
    return f"{today.year}Q{(today.month - 1) // 3 + 1}"


# -- the answers on the forms: the position of the option chosen, 0 first ----

def wemwbs(raised):
    """14 items: 'rarely' (position 1, scoring 2) on each, ``raised`` of them
    one option higher (scoring 3): total 28 + raised."""
    return [2] * raised + [1] * (14 - raised)


def epds(level, self_harm=False):
    """Items 1-9 each scoring ``level`` (0-3): items 1, 2 and 4 score from the
    first option down, the others are reversed; item 10 (self-harm) answered
    with its last option, 'never' (scoring 0), or with 'hardly ever'
    (scoring 1) when ``self_harm``."""
    return [level if item in (1, 2, 4) else 3 - level for item in range(1, 10)] + [
        2 if self_harm else 3]


# Per parent: (WEMWBS items raised at baseline, at exit), (EPDS level at
# baseline, at exit). WEMWBS changes 8, 3, 6 points, EPDS falls 9 or 18.
CHANGES = (((0, 8), (2, 1)), ((1, 4), (2, 1)), ((0, 6), (2, 0)))


def setup_site(admin):
    sites = {s["code"]: s for s in call("GET", "/sites", admin).json()}
    site = sites.get(SITE_CODE) or call("POST", "/sites", admin, json={
        "name": "Golden path programme", "code": SITE_CODE, "catchment": ["CM1", "CM2"],
        "languages": ["en", "pl"]}).json()
    call("PATCH", f"/sites/{site['id']}", admin, json={
        "licensed_measures": ["wemwbs", "epds"], "triage_target_days": 5})
    call("POST", "/users", admin, ok=(409,), json={
        "email": COORDINATOR[0], "name": "Golden coordinator", "password": COORDINATOR[1],
        "role": "site_coordinator", "site_id": site["id"]})
    say(f"site '{SITE_CODE}' ({site['id']}) licensed for WEMWBS and EPDS, with a coordinator")
    return site


def setup_volunteer(coordinator, site, today, capacity):
    tag = uuid.uuid4().hex[:6]
    volunteer = call("POST", "/volunteers", coordinator, json={
        "name": f"Robin Volunteer {tag}", "email": f"robin.{tag}@golden.alongside.local",
        "phone": "07700 900456", "postcode": "CM1 3XY", "preferred_language": "en"}).json()
    vid = volunteer["id"]
    call("POST", f"/volunteers/{vid}/training-completions", coordinator, json={
        "kind": "core", "completed_on": str(today - timedelta(days=60))})
    call("POST", f"/volunteers/{vid}/dbs-checks", coordinator, json={
        "level": "enhanced", "issued_on": str(today - timedelta(days=40)),
        "update_service": True, "certificate_number": "001234567890"})
    call("POST", f"/volunteers/{vid}/supervisions", coordinator, json={
        "supervised_on": str(today - timedelta(days=7)), "supervisor_id": "golden-coordinator",
        "notes": "Ready to start."})
    for stage in ("in_training", "active"):
        call("POST", f"/volunteers/{vid}/stage", coordinator, json={"stage": stage})
    user = call("POST", "/users", coordinator, json={
        "email": f"robin.{tag}@golden.alongside.local", "name": f"Robin Volunteer {tag}",
        "password": PASSWORD, "role": "volunteer", "site_id": site["id"]}).json()
    call("PUT", f"/volunteers/{vid}/matching-profile", coordinator, json={
        "languages": ["en"], "districts": ["CM1", "CM2"], "lived_experience": ["isolation"],
        "support_modes": ["home_visit", "phone", "video"], "capacity": capacity,
        "birth_buddy": False, "available_days": ["mon", "wed"], "user_id": user["id"]})
    record = call("GET", f"/volunteers/{vid}", coordinator).json()
    say(f"volunteer {vid}: core course, enhanced DBS, supervision, stage active; "
        f"eligible: {record.get('eligibility', {}).get('eligible')}")
    return vid, login(user["email"], PASSWORD)


def refer(coordinator, midwife_key, today, n):
    form = {"source": "midwife", "referrer_name": "Sam Midwife",
            "referrer_contact": "sam.midwife@nhs.example", "name": f"Demo Parent {n}",
            "date_of_birth": "1995-04-12", "phone": "07700 900123",
            "email": f"parent{n}@example.test", "postcode": "CM1 2AB",
            "preferred_language": "en", "interpreter_needed": False,
            "due_date": str(today + timedelta(days=100)), "first_time_parent": True,
            "partner_included": False, "needs": ["isolation"],
            "preferred_support": ["home_visit"],
            "reason": "Feels alone since moving to the area.",
            "consent_to_contact": True, "consent_to_share": True,
            "consent_obtained_at": datetime.now(timezone.utc).isoformat(),
            "consent_obtained_how": "verbal"}
    referral = call("POST", "/referrals", key=midwife_key, json=form).json()
    rid = referral["id"]
    for action in ("start_triage", "accept"):
        current = call("GET", f"/referrals/{rid}", coordinator).json()
        call("POST", f"/referrals/{rid}/triage", coordinator,
             json={"action": action, "version": current["version"]})
    say(f"parent {n}: referred by the midwife's API key ({rid}), triaged, accepted")
    return rid


def match(coordinator, rid, vid):
    def suggested():
        answer = call("GET", f"/referrals/{rid}/match-suggestions", coordinator,
                      ok=(404, 409)).json()
        ranked = answer.get("suggestions") if isinstance(answer, dict) else None
        return [s for s in ranked or [] if s.get("volunteer_id") == vid]
    [suggestion] = wait_for("the volunteer to be suggested", suggested)
    rules = ", ".join(f"{k} {v}" for k, v in (suggestion.get("hard_rules") or {}).items())
    say(f"  suggested: score {suggestion.get('score')}; hard rules: {rules}")
    matched = call("POST", "/matches", coordinator,
                   json={"referral_id": rid, "volunteer_id": vid}).json()
    journeys = wait_for("journeys to open the journey", lambda: call(
        "GET", "/journeys", coordinator, params={"referral_id": rid}).json())
    say(f"  match {matched['id']} confirmed; journey {journeys[0]['id']} open")
    return journeys[0]["id"]


def support(volunteer, coordinator, journey_id, today, n):
    # Everything happens today: a journey opened today takes nothing dated
    # before it.
    for mode, minutes in (("home_visit", 60), ("phone", 20), ("group", 90),
                          ("video", 30)):
        call("POST", f"/journeys/{journey_id}/contacts", volunteer, json={
            "date": str(today), "mode": mode,
            "duration_minutes": minutes, "notes": "Went well; talked about the birth plan."})
    goal = call("POST", f"/journeys/{journey_id}/goals", volunteer, json={
        "words": "Get out of the house with the baby twice a week",
        "category": "social", "set_on": str(today)}).json()
    call("POST", f"/journeys/{journey_id}/goals/{goal['id']}/reviews", volunteer, json={
        "status": "achieved", "reviewed_on": str(today)})
    (wemwbs_before, wemwbs_after), (epds_before, epds_after) = CHANGES[(n - 1) % len(CHANGES)]
    for time_point, raised, level, when in (
            ("baseline", wemwbs_before, epds_before, today),
            ("exit", wemwbs_after, epds_after, today)):
        for instrument, answers in (("wemwbs", wemwbs(raised)), ("epds", epds(level))):
            call("POST", f"/journeys/{journey_id}/outcome-measures", volunteer, json={
                "instrument": instrument, "time_point": time_point,
                "recorded_on": str(when), "answers": answers})
    if n == 1:
        safeguarding_from_epds(volunteer, coordinator, journey_id, today)
    call("POST", f"/journeys/{journey_id}/end", coordinator, json={"reason": "completed"})
    say("  4 contacts, a goal set and achieved, WEMWBS and EPDS at baseline and exit; "
        "journey ended")


def safeguarding_from_epds(volunteer, coordinator, journey_id, today):
    """An EPDS review with item 10 above 0: the concern is raised by the
    service, not by the caller; the coordinator acknowledges and resolves it."""
    journey = call("GET", f"/journeys/{journey_id}", coordinator).json()
    call("POST", f"/journeys/{journey_id}/outcome-measures", volunteer, json={
        "instrument": "epds", "time_point": "review", "recorded_on": str(today),
        "answers": epds(1, self_harm=True)})
    [concern] = wait_for("the EPDS item 10 answer to raise a safeguarding concern",
                         lambda: call("GET", "/safeguarding-concerns", coordinator, params={
                             "referral_id": journey["referral_id"]}).json()["items"])
    say(f"  EPDS review, item 10 above 0: safeguarding concern {concern['id']} "
        f"({concern['severity']}) raised at once")
    call("POST", f"/safeguarding-concerns/{concern['id']}/acknowledge", coordinator,
         json={"notes": "Called the parent the same hour; GP informed."})
    call("POST", f"/safeguarding-concerns/{concern['id']}/resolve", coordinator,
         json={"notes": "Perinatal mental health team involved; plan agreed."})
    say("  the coordinator acknowledged and resolved it")


def print_messages(coordinator):
    """Messaging's delivery log: kinds, channels, recipients and statuses
    (never the content or the address)."""
    log = wait_for("messaging to deliver", lambda: [
        m for m in call("GET", "/messages", coordinator, params={"limit": 200}).json()
        if m["status"] in ("sent", "failed", "skipped")])
    tally = {}
    for message in log:
        key = (message["kind"], message["recipient_kind"], message["channel"],
               message["status"])
        tally[key] = tally.get(key, 0) + 1
    say("messages (delivery log):")
    for (kind, recipient, channel, status), count in sorted(tally.items(), key=str):
        print(f"    {kind:<22} to {recipient:<12} by {channel or '-':<6} {status:<8} x{count}")
    return log


def counts_of(report):
    """What this run adds to: goals achieved, journeys ended, contacts."""
    return (report["goals"]["achieved"], report["weeks_of_support"]["n"],
            report["contacts"]["total"])


def print_report(report):
    r, c, v = report["referrals"], report["contacts"], report["volunteers"]
    say(f"quarter {report['quarter']} ({report['period']['start']} to "
        f"{report['period']['end']}) at site {report['site_id']}:")
    sources = ", ".join(f"{k} {n}" for k, n in r["by_source"].items() if n)
    print(f"  referrals received {r['received']} ({sources or 'none'}); accepted "
          f"{r['accepted']}, declined {r['declined']}, signposted {r['signposted']}")
    t = report["time_to_first_contact_days"]
    print(f"  time to first contact: median {t['median']} days, mean {t['mean']} (n {t['n']})")
    modes = ", ".join(f"{k} {n}" for k, n in c["by_mode"].items() if n)
    print(f"  families matched {report['families_matched']}; contacts {c['total']} "
          f"({modes}); per family {c['per_family']['mean']}")
    w = report["weeks_of_support"]
    print(f"  weeks of support (ended journeys): mean {w['mean']} (n {w['n']})")
    print(f"  volunteers: pool {v['pool_at_quarter_end']}, eligible "
          f"{v['eligible_at_quarter_end']}, active {v['active_in_quarter']}, hours "
          f"{v['hours']}, retention {v['retention']['rate']}")
    print(f"  goals set {report['goals']['set']}, achieved {report['goals']['achieved']}")
    for o in report["outcomes"]:
        if not o["n_pairs"]:
            continue
        print(f"  {o['instrument']} {o['score']}: {o['n_pairs']} pairs, "
              f"{o['baseline_mean']} -> {o['exit_mean']} (change {o['mean_change']}, "
              f"95% CI {o['ci95']}), {o['test']}: p = {o['p_value']}; "
              f"{o['effect_size']['name']}: {o['effect_size']['value']}; improved by more "
              f"than {o['meaningful_change']:g}: {o['improved']} of {o['n_pairs']}")


def main(argv=None, admin_credentials=None):
    """``admin_credentials`` (email, password): by default this machine's,
    from .local/secrets.env."""
    global API
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parents", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(ROOT, ".local", "reports"))
    parser.add_argument("--api", default=API, help="the gateway's /api/v1 (ALONGSIDE_API)")
    args = parser.parse_args(argv)
    API = args.api.rstrip("/")
    today = date.today()
    if admin_credentials is None:
        secrets = local_secrets()
        admin_credentials = (secrets["ALONGSIDE_ADMIN_EMAIL"],
                             secrets["ALONGSIDE_ADMIN_PASSWORD"])
    admin = login(*admin_credentials)
    site = setup_site(admin)
    coordinator = login(*COORDINATOR)
    midwife_key = call("POST", "/api-keys", coordinator, json={
        "name": "Golden maternity unit", "role": "referrer"}).json()["key"]
    quarter = current_quarter(today)
    before = counts_of(call("GET", "/reports/quarterly", coordinator,
                            params={"quarter": quarter}).json())
    vid, volunteer = setup_volunteer(coordinator, site, today, max(args.parents, 1))
    for n in range(1, args.parents + 1):
        rid = refer(coordinator, midwife_key, today, n)
        journey_id = match(coordinator, rid, vid)
        support(volunteer, coordinator, journey_id, today, n)

    expected = None

    def report_caught_up():
        nonlocal expected
        report = call("GET", "/reports/quarterly", coordinator,
                      params={"quarter": quarter}).json()
        wanted = (before[0] + args.parents, before[1] + args.parents,
                  before[2] + 4 * args.parents)
        if all(have >= want for have, want in zip(counts_of(report), wanted)):
            expected = report
            return True
        return False
    wait_for("reporting to see the support", report_caught_up)
    print_messages(coordinator)
    print_report(expected)
    os.makedirs(args.out, exist_ok=True)
    for fmt in ("csv", "xlsx", "html"):
        answer = call("GET", "/reports/quarterly", coordinator,
                      params={"quarter": quarter, "format": fmt})
        path = os.path.join(args.out, f"{SITE_CODE}-{quarter}.{fmt}")
        with open(path, "wb") as handle:
            handle.write(answer.content)
        say(f"saved {path} ({answer.headers.get('Content-Type')}, {len(answer.content)} bytes)")
    national = call("GET", "/reports/national", admin, params={"quarter": quarter}).json()
    sites = national["tables"]["referrals_by_source"]
    say(f"national view {quarter}: {len(national['sites'])} sites, referrals "
        f"{sites['grand_total'] if sites['grand_total'] is not None else '<5 (suppressed)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
