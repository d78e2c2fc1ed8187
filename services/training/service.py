"""The training service: entrypoints only."""
import logging
import random
import uuid
from datetime import date

import eventlet
from nameko.dependency_providers import Config
from nameko.rpc import rpc
from nameko.timer import Timer

from services.training import domain, store
from shared.crypto import Encryption
from services.training.schemas import (AttendanceSchema, CohortSchema,
                                       EnrolmentSchema, NewCohortSchema,
                                       TrainingCompletionSchema, CourseSchema,
                                       DailyCheckResultSchema, DailyCheckSchema,
                                       DbsCheckSchema, NewCourseSchema,
                                       NewVolunteerSchema, TrainingPolicyOutSchema,
                                       TrainingPolicySchema, RoleChangeSchema,
                                       StageChangeSchema, SupervisionSchema,
                                       VolunteerContactSchema,
                                       VolunteerQuerySchema, VolunteerSchema,
                                       VolunteerSummarySchema)
from shared.errors import DOMAIN_ERRORS, Conflict, NotFound, ValidationFailed
from shared.events.envelope import utcnow
from shared.observability import log_fields
from shared.outbox import Outbox
from shared.service_base import ServiceBase
from shared.storage import Database
from shared.validation import load_or_fail

log = logging.getLogger(__name__)

PERSONAL = ("name", "email", "phone", "postcode")
SAVE_ATTEMPTS = 10
NOT_LEFT = tuple(s for s in domain.VOLUNTEER_STAGES if s != domain.LEFT)


class DailyTimer(Timer):
    """A timer whose interval is ``TRAINING.DAILY_CHECK_INTERVAL_SECONDS``."""

    def __init__(self, **kwargs):
        super().__init__(interval=None, **kwargs)

    def setup(self):
        settings = self.container.config.get("TRAINING", {}) or {}
        self.interval = float(settings.get("DAILY_CHECK_INTERVAL_SECONDS", 86400))


daily_timer = DailyTimer.decorator


def _back_off(attempt):
    """A random, growing pause before writing a record again (full jitter):
    writers that collided do not collide again in lockstep."""
    eventlet.sleep(random.uniform(0, min(0.005 * 2 ** attempt, 0.25)))


def _course_view(course):
    """A course with its module ids (courses from before ids: by order)."""
    modules = [dict(module, id=module_id) for module, module_id in
               zip(course["modules"], domain.module_ids(course))]
    return CourseSchema().dump(dict(course, modules=modules))


def _today(value=None):
    return date.fromisoformat(value) if value else utcnow().date()


