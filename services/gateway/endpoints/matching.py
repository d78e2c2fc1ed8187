"""Matching profiles, suggestions, matches and match plans: checked here with
the matching service's own schemas, then forwarded to it over RPC with the
caller's site."""
from services.gateway import domain, store
from services.gateway.api import endpoint
from services.matching.schemas import (AcceptMatchSchema, ConfirmMatchSchema,
                                       DeclineMatchSchema,
                                       EndMatchSchema, MatchesQuerySchema,
                                       MatchSchema, PlanRequestSchema, PlanSchema,
                                       ProfileOutSchema, ProfileSchema,
                                       SuggestionsQuerySchema, SuggestionsSchema,
                                       WeightsOutSchema, WeightsSchema)
from shared.errors import Forbidden, NotFound, ValidationFailed


def own_site(principal, site_id):
    """The caller's site, if it is the one in the path; any other is 'not found'."""
    scope = domain.site_scope(principal)
    if site_id != scope:
        raise NotFound(f"No site {site_id}.")
    return scope


class MatchingEndpoints:
    @endpoint("PUT", "/api/v1/volunteers/<id>/matching-profile",
              summary="Set a volunteer's matching profile (whole)",
              permission="matching:manage", body=ProfileSchema,
              response=ProfileOutSchema, forwarded=True,
              audit=("matching_profile.update", "volunteer"), errors=(404,))
    def put_matching_profile(self, call, id):
        site_id = domain.site_scope(call.principal)
        user_id = call.body["user_id"]
        if user_id is not None:
            user = store.Users(self.db).get(user_id)
            if user is None or user["role"] != domain.VOLUNTEER or user.get("site_id") != site_id:
                raise ValidationFailed("The request has invalid fields.", {
                    "user_id": ["must be a volunteer user of your site"]})
        return self.matching.put_profile(site_id, id, ProfileSchema().dump(call.body))

    @endpoint("GET", "/api/v1/volunteers/<id>/matching-profile",
              summary="A volunteer's matching profile, eligibility and load",
              permission="matching:manage", response=ProfileOutSchema, forwarded=True,
              audit=("matching_profile.read", "volunteer"), errors=(404,))
    def get_matching_profile(self, call, id):
        return self.matching.get_profile(domain.site_scope(call.principal), id)

    @endpoint("GET", "/api/v1/sites/<id>/matching-weights",
              summary="The site's matching score weights",
              permission="matching:manage", response=WeightsOutSchema, forwarded=True,
              errors=(404,))
    def get_matching_weights(self, call, id):
        return self.matching.get_weights(own_site(call.principal, id))

    @endpoint("PUT", "/api/v1/sites/<id>/matching-weights",
              summary="Set the site's matching score weights",
              permission="matching:manage", body=WeightsSchema,
              response=WeightsOutSchema, forwarded=True,
              audit=("matching_weights.update", "site"), errors=(404,))
    def put_matching_weights(self, call, id):
        return self.matching.set_weights(own_site(call.principal, id),
                                         WeightsSchema().dump(call.body), call.principal.id)

    @endpoint("GET", "/api/v1/referrals/<id>/match-suggestions",
              summary="Volunteers for an accepted referral, ranked, with scores "
                      "broken down and the hard rules passed",
              permission="matching:manage", query=SuggestionsQuerySchema,
              response=SuggestionsSchema, forwarded=True,
              audit=("match_suggestions.read", "referral"), errors=(404,))
    def match_suggestions(self, call, id):
        return self.matching.suggestions(domain.site_scope(call.principal), id,
                                         SuggestionsQuerySchema().dump(call.query))

    @endpoint("POST", "/api/v1/matches",
              summary="Confirm a volunteer for a referral (or, with propose, ask the "
                      "volunteer first)",
              status=201, permission="matching:manage", body=ConfirmMatchSchema,
              response=MatchSchema, forwarded=True, audit=("match.confirm", "match"),
              errors=(404, 409))
    def confirm_match(self, call):
        return self.matching.confirm_match(domain.site_scope(call.principal),
                                           ConfirmMatchSchema().dump(call.body),
                                           call.principal.id)

    @endpoint("GET", "/api/v1/matches",
              summary="Matches of the site (a volunteer: their own)",
              query=MatchesQuerySchema, response=MatchSchema, many=True, forwarded=True,
              audit=("match.list", "match"))
    def list_matches(self, call):
        site_id = domain.site_scope(call.principal)
        query = MatchesQuerySchema().dump(call.query)
        if call.principal.role == domain.SITE_COORDINATOR:
            return self.matching.list_matches(site_id, query)
        if call.principal.role == domain.VOLUNTEER and call.principal.kind == "user":
            return self.matching.list_matches(site_id, query, call.principal.id)
        raise Forbidden(f"The {call.principal.role} role may not list matches.")

    @endpoint("POST", "/api/v1/matches/<id>/accept",
              summary="The proposed volunteer accepts the match: it is confirmed",
              body=AcceptMatchSchema, response=MatchSchema, forwarded=True,
              audit=("match.accept", "match"), errors=(404, 409))
    def accept_match(self, call, id):
        if call.principal.role != domain.VOLUNTEER or call.principal.kind != "user":
            raise Forbidden("Only the proposed volunteer can accept a match.")
        return self.matching.accept_match(domain.site_scope(call.principal), id,
                                          AcceptMatchSchema().dump(call.body),
                                          call.principal.id)

    @endpoint("POST", "/api/v1/matches/<id>/decline",
              summary="The matched volunteer declines the match",
              body=DeclineMatchSchema, response=MatchSchema, forwarded=True,
              audit=("match.decline", "match"), errors=(404, 409))
    def decline_match(self, call, id):
        if call.principal.role != domain.VOLUNTEER or call.principal.kind != "user":
            raise Forbidden("Only the matched volunteer can decline a match.")
        return self.matching.decline_match(domain.site_scope(call.principal), id,
                                           DeclineMatchSchema().dump(call.body),
                                           call.principal.id)

    @endpoint("POST", "/api/v1/matches/<id>/end", summary="End a match, with a reason",
              permission="matching:manage", body=EndMatchSchema, response=MatchSchema,
              forwarded=True, audit=("match.end", "match"), errors=(404, 409))
    def end_match(self, call, id):
        return self.matching.end_match(domain.site_scope(call.principal), id,
                                       EndMatchSchema().dump(call.body))

    @endpoint("POST", "/api/v1/sites/<id>/match-plan",
              summary="Propose the best assignment of the whole waiting list "
                      "(optimal, within every capacity), for review: stores nothing",
              permission="matching:manage", body=PlanRequestSchema, response=PlanSchema,
              forwarded=True, audit=("match_plan.read", "site"), errors=(404,))
    def match_plan(self, call, id):
        return self.matching.match_plan(own_site(call.principal, id),
                                        PlanRequestSchema().dump(call.body))
