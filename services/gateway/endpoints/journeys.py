"""Journeys: contacts, goals and outcome measures, forwarded to the journeys service.

A coordinator reaches every journey of their site; a volunteer only the
journeys of their own matches (another's is 'not found'). Journeys hold the
parent's notes and answers: every read and change is audited.

Outcome measures are offered only where the site holds the licence: the
site's ``licensed_measures`` go with the call, and an unlicensed measure is
refused with 422 naming ``instrument`` (the request is well formed and the
caller's role may record measures; it is this instrument that is not an
allowed value at this site, as a form would show it).
"""
from services.gateway import domain, store
from services.gateway.api import endpoint
from services.journeys.schemas import (ContactSchema, EndJourneySchema, GoalReviewSchema,
                                       GoalSchema, InstrumentSchema, JourneyDetailSchema,
                                       JourneyQuerySchema, JourneySchema, NewContactSchema,
                                       NewGoalSchema, OutcomeMeasureSchema, OutcomeSchema,
                                       VolunteerHoursQuerySchema, VolunteerHoursSchema)
from shared.errors import Forbidden


def _viewer(principal):
    """The user id a volunteer is limited to, or None for a coordinator."""
    if principal.role == domain.SITE_COORDINATOR:
        return None
    if principal.role == domain.VOLUNTEER and principal.kind == "user":
        return principal.id
    raise Forbidden(f"The {principal.role} role may not reach journeys.")


def _licensed_measures(database, site_id):
    site = store.Sites(database).get(site_id) or {}
    return list(site.get("licensed_measures") or [])


class JourneyEndpoints:
    @endpoint("GET", "/api/v1/journeys",
              summary="Journeys of the site with contact totals (a volunteer: their own)",
              permission="journeys:read", query=JourneyQuerySchema, response=JourneySchema,
              many=True, forwarded=True, audit=("journey.list", "journey"))
    def list_journeys(self, call):
        return self.journeys.list_journeys(domain.site_scope(call.principal),
                                           JourneyQuerySchema().dump(call.query),
                                           _viewer(call.principal))

    @endpoint("GET", "/api/v1/volunteer-hours",
              summary="Contacts and hours per volunteer over a period (from, to: "
                      "YYYY-MM-DD, both included; a volunteer: their own)",
              permission="journeys:read", query=VolunteerHoursQuerySchema,
              response=VolunteerHoursSchema, many=True, forwarded=True)
    def volunteer_hours(self, call):
        return self.journeys.volunteer_hours(domain.site_scope(call.principal),
                                             VolunteerHoursQuerySchema().dump(call.query),
                                             _viewer(call.principal))

    @endpoint("GET", "/api/v1/journeys/<id>",
              summary="A journey: contacts, volunteer hours, goals and outcome measures",
              permission="journeys:read", response=JourneyDetailSchema, forwarded=True,
              audit=("journey.read", "journey"), errors=(404,))
    def get_journey(self, call, id):
        return self.journeys.get_journey(domain.site_scope(call.principal), id,
                                         _viewer(call.principal))

    @endpoint("POST", "/api/v1/journeys/<id>/end", summary="End a journey, with a reason",
              permission="journeys:write", body=EndJourneySchema,
              response=JourneyDetailSchema, forwarded=True,
              audit=("journey.end", "journey"), errors=(404, 409))
    def end_journey(self, call, id):
        if call.principal.role != domain.SITE_COORDINATOR:
            raise Forbidden("Only a coordinator ends a journey.")
        return self.journeys.end_journey(domain.site_scope(call.principal), id,
                                         EndJourneySchema().dump(call.body),
                                         call.principal.id)

    @endpoint("POST", "/api/v1/journeys/<id>/contacts",
              summary="Log a contact with the parent (notes encrypted at rest)",
              status=201, permission="journeys:write", body=NewContactSchema,
              response=ContactSchema, forwarded=True,
              audit=("journey.contact_log", "journey"), errors=(404,))
    def log_contact(self, call, id):
        viewer = _viewer(call.principal)
        return self.journeys.log_contact(domain.site_scope(call.principal), id,
                                         NewContactSchema().dump(call.body),
                                         call.principal.id, call.principal.role, viewer)

    @endpoint("POST", "/api/v1/journeys/<id>/goals",
              summary="Set a goal in the parent's own words (encrypted at rest)",
              status=201, permission="journeys:write", body=NewGoalSchema,
              response=GoalSchema, forwarded=True, audit=("journey.goal_set", "journey"),
              errors=(404, 409))
    def set_goal(self, call, id):
        viewer = _viewer(call.principal)
        return self.journeys.set_goal(domain.site_scope(call.principal), id,
                                      NewGoalSchema().dump(call.body), call.principal.id,
                                      viewer)

    @endpoint("POST", "/api/v1/journeys/<id>/goals/<goal_id>/reviews",
              summary="Review a goal: its status now (set, in progress, achieved, changed)",
              status=201, permission="journeys:write", body=GoalReviewSchema,
              response=GoalSchema, forwarded=True,
              audit=("journey.goal_review", "journey"), errors=(404,))
    def review_goal(self, call, id, goal_id):
        viewer = _viewer(call.principal)
        return self.journeys.review_goal(domain.site_scope(call.principal), id, goal_id,
                                         GoalReviewSchema().dump(call.body),
                                         call.principal.id, viewer)

    @endpoint("POST", "/api/v1/journeys/<id>/outcome-measures",
              summary="Record an outcome measure's answers; the service scores it "
                      "(only measures the site holds the licence for)",
              status=201, permission="journeys:write", body=OutcomeMeasureSchema,
              response=OutcomeSchema, forwarded=True,
              audit=("journey.outcome_record", "journey"), errors=(404, 409))
    def record_outcome(self, call, id):
        viewer = _viewer(call.principal)
        site_id = domain.site_scope(call.principal)
        return self.journeys.record_outcome(site_id, id,
                                            OutcomeMeasureSchema().dump(call.body),
                                            _licensed_measures(self.db, site_id),
                                            call.principal.id, viewer)

    @endpoint("GET", "/api/v1/outcome-instruments",
              summary="Outcome measures, their items, and which the site may use",
              permission="journeys:read", response=InstrumentSchema, many=True,
              forwarded=True)
    def list_outcome_instruments(self, call):
        site_id = domain.site_scope(call.principal)
        return self.journeys.list_instruments(_licensed_measures(self.db, site_id))