class TrainingService(ServiceBase):
    name = "training"

    db = Database(prepare=store.ensure_indexes)
    outbox = Outbox(store.VOLUNTEERS)
    cipher = Encryption()
    config = Config()

    # -- volunteers ---------------------------------------------------------------

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def register_volunteer(self, site_id, payload, actor_id=None):
        form = load_or_fail(NewVolunteerSchema(), payload)
        volunteer_id, now = str(uuid.uuid4()), utcnow()
        personal = self.cipher.encrypt_fields(
            site_id, {f: form[f] for f in PERSONAL}, prefix=f"volunteer:{volunteer_id}:")
        record, events = domain.register_volunteer(site_id, volunteer_id, form,
                                                   personal, now)
        store.Volunteers(self.db, site_id).add(record, events)
        log.info("volunteer registered", extra=log_fields(
            volunteer_id=volunteer_id, site_id=site_id))
        return self._view(site_id, record)

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def get_volunteer(self, site_id, volunteer_id):
        return self._view(site_id, self._load(site_id, volunteer_id))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def contact_details(self, site_id, volunteer_id):
        """How to reach a volunteer, for messaging (personal data crosses RPC,
        never events): another site's volunteer is not found."""
        record = self._load(site_id, volunteer_id)
        personal = self.cipher.decrypt_fields(
            site_id, {f: record["personal"].get(f) for f in ("name", "email", "phone")},
            prefix=f"volunteer:{volunteer_id}:")
        return VolunteerContactSchema().dump(dict(
            personal, preferred_language=record.get("preferred_language") or "en"))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def list_volunteers(self, site_id, query=None):
        query = load_or_fail(VolunteerQuerySchema(), query or {})
        policy, today = self._policy(site_id), _today()
        rows = []
        for record in store.Volunteers(self.db, site_id).listing(query["stage"]):
            result = domain.evaluate(record, policy, today)
            if query["eligible"] is not None and result["eligible"] != query["eligible"]:
                continue
            name = self.cipher.decrypt(site_id, f"volunteer:{record['_id']}:name",
                                       record["personal"]["name"])
            rows.append(dict(record, name=name, eligible=result["eligible"],
                             reasons=result["reasons"]))
            if len(rows) >= query["limit"]:
                break
        return VolunteerSummarySchema(many=True).dump(rows)

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def change_stage(self, site_id, volunteer_id, payload, actor_id=None):
        form = load_or_fail(StageChangeSchema(), payload)
        return self._change(site_id, volunteer_id, lambda record, today, now:
                            domain.change_stage(record, form["stage"], actor_id, now))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def change_role(self, site_id, volunteer_id, payload, actor_id=None):
        form = load_or_fail(RoleChangeSchema(), payload)
        return self._change(site_id, volunteer_id, lambda record, today, now:
                            domain.change_role(record, form["role"], actor_id, now))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def record_completion(self, site_id, volunteer_id, payload):
        form = load_or_fail(TrainingCompletionSchema(), payload)
        course = (store.Courses(self.db, site_id).get(form["course_id"])
                  if form["course_id"] else None)
        completion_id = str(uuid.uuid4())
        return self._change(site_id, volunteer_id, lambda record, today, now:
                            domain.record_completion(record, completion_id, form,
                                                     course, today, now))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def record_dbs_check(self, site_id, volunteer_id, payload):
        form = load_or_fail(DbsCheckSchema(), payload)
        check_id = str(uuid.uuid4())
        number = self.cipher.encrypt(site_id, f"dbs_check:{check_id}:certificate_number",
                                     form["certificate_number"])
        return self._change(site_id, volunteer_id, lambda record, today, now:
                            domain.record_dbs_check(record, check_id, form, number,
                                                    today, now))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def record_supervision(self, site_id, volunteer_id, payload):
        form = load_or_fail(SupervisionSchema(), payload)
        supervision_id = str(uuid.uuid4())
        notes = self.cipher.encrypt(site_id, f"supervision:{supervision_id}:notes",
                                    form["notes"])
        return self._change(site_id, volunteer_id, lambda record, today, now:
                            domain.record_supervision(record, supervision_id, form,
                                                      notes, today, now))

    # -- courses and policy ----------------------------------------------------------

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def create_course(self, site_id, payload):
        form = load_or_fail(NewCourseSchema(), payload)
        course = store.Courses(self.db, site_id).add(
            domain.new_course(site_id, str(uuid.uuid4()), form, utcnow()))
        return _course_view(course)

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def list_courses(self, site_id):
        return [_course_view(c) for c in store.Courses(self.db, site_id).listing()]

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def get_course(self, site_id, course_id):
        return _course_view(self._course(site_id, course_id))

    # -- cohorts and attendance ------------------------------------------------------

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def create_cohort(self, site_id, course_id, payload):
        form = load_or_fail(NewCohortSchema(), payload)
        course = self._course(site_id, course_id)
        trainer = store.Volunteers(self.db, site_id).get(form["trainer_id"])
        cohort = domain.new_cohort(course, str(uuid.uuid4()), form, trainer, utcnow())
        store.Cohorts(self.db, site_id).add(cohort)
        return self._cohort_view(site_id, cohort, course)

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def list_cohorts(self, site_id, course_id):
        course = self._course(site_id, course_id)
        return [self._cohort_view(site_id, c, course)
                for c in store.Cohorts(self.db, site_id).of_course(course_id)]

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def get_cohort(self, site_id, cohort_id):
        cohort = self._cohort(site_id, cohort_id)
        return self._cohort_view(site_id, cohort)

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def enrol(self, site_id, cohort_id, payload):
        form = load_or_fail(EnrolmentSchema(), payload)
        volunteer = store.Volunteers(self.db, site_id).get(form["volunteer_id"])
        if volunteer is None:
            raise ValidationFailed("No such volunteer.", {
                "volunteer_id": [f"no volunteer {form['volunteer_id']} at this site"]})
        saved = self._save_cohort(site_id, cohort_id, lambda cohort, course, now: (
            domain.enrol(cohort, volunteer, now), []))
        return self._cohort_view(site_id, saved)

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def record_attendance(self, site_id, cohort_id, payload):
        """One session of one module and who was present; whoever has now
        attended every module has completed the course (recorded on their
        record, with its events and eligibility, once per cohort)."""
        form = load_or_fail(AttendanceSchema(), payload)
        session_id = str(uuid.uuid4())
        saved = self._save_cohort(site_id, cohort_id, lambda cohort, course, now:
                                  domain.record_session(cohort, course, session_id, form,
                                                        now.date(), now))
        self._complete(site_id, saved)
        return self._cohort_view(site_id, self._cohort(site_id, cohort_id))

    def _complete(self, site_id, cohort):
        """Record the completions a cohort's attendance earned. Safe to run
        again: a completion already recorded for the cohort is not doubled,
        so a failure half-way is mended by the next session recorded."""
        course = self._course(site_id, cohort["course_id"])
        cohorts = store.Cohorts(self.db, site_id)
        for volunteer_id, completed_on in domain.completions_due(cohort, course):
            completion_id = str(uuid.uuid4())
            try:
                self._change(site_id, volunteer_id, lambda record, today, now:
                             domain.complete_from_cohort(
                                 record, completion_id, course, cohort["_id"],
                                 completed_on, today, now))
            except (Conflict, NotFound) as error:   # left, or gone, meanwhile
                log.warning("cohort completion not recorded", extra=log_fields(
                    volunteer_id=volunteer_id, cohort_id=cohort["_id"], error=str(error)))
                continue
            cohorts.mark_completed(cohort["_id"], volunteer_id, completed_on)
            log.info("course completed by attendance", extra=log_fields(
                volunteer_id=volunteer_id, cohort_id=cohort["_id"], site_id=site_id))

    def _save_cohort(self, site_id, cohort_id, change):
        """Apply ``change(cohort, course, now) -> (cohort, extra)`` and write it
        if nobody wrote the cohort meanwhile (else read it again and retry)."""
        cohorts = store.Cohorts(self.db, site_id)
        for attempt in range(SAVE_ATTEMPTS):
            if attempt:
                _back_off(attempt)
            cohort = self._cohort(site_id, cohort_id)
            course = self._course(site_id, cohort["course_id"])
            changed, _ = change(cohort, course, utcnow())
            saved = cohorts.save(changed)
            if saved is not None:
                return saved
        raise Conflict("The cohort kept changing meanwhile: try again.")

    def _course(self, site_id, course_id):
        course = store.Courses(self.db, site_id).get(course_id)
        if course is None:
            raise NotFound(f"No course {course_id}.")
        return course

    def _cohort(self, site_id, cohort_id):
        cohort = store.Cohorts(self.db, site_id).get(cohort_id)
        if cohort is None:
            raise NotFound(f"No cohort {cohort_id}.")
        return cohort

    def _cohort_view(self, site_id, cohort, course=None):
        course = course or self._course(site_id, cohort["course_id"])
        return CohortSchema().dump(domain.cohort_view(cohort, course))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def get_policy(self, site_id):
        return self._policy_view(site_id)

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def set_policy(self, site_id, payload):
        """Replace the site's policy, then re-evaluate its volunteers at once:
        a shorter period can end someone's eligibility today."""
        form = load_or_fail(TrainingPolicySchema(), payload)
        store.Policies(self.db, site_id).put(form, utcnow())
        self._check_site(site_id, _today())
        return self._policy_view(site_id)

    # -- time passing ------------------------------------------------------------------

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def run_daily_check(self, today=None):
        """Re-evaluate every volunteer of every site for ``today`` (ISO date;
        the current UTC date if None): eligibility flips and DBS renewal
        notices. Running it twice the same day changes nothing."""
        day = load_or_fail(DailyCheckSchema(), {"today": today})["today"] or _today()
        totals = {"today": day.isoformat(), "sites": 0, "evaluated": 0,
                  "eligibility_changes": 0, "expiring_notices": 0}
        for site_id in store.sites_with_volunteers(self.db):
            counts = self._check_site(site_id, day)
            totals["sites"] += 1
            for name in ("evaluated", "eligibility_changes", "expiring_notices"):
                totals[name] += counts[name]
        log.info("daily training check done", extra=log_fields(**totals))
        return DailyCheckResultSchema().dump(totals)

    @daily_timer()
    def daily_check(self):
        self.run_daily_check()

    # -- helpers (not entrypoints) ---------------------------------------------------------

    def _policy(self, site_id):
        defaults = self.config["TRAINING"]["POLICY_DEFAULTS"]
        return domain.effective_policy(defaults, store.Policies(self.db, site_id).get())

    def _policy_view(self, site_id):
        override = store.Policies(self.db, site_id).get()
        policy = domain.effective_policy(self.config["TRAINING"]["POLICY_DEFAULTS"],
                                         override)
        return TrainingPolicyOutSchema().dump(dict(policy, site_id=site_id,
                                           overridden=override is not None))

    def _load(self, site_id, volunteer_id):
        record = store.Volunteers(self.db, site_id).get(volunteer_id)
        if record is None:
            raise NotFound(f"No volunteer {volunteer_id}.")
        return record

    def _change(self, site_id, volunteer_id, change):
        """Apply ``change(record, today, now) -> (record, events)``, then
        reconcile eligibility, and write it all at once if nobody wrote the
        record meanwhile (else read it again and retry)."""
        volunteers = store.Volunteers(self.db, site_id)
        for attempt in range(SAVE_ATTEMPTS):
            if attempt:
                _back_off(attempt)
            record = self._load(site_id, volunteer_id)
            policy, now = self._policy(site_id), utcnow()
            changed, events = change(record, now.date(), now)
            changed, more, _ = domain.reconcile(changed, policy, now.date(), now)
            saved = volunteers.save(changed, events + more)
            if saved is not None:
                return self._view(site_id, saved, policy, now.date())
        raise Conflict("The volunteer's record kept changing meanwhile: try again.")

    def _check_site(self, site_id, today):
        counts = {"evaluated": 0, "eligibility_changes": 0, "expiring_notices": 0}
        volunteers = store.Volunteers(self.db, site_id)
        policy = self._policy(site_id)
        for record in volunteers.current(NOT_LEFT):
            counts["evaluated"] += 1
            for attempt in range(SAVE_ATTEMPTS):
                changed, events, dirty = domain.reconcile(record, policy, today, utcnow())
                if not dirty or volunteers.save(changed, events) is not None:
                    break
                _back_off(attempt + 1)
                record = volunteers.get(record["_id"])   # changed meanwhile
                if record is None:
                    dirty = False
                    break
            else:
                log.warning("volunteer kept changing during the daily check",
                            extra=log_fields(volunteer_id=record["_id"]))
                continue
            for event in events if dirty else []:
                key = ("eligibility_changes" if event["type"] ==
                       "volunteer.eligibility_changed" else "expiring_notices")
                counts[key] += 1
        return counts

    def _view(self, site_id, record, policy=None, today=None):
        """The full record for the site's coordinator, decrypted, with its
        eligibility evaluated for today and the reasons."""
        policy = policy or self._policy(site_id)
        today = today or _today()
        open_ = self.cipher.decrypt
        view = dict(record, **self.cipher.decrypt_fields(
            site_id, record["personal"], prefix=f"volunteer:{record['_id']}:"))
        view["dbs_checks"] = [dict(c, certificate_number=open_(
            site_id, f"dbs_check:{c['id']}:certificate_number", c["certificate_number"]))
            for c in record["dbs_checks"]]
        view["supervisions"] = [dict(s, notes=open_(
            site_id, f"supervision:{s['id']}:notes", s["notes"]))
            for s in record["supervisions"]]
        view["eligibility"] = dict(domain.evaluate(record, policy, today),
                                   evaluated_on=today.isoformat())
        return VolunteerSchema().dump(view)
