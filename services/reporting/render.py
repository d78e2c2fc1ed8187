"""A report as CSV, XLSX or a chart page (HTML with inline SVG, no script).

Pure: a report dict in, text or bytes out. The gateway renders what the
reporting service computed. Every format is built from the same rows
(:func:`report_rows`), so the CSV, the spreadsheet and the page agree.
"""
import csv
import html
import io

CONTENT_TYPES = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "html": "text/html; charset=utf-8",
}


def format_from_accept(accept):
    """The format an Accept header asks for (json if none matches)."""
    accept = (accept or "").lower()
    for fmt in ("csv", "xlsx", "html"):
        media = CONTENT_TYPES[fmt].split(";")[0]
        if media in accept:
            return fmt
    return "json"


def _cell(value):
    return "" if value is None else value


def report_rows(report):
    """(section, figure, value, note) rows of a quarterly report."""
    flags = report.get("suppressed") or {}
    rows = []

    def add(section, figure, value, note=""):
        rows.append((section, figure, value, note))

    r = report["referrals"]
    add("referrals", "received", r["received"], flags.get("referrals_by_source.total", ""))
    for source, count in r["by_source"].items():
        add("referrals by source", source, count,
            flags.get(f"referrals_by_source.{source}", ""))
    for decision in ("accepted", "declined", "signposted", "withdrawn"):
        add("referrals", decision, r[decision], flags.get(f"pathway.{decision}", ""))
    add("referrals", "conversion rate", r["conversion_rate"])
    t = report["time_to_first_contact_days"]
    add("time to first contact (days)", "referrals", t["n"], t.get("flag", ""))
    add("time to first contact (days)", "median", t["median"])
    add("time to first contact (days)", "mean", t["mean"])
    add("families", "matched", report["families_matched"],
        flags.get("pathway.families_matched", ""))
    add("families", "supported", report["families_supported"],
        flags.get("pathway.families_supported", ""))
    c = report["contacts"]
    add("contacts", "total", c["total"], flags.get("contacts_by_mode.total", ""))
    for mode, count in c["by_mode"].items():
        add("contacts by mode", mode, count, flags.get(f"contacts_by_mode.{mode}", ""))
    add("contacts per family", "mean", c["per_family"]["mean"], c["per_family"].get("flag", ""))
    add("contacts per family", "median", c["per_family"]["median"])
    w = report["weeks_of_support"]
    add("weeks of support (ended journeys)", "journeys", w["n"], w.get("flag", ""))
    add("weeks of support (ended journeys)", "median", w["median"])
    add("weeks of support (ended journeys)", "mean", w["mean"])
    v = report["volunteers"]
    for figure in ("pool_at_quarter_end", "eligible_at_quarter_end", "active_in_quarter"):
        add("volunteers", figure.replace("_", " "), v[figure],
            flags.get(f"volunteers.{figure}", ""))
    add("volunteers", "hours", v["hours"])
    ret = v["retention"]
    add("volunteer retention", "on the register at quarter start",
        ret["at_quarter_start"], ret.get("flag", ""))
    add("volunteer retention", "retained", ret["retained"])
    add("volunteer retention", "rate", ret["rate"])
    g = report["goals"]
    add("goals", "set", g["set"], flags.get("goals.set", ""))
    add("goals", "achieved", g["achieved"], flags.get("goals.achieved", ""))
    for category, counts in (g.get("by_category") or {}).items():
        add("goals achieved by category", category, counts["achieved"])
    for o in report["outcomes"]:
        section = f"outcome: {o['instrument']} {o['score']}"
        add(section, "pairs (baseline and exit)", o["n_pairs"], o.get("flag", ""))
        add(section, "baseline mean", o["baseline_mean"])
        add(section, "exit mean", o["exit_mean"])
        add(section, "mean change", o["mean_change"], o["direction"])
        ci = o["ci95"] or [None, None]
        add(section, "95% CI low", ci[0])
        add(section, "95% CI high", ci[1])
        add(section, "t", o["t"], o["test"])
        add(section, "p-value", o["p_value"], o["test"])
        add(section, "effect size", o["effect_size"]["value"], o["effect_size"]["name"])
        add(section, f"improved by more than {o['meaningful_change']:g}", o["improved"],
            o["meaningful_change_source"])
        add(section, "share improved", o["improved_share"])
    return rows


def _title(report):
    return f"Alongside quarterly report: site {report['site_id']}, {report['quarter']} " \
           f"({report['period']['start']} to {report['period']['end']})"


def to_csv(report):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["site", "quarter", "section", "figure", "value", "note"])
    for section, figure, value, note in report_rows(report):
        writer.writerow([report["site_id"], report["quarter"], section, figure,
                         _cell(value), note])
    return out.getvalue()


