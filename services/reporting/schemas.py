"""Payloads of the reporting service's RPC entrypoints."""
from marshmallow import RAISE, Schema, fields, validate


class ArchivedEventSchema(Schema):
    id = fields.String(attribute="_id")
    site_id = fields.String()
    type = fields.String()
    time = fields.DateTime()
    subject = fields.String(allow_none=True)
    correlationid = fields.String()
    causationid = fields.String(allow_none=True)
    data = fields.Dict()
    archived_at = fields.DateTime()


QUARTER_PATTERN = r"^[0-9]{4}[Qq][1-4]$"


class QuarterlyQuerySchema(Schema):
    """What ``reporting.quarterly_report`` takes besides the site."""
    class Meta:
        unknown = RAISE

    quarter = fields.String(required=True, validate=validate.Regexp(
        QUARTER_PATTERN, error="expected YYYYQn, e.g. 2026Q3"))
    suppressed = fields.Boolean(load_default=False)


class NationalQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    quarter = fields.String(required=True, validate=validate.Regexp(
        QUARTER_PATTERN, error="expected YYYYQn, e.g. 2026Q3"))
    site_ids = fields.List(fields.String(validate=validate.Length(min=1, max=100)),
                           required=True, validate=validate.Length(max=1000))


REPORT_FORMATS = ("json", "csv", "xlsx", "html")


class QuarterlyReportQuerySchema(Schema):
    """``GET /api/v1/reports/quarterly``'s query."""
    class Meta:
        unknown = RAISE

    site = fields.String(load_default=None, validate=validate.Length(min=1, max=100),
                         metadata={"description": "the site's id (a coordinator's own "
                                                  "site if left out)"})
    quarter = fields.String(required=True, validate=validate.Regexp(
        QUARTER_PATTERN, error="expected YYYYQn, e.g. 2026Q3"),
        metadata={"description": "calendar quarter, e.g. 2026Q3"})
    format = fields.String(load_default=None, validate=validate.OneOf(REPORT_FORMATS),
                           metadata={"description": "json (default), csv, xlsx or "
                                                    "html (a chart page); or use Accept"})


class NationalReportQuerySchema(Schema):
    """``GET /api/v1/reports/national``'s query."""
    class Meta:
        unknown = RAISE

    quarter = fields.String(required=True, validate=validate.Regexp(
        QUARTER_PATTERN, error="expected YYYYQn, e.g. 2026Q3"))
    format = fields.String(load_default=None, validate=validate.OneOf(("json", "csv")))


class ReportSchema(Schema):
    """A quarterly report (documentation only: forwarded as computed)."""
    site_id = fields.String()
    quarter = fields.String()
    period = fields.Dict()
    referrals = fields.Dict()
    time_to_first_contact_days = fields.Dict()
    families_matched = fields.Integer(allow_none=True)
    families_supported = fields.Integer(allow_none=True)
    contacts = fields.Dict()
    weeks_of_support = fields.Dict()
    volunteers = fields.Dict()
    goals = fields.Dict()
    outcomes = fields.List(fields.Dict())
    definitions = fields.Dict()
    suppressed = fields.Dict()
    suppression = fields.String()


class NationalReportSchema(Schema):
    """The national view (documentation only)."""
    quarter = fields.String()
    period = fields.Dict()
    sites = fields.List(fields.String())
    tables = fields.Dict()
    outcomes = fields.List(fields.Dict())
    suppression = fields.String()
    definitions = fields.Dict()
