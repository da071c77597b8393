"""Report tables as files: CSV (UTF-8 with a BOM, so Excel shows Chinese) and XLSX
(XlsxWriter in constant_memory mode), streamed to the browser.

A table is its columns (the key and name first, then every figure of FIGURES, labelled in the
active language), its rows (any iterable of dicts keyed by column name: a report result's rows,
or a generator of 100,000 of them) and a totals row at the end. Money is a number with two
decimals (XLSX format 0.00; CSV plain "620.50"), a rate a number (XLSX percent format; CSV plain
"0.2002", as in the JSON API), minutes a number with one decimal, a flag TRUE/FALSE (CSV "true"
or "false", as in the JSON API), null an empty cell. The staff report adds its figures
(STAFF_FIGURES) after the channel report's.

    report_export_response(result, "xlsx")  # a report result as a download (pages, the API)
    table = report_table(result)            # or any rows: Table(title, columns, rows, totals)
    csv_write(table, binary_file); xlsx_write(table, binary_file, progress=callback)

Exports over settings.REPORT_EXPORT_SYNC_MAX_ROWS rows are written by a background job
instead (analytics.export_jobs).
"""

from __future__ import annotations

import csv
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from itertools import islice
from typing import IO, Any
from urllib.parse import quote

import xlsxwriter
from django.conf import settings
from django.http import FileResponse, StreamingHttpResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from analytics.models import Breakdown
from analytics.reports import FIGURES, STAFF_FIGURES, ReportResult
from analytics.reports.staff import StaffReportResult

CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
BOM = "\ufeff"
# Rows per progress report and per streamed CSV chunk: a 100,000-row job updates its row 20
# times; a CSV chunk of 5,000 report rows is about 1 MB.
CHUNK_ROWS = 5000
# Excel, LibreOffice and WPS run a text cell starting with one of these as a formula (CSV
# injection): such a name is written with a leading apostrophe, as OWASP advises.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

# The name column of each grouping of the channel report (the key column is its id).
GROUP_LABELS = {
    "channel": gettext_lazy("channel"),
    "live_code": gettext_lazy("live code"),
    "staff": gettext_lazy("staff member"),
    "channel_type": gettext_lazy("channel type"),
    **dict(Breakdown.choices),  # utm_source, utm_medium, utm_campaign, device, add_way
}
# report -> (title, shown in the file name and as the sheet name; ASCII file name fallback)
REPORTS = {
    "channels": (gettext_lazy("channel report"), "channel-report"),
    "daily": (gettext_lazy("daily trend"), "daily-trend"),
    "staff": (gettext_lazy("staff report"), "staff-report"),
}


@dataclass(frozen=True)
class Column:
    name: str  # the row's key
    label: Any  # a (lazy) translatable header
    kind: str  # "key", "text", "day", "count", "money", "rate", "minutes" or "flag"


@dataclass(frozen=True)
class Table:
    title: str  # translated: the file name's first part and the sheet's name
    columns: tuple[Column, ...]
    rows: Iterable[dict[str, Any]]  # read once, in order
    totals: dict[str, Any] | None = None  # written last, labelled "Total"

    @property
    def total_label(self) -> str:
        return _("Total")


def figure_columns() -> tuple[Column, ...]:
    return tuple(Column(name, label, kind) for name, label, kind in FIGURES)


def report_columns(report: str, group_by: str = "channel") -> tuple[Column, ...]:
    """The daily trend: the day, then the figures; the channel report: the group's id and
    name, then the figures."""
    if report == "daily":
        return (Column("key", gettext_lazy("day"), "day"), *figure_columns())
    if report == "staff":
        return (
            Column("key", gettext_lazy("ID"), "key"),
            Column("name", GROUP_LABELS["staff"], "text"),
            *figure_columns(),
            *(Column(name, label, kind) for name, label, kind in STAFF_FIGURES),
        )
    return (
        Column("key", gettext_lazy("ID"), "key"),
        Column("name", GROUP_LABELS[group_by], "text"),
        *figure_columns(),
    )


