"""Typed domain errors.

A service raises one of these; nameko carries it over RPC (each class is
registered with ``deserialize_to_instance`` so the caller gets the same type
back, with its field errors), and the gateway turns it into an HTTP
``application/problem+json`` response with the status named here.
"""
from nameko.exceptions import deserialize_to_instance

PROBLEM_CONTENT_TYPE = "application/problem+json"


class AlongsideError(Exception):
    status = 500
    title = "Internal error"
    code = "internal_error"

    def __init__(self, detail="", errors=None):
        # args are what nameko serialises: keep them plain JSON.
        super().__init__(detail, errors or {})
        self.detail = detail
        self.errors = errors or {}

    def __str__(self):
        if self.errors:
            return f"{self.detail} {self.errors}"
        return self.detail

    def to_problem(self, instance=None):
        problem = {
            "type": f"urn:alongside:problem:{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            problem["errors"] = self.errors
        if instance:
            problem["instance"] = instance
        return problem


@deserialize_to_instance
class ValidationFailed(AlongsideError):
    """Input did not match its schema; ``errors`` names each field."""
    status = 422
    title = "Validation failed"
    code = "validation_failed"


@deserialize_to_instance
class BadRequest(AlongsideError):
    status = 400
    title = "Bad request"
    code = "bad_request"


@deserialize_to_instance
class Unauthorized(AlongsideError):
    status = 401
    title = "Unauthorized"
    code = "unauthorized"


@deserialize_to_instance
class Forbidden(AlongsideError):
    status = 403
    title = "Forbidden"
    code = "forbidden"


@deserialize_to_instance
class NotFound(AlongsideError):
    status = 404
    title = "Not found"
    code = "not_found"


@deserialize_to_instance
class Conflict(AlongsideError):
    status = 409
    title = "Conflict"
    code = "conflict"


@deserialize_to_instance
class TooManyRequests(AlongsideError):
    status = 429
    title = "Too many requests"
    code = "too_many_requests"


@deserialize_to_instance
class ServiceUnavailable(AlongsideError):
    """A service behind the caller did not answer (in time)."""
    status = 503
    title = "Service unavailable"
    code = "unavailable"


@deserialize_to_instance
class MissingSiteScope(AlongsideError):
    """A store call without a site: a programming error, never user input."""
    status = 500
    title = "Missing site scope"
    code = "missing_site_scope"


@deserialize_to_instance
class EventRejected(AlongsideError):
    """An event that can never be applied (unknown type, invalid data).

    Retrying cannot help, so the handler sends it to the dead letters at once.
    """
    status = 422
    title = "Event rejected"
    code = "event_rejected"


# Errors a client may expect back from any RPC entrypoint.
DOMAIN_ERRORS = (ValidationFailed, BadRequest, Unauthorized, Forbidden,
                 NotFound, Conflict, TooManyRequests)


def problem_for(exc, instance=None):
    """The problem+json body and status for any exception: never a trace."""
    if isinstance(exc, AlongsideError):
        return exc.status, exc.to_problem(instance)
    return 500, AlongsideError("An unexpected error occurred.").to_problem(instance)
