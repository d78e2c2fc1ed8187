"""Payloads of the training service's RPC entrypoints (and the gateway's
HTTP bodies for them)."""
from marshmallow import (Schema, ValidationError, fields, post_load,
                         validate, validates, validates_schema)

from shared.events.catalogue import LANGUAGE_TAG
from services.training.domain import (COURSE_KINDS, DBS_LEVELS, VOLUNTEER_ROLES,
                                      VOLUNTEER_STAGES, normalise_postcode)
from shared.validation import Strict

PHONE = r"^\+?[0-9][0-9 ()-]{6,19}$"
DBS_CERTIFICATE = r"^[0-9]{12}$"


class NewVolunteerSchema(Strict):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    email = fields.Email(required=True)
    phone = fields.String(load_default=None, allow_none=True, validate=validate.Regexp(
        PHONE, error="Must be a phone number, such as '07700 900123'."))
    postcode = fields.String(required=True)
    role = fields.String(load_default="volunteer",
                         validate=validate.OneOf(VOLUNTEER_ROLES))
    preferred_language = fields.String(
        load_default="en", validate=validate.Regexp(
            LANGUAGE_TAG, error="Must be a language tag such as 'en' or 'pl'."),
        metadata={"description": "the language messages to them are written in"})

    @validates("postcode")
    def _postcode_is_uk(self, value, **kwargs):
        if normalise_postcode(value) is None:
            raise ValidationError("Must be a UK postcode, such as 'CM1 2AB'.")

    @post_load
    def _normalise(self, data, **kwargs):
        data["postcode"] = normalise_postcode(data["postcode"])
        data["email"] = data["email"].strip()
        return data


class StageChangeSchema(Strict):
    stage = fields.String(required=True, validate=validate.OneOf(VOLUNTEER_STAGES))


class RoleChangeSchema(Strict):
    role = fields.String(required=True, validate=validate.OneOf(VOLUNTEER_ROLES))


class CourseModuleSchema(Strict):
    id = fields.String(dump_only=True, metadata={"description": "m1, m2, ... in order"})
    title = fields.String(required=True, validate=validate.Length(min=1, max=200))
    hours = fields.Float(load_default=None, allow_none=True,
                         validate=validate.Range(min=0, max=200, min_inclusive=False))


class NewCourseSchema(Strict):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    kind = fields.String(required=True, validate=validate.OneOf(COURSE_KINDS))
    modules = fields.List(fields.Nested(CourseModuleSchema), required=True,
                          validate=validate.Length(min=1, max=100))


class NewCohortSchema(Strict):
    name = fields.String(load_default=None, allow_none=True,
                         validate=validate.Length(min=1, max=200))
    start_date = fields.Date(required=True)
    trainer_id = fields.String(required=True, validate=validate.Length(min=1, max=100),
                               metadata={"description": "a volunteer of the site whose "
                                         "role is trainer or coordinator"})
    places = fields.Integer(required=True, validate=validate.Range(min=1, max=200))


class EnrolmentSchema(Strict):
    volunteer_id = fields.String(required=True, validate=validate.Length(min=1, max=100))


class AttendanceSchema(Strict):
    module_id = fields.String(required=True, validate=validate.Length(min=1, max=20))
    session_date = fields.Date(required=True)
    present = fields.List(fields.String(validate=validate.Length(min=1, max=100)),
                          required=True, validate=validate.Length(max=200),
                          metadata={"description": "the enrolled volunteers present "
                                    "(an empty list: nobody came)"})


class TrainingCompletionSchema(Strict):
    course_id = fields.String(load_default=None, allow_none=True,
                              validate=validate.Length(min=1, max=100))
    kind = fields.String(load_default=None, allow_none=True,
                         validate=validate.OneOf(COURSE_KINDS))
    completed_on = fields.Date(required=True)

    @validates_schema
    def _course_or_kind(self, data, **kwargs):
        if not data.get("course_id") and not data.get("kind"):
            raise ValidationError("Name the course (course_id) or its kind.", "kind")


class DbsCheckSchema(Strict):
    level = fields.String(required=True, validate=validate.OneOf(DBS_LEVELS))
    issued_on = fields.Date(required=True)
    update_service = fields.Boolean(load_default=False,
                                    metadata={"description": "subscribed to the DBS update service"})
    certificate_number = fields.String(required=True, validate=validate.Regexp(
        DBS_CERTIFICATE, error="Must be the 12 digits of the certificate."))


class SupervisionSchema(Strict):
    supervised_on = fields.Date(required=True)
    supervisor_id = fields.String(required=True, validate=validate.Length(min=1, max=100),
                                  metadata={"description": "who supervised (a user id)"})
    notes = fields.String(load_default=None, allow_none=True,
                          validate=validate.Length(max=5000),
                          metadata={"description": "encrypted at rest; never in events"})


class TrainingPolicySchema(Strict):
    dbs_renewal_months = fields.Integer(required=True, validate=validate.Range(min=1, max=120))
    safeguarding_refresher_months = fields.Integer(
        required=True, validate=validate.Range(min=1, max=60))
    supervision_weeks = fields.Integer(required=True, validate=validate.Range(min=1, max=52))
    dbs_expiring_notice_days = fields.Integer(
        required=True, validate=validate.Range(min=1, max=365))


