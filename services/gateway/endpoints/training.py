"""Volunteers' training records and eligibility, forwarded to `training`.

Volunteers' records hold personal data: only a coordinator of their site
reaches them (a national admin has no site, so is refused), another site's
volunteer is 'not found', and every read or change is audited. A site's
training policy may be set by its coordinator or by a national admin.
"""
from services.gateway import domain, store
from services.gateway.api import endpoint
from services.training.schemas import (AttendanceSchema, CohortSchema,
                                       EnrolmentSchema, NewCohortSchema,
                                       TrainingCompletionSchema, CourseSchema,
                                       DbsCheckSchema, NewCourseSchema,
                                       NewVolunteerSchema, TrainingPolicyOutSchema,
                                       TrainingPolicySchema, RoleChangeSchema,
                                       StageChangeSchema, SupervisionSchema,
                                       VolunteerQuerySchema, VolunteerSchema,
                                       VolunteerSummarySchema)
from shared.errors import NotFound

PERMISSION = "training:manage"


class TrainingEndpoints:
    # -- volunteers --------------------------------------------------------------

    @endpoint("POST", "/api/v1/volunteers", summary="Register a volunteer (an applicant)",
              status=201, permission=PERMISSION, body=NewVolunteerSchema,
              response=VolunteerSchema, forwarded=True,
              audit=("volunteer.create", "volunteer"))
    def register_volunteer(self, call):
        return self.training.register_volunteer(
            domain.site_scope(call.principal), NewVolunteerSchema().dump(call.body),
            call.principal.id)

    @endpoint("GET", "/api/v1/volunteers", summary="The site's volunteers, with eligibility",
              permission=PERMISSION, query=VolunteerQuerySchema,
              response=VolunteerSummarySchema, many=True, forwarded=True,
              audit=("volunteer.list", "volunteer"))
    def list_volunteers(self, call):
        query = VolunteerQuerySchema().dump(call.query)
        return self.training.list_volunteers(domain.site_scope(call.principal), query)

    @endpoint("GET", "/api/v1/volunteers/<id>",
              summary="A volunteer's record, eligibility and why",
              permission=PERMISSION, response=VolunteerSchema, forwarded=True,
              audit=("volunteer.read", "volunteer"), errors=(404,))
    def get_volunteer(self, call, id):
        return self.training.get_volunteer(domain.site_scope(call.principal), id)

    @endpoint("POST", "/api/v1/volunteers/<id>/stage",
              summary="Move a volunteer along the pathway (illegal moves: 409)",
              permission=PERMISSION, body=StageChangeSchema, response=VolunteerSchema,
              forwarded=True, audit=("volunteer.stage_change", "volunteer"),
              errors=(404, 409))
    def change_volunteer_stage(self, call, id):
        return self.training.change_stage(
            domain.site_scope(call.principal), id,
            StageChangeSchema().dump(call.body), call.principal.id)

    @endpoint("POST", "/api/v1/volunteers/<id>/role", summary="Change a volunteer's role",
              permission=PERMISSION, body=RoleChangeSchema, response=VolunteerSchema,
              forwarded=True, audit=("volunteer.role_change", "volunteer"),
              errors=(404, 409))
    def change_volunteer_role(self, call, id):
        return self.training.change_role(
            domain.site_scope(call.principal), id,
            RoleChangeSchema().dump(call.body), call.principal.id)

    @endpoint("POST", "/api/v1/volunteers/<id>/training-completions",
              summary="Record a completed course", status=201, permission=PERMISSION,
              body=TrainingCompletionSchema, response=VolunteerSchema, forwarded=True,
              audit=("volunteer.training_completion", "volunteer"), errors=(404, 409))
    def record_training_completion(self, call, id):
        return self.training.record_completion(
            domain.site_scope(call.principal), id, TrainingCompletionSchema().dump(call.body))

    @endpoint("POST", "/api/v1/volunteers/<id>/dbs-checks", summary="Record a DBS check",
              status=201, permission=PERMISSION, body=DbsCheckSchema,
              response=VolunteerSchema, forwarded=True,
              audit=("volunteer.dbs_check", "volunteer"), errors=(404, 409))
    def record_dbs_check(self, call, id):
        return self.training.record_dbs_check(
            domain.site_scope(call.principal), id, DbsCheckSchema().dump(call.body))

    @endpoint("POST", "/api/v1/volunteers/<id>/supervisions",
              summary="Record a supervision session", status=201, permission=PERMISSION,
              body=SupervisionSchema, response=VolunteerSchema, forwarded=True,
              audit=("volunteer.supervision", "volunteer"), errors=(404, 409))
    def record_supervision(self, call, id):
        return self.training.record_supervision(
            domain.site_scope(call.principal), id, SupervisionSchema().dump(call.body))

    # -- courses -------------------------------------------------------------------

    @endpoint("POST", "/api/v1/courses", summary="Create a course with its modules",
              status=201, permission=PERMISSION, body=NewCourseSchema,
              response=CourseSchema, forwarded=True)
    def create_course(self, call):
        return self.training.create_course(domain.site_scope(call.principal),
                                           NewCourseSchema().dump(call.body))

    @endpoint("GET", "/api/v1/courses", summary="The site's courses",
              permission=PERMISSION, response=CourseSchema, many=True, forwarded=True)
    def list_courses(self, call):
        return self.training.list_courses(domain.site_scope(call.principal))

    @endpoint("GET", "/api/v1/courses/<id>", summary="A course and its modules",
              permission=PERMISSION, response=CourseSchema, forwarded=True, errors=(404,))
    def get_course(self, call, id):
        return self.training.get_course(domain.site_scope(call.principal), id)

    # -- cohorts and attendance ----------------------------------------------------

    @endpoint("POST", "/api/v1/courses/<id>/cohorts",
              summary="Start a cohort of a course: start date, trainer (a volunteer "
                      "whose role is trainer or coordinator), places",
              status=201, permission=PERMISSION, body=NewCohortSchema,
              response=CohortSchema, forwarded=True, audit=("cohort.create", "course"),
              errors=(404,))
    def create_cohort(self, call, id):
        return self.training.create_cohort(domain.site_scope(call.principal), id,
                                           NewCohortSchema().dump(call.body))

    @endpoint("GET", "/api/v1/courses/<id>/cohorts", summary="A course's cohorts",
              permission=PERMISSION, response=CohortSchema, many=True, forwarded=True,
              errors=(404,))
    def list_cohorts(self, call, id):
        return self.training.list_cohorts(domain.site_scope(call.principal), id)

    @endpoint("GET", "/api/v1/cohorts/<id>",
              summary="A cohort: who is enrolled, its sessions, each volunteer's progress",
              permission=PERMISSION, response=CohortSchema, forwarded=True, errors=(404,))
    def get_cohort(self, call, id):
        return self.training.get_cohort(domain.site_scope(call.principal), id)

    @endpoint("POST", "/api/v1/cohorts/<id>/enrolments",
              summary="Enrol a volunteer in a cohort (409 when full or enrolled already)",
              status=201, permission=PERMISSION, body=EnrolmentSchema,
              response=CohortSchema, forwarded=True, audit=("cohort.enrol", "cohort"),
              errors=(404, 409))
    def enrol(self, call, id):
        return self.training.enrol(domain.site_scope(call.principal), id,
                                   EnrolmentSchema().dump(call.body))

    @endpoint("POST", "/api/v1/cohorts/<id>/attendance",
              summary="Record a session of one module and who was present; attending "
                      "every module completes the course",
              status=201, permission=PERMISSION, body=AttendanceSchema,
              response=CohortSchema, forwarded=True, audit=("cohort.attendance", "cohort"),
              errors=(404, 409))
    def record_attendance(self, call, id):
        return self.training.record_attendance(domain.site_scope(call.principal), id,
                                               AttendanceSchema().dump(call.body))

    # -- a site's training policy ----------------------------------------------------

    @endpoint("GET", "/api/v1/sites/<id>/training-policy",
              summary="A site's training policy (its defaults unless overridden)",
              permission=PERMISSION, response=TrainingPolicyOutSchema, forwarded=True,
              errors=(404,))
    def get_training_policy(self, call, id):
        return self.training.get_policy(self._training_site(call, id))

    @endpoint("PUT", "/api/v1/sites/<id>/training-policy",
              summary="Set a site's training policy (periods and notice)",
              permission=PERMISSION, body=TrainingPolicySchema, response=TrainingPolicyOutSchema,
              forwarded=True, audit=("training_policy.update", "site"), errors=(404,))
    def set_training_policy(self, call, id):
        return self.training.set_policy(self._training_site(call, id),
                                        TrainingPolicySchema().dump(call.body))

    def _training_site(self, call, site_id):
        site_id = domain.visible_site(call.principal, site_id)
        if store.Sites(self.db).get(site_id) is None:
            raise NotFound(f"No site {site_id}.")
        return site_id