def to_xlsx(report):
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    sheet = book.active
    sheet.title = "Report"
    sheet.append([_title(report)])
    sheet["A1"].font = Font(bold=True)
    sheet.append(["section", "figure", "value", "note"])
    for cell in sheet[2]:
        cell.font = Font(bold=True)
    for section, figure, value, note in report_rows(report):
        sheet.append([section, figure, value, note])
    for column, width in zip("ABCD", (34, 34, 12, 60)):
        sheet.column_dimensions[column].width = width
    notes = book.create_sheet("Definitions")
    for key, text in (report.get("definitions") or {}).items():
        notes.append([key, text])
    if report.get("suppression"):
        notes.append(["suppression", report["suppression"]])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _bars(title, items, unit=""):
    """A horizontal bar chart as inline SVG; negative values go left of a
    zero line (an outcome that fell)."""
    items = list(items)
    shown = [v for _, v in items if isinstance(v, (int, float))]
    low, high = min([0] + shown), max([0] + shown)
    span = (high - low) or 1
    row, label_w, bar_w = 22, 190, 360
    zero = label_w + bar_w * (-low) / span
    height = row * len(items) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 80}" '
             f'height="{height}" role="img" aria-label="{html.escape(title)}">',
             f'<text x="0" y="14" font-weight="bold">{html.escape(title)}</text>',
             f'<line x1="{zero:.1f}" y1="22" x2="{zero:.1f}" y2="{height}" '
             'stroke="#999"/>']
    for i, (label, value) in enumerate(items):
        y = 24 + i * row
        parts.append(f'<text x="0" y="{y + 14}">{html.escape(str(label))}</text>')
        if isinstance(value, (int, float)):
            start = zero + bar_w * min(0, value) / span
            width = bar_w * abs(value) / span
            parts.append(f'<rect x="{start:.1f}" y="{y + 2}" width="{width:.1f}" '
                         f'height="{row - 6}" fill="{"#3b6ea5" if value >= 0 else "#b5553c"}"/>')
            text, at = f"{value:g}{unit}", zero + bar_w * max(0, value) / span + 6
        else:
            text, at = "suppressed (<5)" if value is None else str(value), zero + 6
        parts.append(f'<text x="{at:.1f}" y="{y + 14}">{html.escape(text)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def to_html(report):
    r, c = report["referrals"], report["contacts"]
    charts = [
        _bars("Referrals by source", list(r["by_source"].items())),
        _bars("Triage decisions", [(k, r[k]) for k in ("accepted", "declined",
                                                        "signposted", "withdrawn")]),
        _bars("Contacts by mode", list(c["by_mode"].items())),
        _bars("Outcome change (mean, exit - baseline; see each measure's direction)",
              [(f"{o['instrument']} {o['score']}", o["mean_change"])
               for o in report["outcomes"] if o["n_pairs"] != 0]),
    ]
    table = "".join(
        f"<tr><td>{html.escape(str(s))}</td><td>{html.escape(str(f))}</td>"
        f"<td>{html.escape(str(_cell(v)))}</td><td>{html.escape(str(n))}</td></tr>"
        for s, f, v, n in report_rows(report))
    title = html.escape(_title(report))
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{title}</title><style>body{{font-family:sans-serif;margin:2em}}"
            "svg{display:block;margin:1em 0}td,th{padding:2px 8px;text-align:left}"
            "svg text{font-size:12px}</style></head><body>"
            f"<h1>{title}</h1>{''.join(charts)}"
            "<table><thead><tr><th>section</th><th>figure</th><th>value</th>"
            f"<th>note</th></tr></thead><tbody>{table}</tbody></table>"
            "</body></html>")


def national_csv(report):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["quarter", "table", "site", "figure", "value", "flag"])
    for name, table in report["tables"].items():
        for site, values in table["rows"].items():
            for column in table["columns"]:
                writer.writerow([report["quarter"], name, site, column,
                                 _cell(values.get(column)),
                                 table["flags"].get(site, {}).get(column, "")])
        for column in table["columns"]:
            writer.writerow([report["quarter"], name, "ALL", column,
                             _cell(table["totals"].get(column)),
                             table["total_flags"].get(column, "")])
    return out.getvalue()


def render(report, fmt):
    """(body, content type) of a quarterly report in one format."""
    if fmt == "csv":
        return to_csv(report).encode("utf-8"), CONTENT_TYPES["csv"]
    if fmt == "xlsx":
        return to_xlsx(report), CONTENT_TYPES["xlsx"]
    if fmt == "html":
        return to_html(report).encode("utf-8"), CONTENT_TYPES["html"]
    raise ValueError(fmt)
