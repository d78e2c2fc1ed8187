"""Events the training service raises.

Ids, dates and codes only: never a volunteer's name, contact details,
postcode (only its district), certificate number or supervision notes.
"""
from marshmallow import fields, validate

from shared.events.catalogue import POSTCODE_DISTRICT, EventData, event_type

VOLUNTEER_STAGES = ("applicant", "in_training", "active", "paused", "left")
VOLUNTEER_ROLES = ("volunteer", "peer_support_worker", "trainer", "coordinator")
COURSE_KINDS = ("core", "safeguarding_refresher", "birth_buddy", "other")
DBS_LEVELS = ("basic", "standard", "enhanced")

# Why a volunteer is not eligible, one code per failed rule.
ELIGIBILITY_REASONS = (
    "core_course_missing",
    "dbs_enhanced_missing", "dbs_enhanced_expired",
    "safeguarding_training_missing", "safeguarding_training_overdue",
    "supervision_missing", "supervision_overdue",
    "stage_not_active",
)


@event_type("volunteer.registered", 1, "training",
            "A volunteer was registered with a site (as an applicant).")
class VolunteerRegisteredV1(EventData):
    volunteer_id = fields.String(required=True)
    role = fields.String(required=True, validate=validate.OneOf(VOLUNTEER_ROLES))
    stage = fields.String(required=True, validate=validate.OneOf(VOLUNTEER_STAGES))
    area = fields.String(required=True, validate=validate.Regexp(POSTCODE_DISTRICT),
                         metadata={"description": "postcode district"})
    registered_at = fields.String(required=True)


@event_type("training.course_completed", 1, "training",
            "A volunteer completed a course (core, safeguarding refresher, ...).")
class CourseCompletedV1(EventData):
    volunteer_id = fields.String(required=True)
    completion_id = fields.String(required=True)
    course_id = fields.String(load_default=None, allow_none=True)
    kind = fields.String(required=True, validate=validate.OneOf(COURSE_KINDS))
    completed_on = fields.Date(required=True)


@event_type("dbs.recorded", 1, "training",
            "A DBS check of a volunteer was recorded (never its certificate number).")
class DbsRecordedV1(EventData):
    volunteer_id = fields.String(required=True)
    dbs_check_id = fields.String(required=True)
    level = fields.String(required=True, validate=validate.OneOf(DBS_LEVELS))
    issued_on = fields.Date(required=True)
    update_service = fields.Boolean(required=True)


@event_type("dbs.expiring", 1, "training",
            "A volunteer's current enhanced DBS check reaches its site's renewal "
            "date soon (once per certificate per notice window).")
class DbsExpiringV1(EventData):
    volunteer_id = fields.String(required=True)
    dbs_check_id = fields.String(required=True)
    expires_on = fields.Date(required=True,
                             metadata={"description": "first day it is no longer current"})


@event_type("supervision.recorded", 1, "training",
            "A supervision session of a volunteer was recorded (never its notes).")
class SupervisionRecordedV1(EventData):
    volunteer_id = fields.String(required=True)
    supervision_id = fields.String(required=True)
    supervisor_id = fields.String(required=True)
    supervised_on = fields.Date(required=True)


@event_type("volunteer.eligibility_changed", 1, "training",
            "A volunteer became eligible to be matched, or stopped being so "
            "(after a change to their record, or by time passing).")
class EligibilityChangedV1(EventData):
    volunteer_id = fields.String(required=True)
    eligible = fields.Boolean(required=True)
    reasons = fields.List(fields.String(validate=validate.OneOf(ELIGIBILITY_REASONS)),
                          required=True,
                          metadata={"description": "why not eligible (empty if eligible)"})
    evaluated_on = fields.Date(required=True)


@event_type("volunteer.left", 1, "training", "A volunteer left the programme.")
class VolunteerLeftV1(EventData):
    volunteer_id = fields.String(required=True)
    previous_stage = fields.String(required=True,
                                   validate=validate.OneOf(VOLUNTEER_STAGES))
    left_on = fields.Date(required=True)