def report_kind(result: ReportResult) -> str:
    """Which report made `result`: the daily trend's rows are keyed by day (one per day)."""
    if isinstance(result, StaffReportResult):
        return "staff"
    return "daily" if result.rows and isinstance(result.rows[0]["key"], date) else "channels"


def report_table(result: ReportResult, report: str | None = None) -> Table:
    report = report or report_kind(result)
    return Table(
        title=str(REPORTS[report][0]),
        columns=report_columns(report, result.params.group_by),
        rows=result.rows,
        totals=result.totals,
    )


def export_filename(table: Table, corp_id: str, first: date, last: date, fmt: str) -> str:
    """渠道报表_<corp>_<from>_<to>.xlsx (the title in the active language)."""
    return f"{table.title.replace(' ', '-')}_{corp_id}_{first}_{last}.{fmt}"


def content_disposition(filename: str, fallback: str) -> str:
    """An attachment named `filename` (RFC 5987 filename*, for the Chinese title), with an
    ASCII `fallback` for clients that only read filename=."""
    ascii_name = re.sub(r"[^A-Za-z0-9._-]", "_", fallback)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


# -- CSV ---------------------------------------------------------------------------------------


class _Line:
    """csv.writer's file: hands back the line it was given instead of storing it."""

    def write(self, text: str) -> str:
        return text


def _csv_cell(column: Column, value: Any) -> Any:
    if value is None:
        return ""
    if column.kind == "money":
        return f"{Decimal(value):.2f}"
    if column.kind in ("rate", "minutes"):
        return str(value)  # as the JSON API writes it: 0.2002
    if column.kind == "flag":
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _table_cells(table: Table) -> Iterator[tuple[dict[str, Any], bool]]:
    """(row, is_totals) for every row, then the totals row, "Total" in its name column (or,
    without one, its first)."""
    for row in table.rows:
        yield row, False
    if table.totals is not None:
        first = table.columns[0].name
        label_at = "name" if any(c.name == "name" for c in table.columns) else first
        yield {**table.totals, first: None, label_at: table.total_label}, True


def csv_chunks(table: Table, progress: Callable[[int], None] | None = None) -> Iterator[str]:
    """The table as CSV text in chunks of CHUNK_ROWS lines, the BOM first; `progress` is
    called with the number of rows written after each chunk."""
    writer = csv.writer(_Line())
    columns = table.columns
    header = writer.writerow([str(column.label) for column in columns])
    cells = _table_cells(table)
    written = 0
    chunk: list[str] = [BOM, header]
    while True:
        lines = [
            writer.writerow([_csv_cell(c, row.get(c.name)) for c in columns])
            for row, _totals in islice(cells, CHUNK_ROWS)
        ]
        if not lines:
            break
        written += len(lines)
        chunk.extend(lines)
        yield "".join(chunk)
        chunk = []
        if progress is not None:
            progress(written)
    if chunk:  # no rows at all: the header alone
        yield "".join(chunk)


def csv_write(table: Table, out: IO[bytes], progress: Callable[[int], None] | None = None) -> None:
    for text in csv_chunks(table, progress):
        out.write(text.encode("utf-8"))


# -- XLSX --------------------------------------------------------------------------------------