class VolunteerQuerySchema(Strict):
    stage = fields.String(load_default=None, validate=validate.OneOf(VOLUNTEER_STAGES))
    eligible = fields.Boolean(load_default=None, allow_none=True)
    limit = fields.Integer(load_default=200, validate=validate.Range(min=1, max=1000))


class DailyCheckSchema(Strict):
    today = fields.Date(load_default=None, allow_none=True)


# -- answers ---------------------------------------------------------------------

class EligibilityRuleSchema(Schema):
    rule = fields.String()
    passed = fields.Boolean()
    reason = fields.String(allow_none=True)
    valid_until = fields.String(allow_none=True)


class VolunteerEligibilitySchema(Schema):
    eligible = fields.Boolean()
    reasons = fields.List(fields.String())
    rules = fields.List(fields.Nested(EligibilityRuleSchema))
    evaluated_on = fields.String()


class PathwayChangeSchema(Schema):
    change = fields.String()
    to = fields.String()
    by = fields.String(allow_none=True)
    at = fields.DateTime()
    from_ = fields.String(data_key="from", attribute="from", allow_none=True)


class TrainingCompletionOutSchema(Schema):
    id = fields.String()
    course_id = fields.String(allow_none=True)
    cohort_id = fields.String(allow_none=True)
    kind = fields.String()
    completed_on = fields.String()
    recorded_at = fields.DateTime()


class DbsCheckOutSchema(Schema):
    id = fields.String()
    level = fields.String()
    issued_on = fields.String()
    update_service = fields.Boolean()
    certificate_number = fields.String()
    recorded_at = fields.DateTime()


class SupervisionOutSchema(Schema):
    id = fields.String()
    supervised_on = fields.String()
    supervisor_id = fields.String()
    notes = fields.String(allow_none=True)
    recorded_at = fields.DateTime()


class VolunteerSchema(Schema):
    id = fields.String(attribute="_id")
    site_id = fields.String()
    name = fields.String()
    email = fields.String()
    phone = fields.String(allow_none=True)
    postcode = fields.String()
    preferred_language = fields.String()
    stage = fields.String()
    role = fields.String()
    history = fields.List(fields.Nested(PathwayChangeSchema))
    completions = fields.List(fields.Nested(TrainingCompletionOutSchema))
    dbs_checks = fields.List(fields.Nested(DbsCheckOutSchema))
    supervisions = fields.List(fields.Nested(SupervisionOutSchema))
    eligibility = fields.Nested(VolunteerEligibilitySchema)
    registered_at = fields.DateTime()
    version = fields.Integer()


class VolunteerSummarySchema(Schema):
    id = fields.String(attribute="_id")
    site_id = fields.String()
    name = fields.String()
    stage = fields.String()
    role = fields.String()
    eligible = fields.Boolean()
    reasons = fields.List(fields.String())


class CourseSchema(Schema):
    id = fields.String(attribute="_id")
    site_id = fields.String()
    name = fields.String()
    kind = fields.String()
    modules = fields.List(fields.Nested(CourseModuleSchema))
    created_at = fields.DateTime()


class TrainingPolicyOutSchema(Schema):
    site_id = fields.String()
    dbs_renewal_months = fields.Integer()
    safeguarding_refresher_months = fields.Integer()
    supervision_weeks = fields.Integer()
    dbs_expiring_notice_days = fields.Integer()
    overridden = fields.Boolean(metadata={"description": "false: the defaults apply"})


class DailyCheckResultSchema(Schema):
    today = fields.String()
    sites = fields.Integer()
    evaluated = fields.Integer()
    eligibility_changes = fields.Integer()
    expiring_notices = fields.Integer()


class VolunteerContactSchema(Schema):
    """What messaging needs to reach a volunteer (over RPC, never events)."""
    name = fields.String()
    email = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    preferred_language = fields.String()


class SessionOutSchema(Schema):
    id = fields.String()
    module_id = fields.String()
    session_date = fields.String()
    present = fields.List(fields.String())
    recorded_at = fields.DateTime()


class CohortProgressSchema(Schema):
    volunteer_id = fields.String()
    modules_attended = fields.List(fields.String())
    modules_missing = fields.List(fields.String())
    completed_on = fields.String(allow_none=True)


class CohortSchema(Schema):
    id = fields.String(attribute="_id")
    site_id = fields.String()
    course_id = fields.String()
    course_name = fields.String()
    kind = fields.String()
    name = fields.String()
    start_date = fields.String()
    trainer_id = fields.String()
    places = fields.Integer()
    places_left = fields.Integer()
    enrolled = fields.List(fields.String())
    sessions = fields.List(fields.Nested(SessionOutSchema))
    progress = fields.List(fields.Nested(CohortProgressSchema), metadata={
        "description": "per enrolled volunteer: modules attended and missing; "
                       "attending every module completes the course"})
    created_at = fields.DateTime()
    version = fields.Integer()
