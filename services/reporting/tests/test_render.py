import csv
import io
import re

from openpyxl import load_workbook

from services.reporting import domain, render
from services.reporting.tests.test_domain import Q3, fold, split
from services.reporting.tests.worked_example import build


def report(suppressed=False):
    events, _ = build()
    referrals, volunteers, _ = split(fold(events))
    made = domain.quarterly_report("essex", Q3, referrals, volunteers)
    return domain.suppressed_report(made) if suppressed else made


def test_csv_has_one_row_per_figure_with_the_site_and_quarter():
    rows = list(csv.DictReader(io.StringIO(render.to_csv(report()))))
    assert {r["site"] for r in rows} == {"essex"} and {r["quarter"] for r in rows} == {"2026Q3"}
    figures = {(r["section"], r["figure"]): r for r in rows}
    assert figures[("referrals", "received")]["value"] == "5"
    assert figures[("contacts by mode", "home_visit")]["value"] == "1"
    assert figures[("outcome: wemwbs total", "p-value")]["note"].startswith("paired t-test")
    assert figures[("outcome: epds total", "mean change")]["value"] == ""   # no pairs
    assert len(rows) == len(render.report_rows(report()))


def test_suppressed_values_are_empty_and_flagged():
    rows = list(csv.DictReader(io.StringIO(render.to_csv(report(suppressed=True)))))
    midwife = next(r for r in rows if r["figure"] == "midwife")
    assert midwife["value"] == "" and midwife["note"] == "<5"


def test_xlsx_holds_the_same_rows_as_numbers():
    book = load_workbook(io.BytesIO(render.to_xlsx(report())))
    rows = list(book["Report"].iter_rows(min_row=3, values_only=True))
    assert rows == [tuple(r) for r in [
        (s, f, v, n or None) for s, f, v, n in render.report_rows(report())]]
    assert isinstance(rows[0][2], int)
    assert "Report" in book.sheetnames and "Definitions" in book.sheetnames


def test_the_chart_page_is_self_contained_html_with_svg_bars():
    page = render.to_html(report())
    assert page.startswith("<!doctype html>") and "<script" not in page
    assert "src=" not in page and "href=" not in page   # nothing fetched
    assert page.count("<svg") == 4
    # Bars scale to the largest value: midwife (2) is the full width.
    widths = re.findall(r'<rect x="190.0" y="\d+" width="([\d.]+)"', page)
    assert "360.0" in widths and "180.0" in widths


def test_the_format_follows_the_accept_header():
    assert render.format_from_accept("text/csv") == "csv"
    assert render.format_from_accept(render.CONTENT_TYPES["xlsx"]) == "xlsx"
    assert render.format_from_accept("text/html,application/xhtml+xml") == "html"
    assert render.format_from_accept("*/*") == "json"
    assert render.format_from_accept(None) == "json"


def test_a_fall_is_drawn_left_of_the_zero_line_and_a_hidden_value_is_named():
    svg = render._bars("t", [("up", 3), ("down", -1), ("hidden", None)])
    # zero at 190 + 360 * 1/4 = 280: 'up' runs right of it, 'down' left.
    assert '<line x1="280.0"' in svg
    assert '<rect x="280.0" y="26" width="270.0"' in svg
    assert '<rect x="190.0" y="48" width="90.0"' in svg
    assert "suppressed (&lt;5)" in svg