def xlsx_write(
    table: Table, out: IO[bytes] | str, progress: Callable[[int], None] | None = None
) -> int:
    """Write the table as one sheet to `out` (a path or a seekable binary file); returns the
    rows written, totals included. constant_memory: each row goes to a temporary file as it
    is written, so memory stays flat whatever the number of rows (rows must come in order,
    which they do)."""
    workbook = xlsxwriter.Workbook(
        out,
        {
            "constant_memory": True,
            # Names are text, never formulas or links, whatever they start with.
            "strings_to_formulas": False,
            "strings_to_urls": False,
            "strings_to_numbers": False,
        },
    )
    bold = {"bold": True}
    formats = {
        "header": workbook.add_format({**bold, "bg_color": "#F2F2F2", "bottom": 1}),
        "money": workbook.add_format({"num_format": "0.00"}),
        "rate": workbook.add_format({"num_format": "0.00%"}),
        "day": workbook.add_format({"num_format": "yyyy-mm-dd"}),
        "minutes": workbook.add_format({"num_format": "0.0"}),
        "flag": None,
        "count": None,
        "key": None,
        "text": None,
    }
    totals_formats = {
        kind: workbook.add_format({**bold, **({"num_format": fmt.num_format} if fmt else {})})
        for kind, fmt in formats.items()
        if kind != "header"
    }
    sheet = workbook.add_worksheet(_sheet_name(table.title))
    columns = table.columns
    for index, column in enumerate(columns):
        sheet.set_column(index, index, 24 if column.kind == "text" else 12)
    sheet.freeze_panes(1, 0)
    for index, column in enumerate(columns):
        sheet.write_string(0, index, str(column.label), formats["header"])
    plans = [_xlsx_plan(sheet, column, formats, totals_formats) for column in columns]
    write_any = _method(sheet, "write")
    written = 0
    for row, is_totals in _table_cells(table):
        written += 1
        for index, (name, write, convert, fmt, totals_fmt) in enumerate(plans):
            value = row.get(name)
            if value is None:
                continue  # an empty cell
            if is_totals:
                # "Total" may stand in a day column: written as text, whatever the column.
                write_any(written, index, value, totals_fmt)
            else:
                write(written, index, value if convert is None else convert(value), fmt)
        if progress is not None and written % CHUNK_ROWS == 0:
            progress(written)
    if progress is not None and written % CHUNK_ROWS:
        progress(written)
    workbook.close()
    return written


def _xlsx_plan(sheet: Any, column: Column, formats: dict, totals_formats: dict) -> tuple:
    """(row key, sheet method, conversion, format, totals row's format) of a column: the inner
    loop runs 2 million times for 100,000 rows, so the choices are made once per column."""
    kind = column.kind
    fmt, totals_fmt = formats[kind], totals_formats[kind]
    if kind in ("money", "rate", "minutes"):  # Decimal -> float
        return column.name, _method(sheet, "write_number"), float, fmt, totals_fmt
    if kind == "count":
        return column.name, _method(sheet, "write_number"), None, fmt, totals_fmt
    if kind == "day":
        return column.name, _method(sheet, "write_datetime"), None, fmt, totals_fmt
    if kind == "flag":
        return column.name, _method(sheet, "write_boolean"), None, fmt, totals_fmt
    if kind == "key":  # an id, a channel type or a text: by the value's type
        return column.name, _method(sheet, "write"), None, fmt, totals_fmt
    return column.name, _method(sheet, "write_string"), str, fmt, totals_fmt


def _method(sheet: Any, name: str) -> Callable:
    """XlsxWriter's write_* methods go through a decorator that also takes "A1" references
    (an int() attempt per cell); each has an undecorated twin, _write_*, with the same
    arguments, used when there (XlsxWriter is pinned; the tests read the files back). It
    saves about a tenth of a 100,000-row export's time."""
    return getattr(sheet, f"_{name}", None) or getattr(sheet, name)


def _sheet_name(title: str) -> str:
    # Excel: at most 31 characters, none of []:*?/\
    return re.sub(r"[\[\]:*?/\\]", " ", title)[:31] or "Sheet1"


# -- responses ---------------------------------------------------------------------------------


def table_response(table: Table, fmt: str, filename: str, fallback: str) -> StreamingHttpResponse:
    """The table as a streamed download: CSV straight from the rows (StreamingHttpResponse),
    XLSX written to an anonymous temporary file first (a zip needs its central directory at
    the end) and streamed from it (FileResponse; the file goes when the response closes)."""
    if fmt == "csv":
        response = StreamingHttpResponse(
            (text.encode("utf-8") for text in csv_chunks(table)), content_type=CONTENT_TYPES[fmt]
        )
    elif fmt == "xlsx":
        spool = tempfile.TemporaryFile(dir=settings.FILE_UPLOAD_TEMP_DIR)  # noqa: SIM115
        try:
            xlsx_write(table, spool)
        except BaseException:
            spool.close()
            raise
        spool.seek(0)
        response = FileResponse(spool, content_type=CONTENT_TYPES[fmt])
    else:
        raise ValueError(f"unknown export format: {fmt}")
    response["Content-Disposition"] = content_disposition(filename, fallback)
    response["Cache-Control"] = "private, no-store"  # a corp's figures: never in a shared cache
    return response


