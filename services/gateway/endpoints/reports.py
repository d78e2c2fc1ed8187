"""Reports: quarterly reports per site and the national view, from the reporting service."""


class ReportEndpoints:
    pass
