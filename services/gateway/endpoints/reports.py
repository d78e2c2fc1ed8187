"""Reports: quarterly reports per site and the national view, from the reporting service.

A site coordinator reads their own site's quarter (another site is 'not
found'); a national admin reads any site's quarter with small numbers
suppressed, and the national view (aggregates only, counts under 5
suppressed). Reports hold no personal data, so reading one is not audited.

JSON by default; ``format=csv|xlsx|html`` (or an Accept header asking for
text/csv, the XLSX media type or text/html) renders the same report
(``services.reporting.render``), which the endpoint answers as it is.
"""
from werkzeug.wrappers import Response

from services.gateway import domain, store
from services.gateway.api import endpoint
from services.reporting import render
from services.reporting.schemas import (NationalReportQuerySchema,
                                        NationalReportSchema,
                                        QuarterlyReportQuerySchema, ReportSchema)
from shared.errors import Forbidden, NotFound, ValidationFailed

PERMISSION = "reports:read"


def _answer(call, report, fmt, filename, renderer=render.render):
    if fmt and fmt != "json":
        body, content_type = renderer(report, fmt)
        response = Response(body, status=200, content_type=content_type)
        if fmt in ("csv", "xlsx"):
            response.headers["Content-Disposition"] = (
                f'attachment; filename="{filename}.{fmt}"')
        response.headers["Vary"] = "Accept"
        return response   # the endpoint sends a rendered answer as it is
    return report


def _format(call):
    return call.query.get("format") or render.format_from_accept(
        call.request.headers.get("Accept"))


def _national_csv(report, fmt):
    return render.national_csv(report).encode("utf-8"), render.CONTENT_TYPES["csv"]


class ReportEndpoints:
    @endpoint("GET", "/api/v1/reports/quarterly",
              summary="A site's quarter: referrals, contacts, volunteers, goals and "
                      "outcome change (JSON, CSV, XLSX or a chart page)",
              permission=PERMISSION, query=QuarterlyReportQuerySchema,
              response=ReportSchema, forwarded=True, errors=(404, 422))
    def quarterly_report(self, call):
        principal = call.principal
        site_id = call.query.get("site")
        if site_id is None:
            if principal.is_national:
                raise ValidationFailed("Say which site.", {"site": ["required for a "
                                                                     "national role"]})
            site_id = principal.site_id
        site_id = domain.visible_site(principal, site_id)
        if store.Sites(self.db).get(site_id) is None:
            raise NotFound(f"No site {site_id}.")
        report = self.reporting.quarterly_report(site_id, {
            "quarter": call.query["quarter"], "suppressed": principal.is_national})
        return _answer(call, report, _format(call),
                       f"alongside-{site_id}-{report['quarter']}")

    @endpoint("GET", "/api/v1/reports/national",
              summary="Every site's quarter, aggregated; counts under 5 suppressed",
              permission=PERMISSION, query=NationalReportQuerySchema,
              response=NationalReportSchema, forwarded=True, errors=(403, 422))
    def national_report(self, call):
        if call.principal.role != domain.NATIONAL_ADMIN:
            raise Forbidden("The national view is for national admins.")
        site_ids = [site["_id"] for site in store.Sites(self.db).all()]
        report = self.reporting.national_report({"quarter": call.query["quarter"],
                                                 "site_ids": site_ids})
        fmt = call.query.get("format") or (
            "csv" if render.format_from_accept(call.request.headers.get("Accept")) == "csv"
            else "json")
        return _answer(call, report, fmt, f"alongside-national-{report['quarter']}",
                       _national_csv)