def ascii_filename(report: str, corp_id: str, first: Any, last: Any, fmt: str) -> str:
    """channel-report_<corp>_<from>_<to>.csv: for clients that cannot read filename*."""
    return f"{REPORTS[report][1]}_{corp_id}_{first}_{last}.{fmt}"


def report_export_parts(
    result: ReportResult, fmt: str, report: str | None = None
) -> tuple[Table, str, str]:
    """The result's table, its file name and the ASCII fallback name."""
    report = report or report_kind(result)
    table = report_table(result, report)
    params = result.params
    corp_id = params.corp.corp_id
    return (
        table,
        export_filename(table, corp_id, params.first, params.last, fmt),
        ascii_filename(report, corp_id, params.first, params.last, fmt),
    )


def report_export_response(
    result: ReportResult, fmt: str, report: str | None = None
) -> StreamingHttpResponse:
    """A report result as a CSV or XLSX download, whatever its size (the caller decides
    whether a large one goes to a background job: export_jobs.export_job_needed). `report`
    ("channels" or "daily") is read from the result when not given."""
    table, filename, fallback = report_export_parts(result, fmt, report)
    return table_response(table, fmt, filename, fallback)


# -- cohort matrices ---------------------------------------------------------------------------

COHORT_TITLE = (gettext_lazy("cohort report"), "cohort-report")
COHORT_GROUP_LABELS = {**GROUP_LABELS, "none": gettext_lazy("cohort")}


def cohort_table(result: Any) -> Table:
    """A cohort matrix (analytics.reports.cohorts.CohortResult) as a table: the cohort's first
    day, its channel, code or staff member (unless by=none), its size, then one column per
    age (its number: periods since the first add); the totals over the mature cohorts last."""
    params = result.params
    kind = "money" if params.metric == "revenue" else "rate"
    columns = [Column("cohort", gettext_lazy("cohort"), "day")]
    if params.by != "none":
        columns.append(Column("name", COHORT_GROUP_LABELS[params.by], "text"))
    columns.append(Column("size", gettext_lazy("new customers"), "count"))
    columns += [Column(f"age_{age}", str(age), kind) for age in result.columns]

    def flat(row: dict[str, Any]) -> dict[str, Any]:
        cells = {f"age_{age}": cell for age, cell in zip(result.columns, row["cells"], strict=True)}
        return {"cohort": row.get("cohort"), "name": row.get("name"), "size": row["size"], **cells}

    return Table(
        title=str(COHORT_TITLE[0]),
        columns=tuple(columns),
        rows=(flat(row) for row in result.rows),
        totals=flat(result.totals),
    )


def cohort_export_response(result: Any, fmt: str) -> StreamingHttpResponse:
    """The cohort matrix as a CSV or XLSX download. A matrix is at most a few thousand rows
    unless split by live code or staff over many days: past REPORT_EXPORT_SYNC_MAX_ROWS it is
    refused with the reason (ReportError) rather than written inside the request."""
    from analytics.reports.base import ReportError

    if len(result.rows) > settings.REPORT_EXPORT_SYNC_MAX_ROWS:
        raise ReportError(
            _("Too many cohort rows to export at once: choose weeks or months, or a channel.")
        )
    table = cohort_table(result)
    params = result.params
    corp_id = params.corp.corp_id
    filename = export_filename(table, corp_id, params.first, params.last, fmt)
    fallback = f"{COHORT_TITLE[1]}_{corp_id}_{params.first}_{params.last}.{fmt}"
    return table_response(table, fmt, filename, fallback)
