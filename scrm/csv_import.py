"""CSV imports: one way to read an operator's upload and to say what is wrong with it, by row.

Every CSV import (live codes, channel costs, conversions) reads its file with csv_table_read
and reports problems as RowError (row, column, message); each import decides what to write
(all of it or nothing, today, for all three).

- Decoding as operators in China save files: Excel on Chinese Windows saves "CSV" as GBK
  unless "CSV UTF-8" is chosen (gb18030 is GBK's superset) and "Unicode text" as UTF-16 with
  tabs; a workbook uploaded by mistake is named as such, not read as mojibake.
- The first non-blank row names the columns, by key or Chinese label, in any order; the
  delimiter is the one that makes that row make sense; blank rows are skipped; rows are
  numbered as Excel shows them (the header is row 1). At most MAX_BYTES and `max_rows`.
- A lenient table ignores columns it does not know (operators keep notes beside the data);
  a strict one (files exported by other systems) refuses them, and rows longer than the header.
- Whole-file problems have row None; column "" means no one column (the row or the file).
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.utils.translation import gettext as _

# A few thousand rows of a few hundred bytes each; the cap keeps a wrong upload (a video, a
# database dump) from being read into memory whole.
MAX_BYTES = 5 * 1024 * 1024
ENCODINGS = ("utf-8-sig", "gb18030")
DELIMITERS = (",", "\t", ";")
NON_FIELD = "non_field_errors"  # the API's name for "no one field", as DRF's


@dataclass(frozen=True)
class RowError:
    """One problem: `row` as the operator counts rows (a CSV file's row number, or a JSON
    list's 0-based index), None for the file or request as a whole; `column` the column or
    field at fault, "" for no one column."""

    row: int | None
    column: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        """The API's shape: {"row", "field", "message"}, field non_field_errors for no column."""
        return {"row": self.row, "field": self.column or NON_FIELD, "message": self.message}


class ImportRejected(Exception):
    """Nothing was imported; `errors` says why, in the order found."""

    def __init__(self, errors: Iterable[RowError]) -> None:
        self.errors = list(errors)
        more = f" (and {len(self.errors) - 3} more)" if len(self.errors) > 3 else ""
        super().__init__("; ".join(error.message for error in self.errors[:3]) + more)

    def as_list(self) -> list[dict[str, Any]]:
        return [error.as_dict() for error in self.errors]


class CsvFileError(ImportRejected):
    """The file as a whole cannot be read as the table asked for; every error has row None.
    `message` is the first one, for pages that show a single line."""

    def __init__(self, problem: str | Iterable[RowError]) -> None:
        super().__init__([RowError(None, "", problem)] if isinstance(problem, str) else problem)
        self.message = self.errors[0].message


@dataclass(frozen=True)
class Column:
    key: str  # the English header, also the name used in code
    zh: str = ""  # the Chinese header, where there is one
    required: bool = False

    @property
    def label(self) -> str:
        return f"{self.zh} ({self.key})" if self.zh and self.zh != self.key else self.key

    def matches(self, header: str) -> bool:
        text = header.strip().lstrip("\ufeff").strip()
        return text == self.zh or text.lower().replace(" ", "_") == self.key


@dataclass(frozen=True)
class Table:
    rows: list[tuple[int, dict[str, str]]]  # (row number, {column key: the stripped cell})
    headers: dict[str, str]  # column key -> the header as written in the file

    def header(self, key: str) -> str:
        return self.headers.get(key, key)


def csv_template(columns: Iterable[Column]) -> str:
    """A header row operators can fill in (Chinese headers where there are; keys work too)."""
    return ",".join(column.zh or column.key for column in columns) + "\r\n"


def csv_text_decode(raw: bytes) -> str:
    """The file's text; CsvFileError with a message for the operator when it is not text."""
    if not raw.strip():
        raise CsvFileError(_("The file is empty."))
    if raw.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):
        raise CsvFileError(
            _("This is an Excel workbook, not a CSV file. In Excel use Save As, CSV UTF-8.")
        )
    utf16 = raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    if b"\x00" in raw and not utf16:
        raise CsvFileError(_("This is not a text CSV file."))
    for encoding in ("utf-16",) if utf16 else ENCODINGS:
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise CsvFileError(_("The file is neither UTF-8 nor GBK text. Save it as CSV UTF-8."))


def _blank(record: Sequence[str]) -> bool:
    return not any(cell.strip() for cell in record)  # also Excel's trailing ",,,,"


def _records(text: str, columns: Sequence[Column]) -> list[list[str]]:
    """The file's rows, split by the delimiter under which its first row names most columns."""
    first = next((line for line in text.splitlines() if line.strip()), "")

    def known(delimiter: str) -> int:
        cells = next(csv.reader([first], delimiter=delimiter), [])
        return sum(1 for cell in cells if any(column.matches(cell) for column in columns))

    delimiter = max(DELIMITERS, key=known)
    try:
        return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as exc:
        raise CsvFileError(_("The file is not valid CSV: %(error)s") % {"error": exc}) from exc


def _header(record: list[str], columns: Sequence[Column], strict: bool) -> dict[str, int]:
    """{column key: position} of the header row; CsvFileError listing every problem."""
    positions: dict[str, int] = {}
    errors: list[RowError] = []
    for position, cell in enumerate(record):
        column = next((c for c in columns if c.matches(cell)), None)
        if column is None:
            if strict:
                errors.append(RowError(None, cell.strip() or "?", _("Unknown column.")))
        elif column.key in positions:
            message = _("The column %(column)s appears twice.") % {"column": cell.strip()}
            errors.append(RowError(None, "", message))
        else:
            positions[column.key] = position
    missing = [column for column in columns if column.required and column.key not in positions]
    if strict:
        errors += [RowError(None, column.label, _("Missing column.")) for column in missing]
    elif missing:
        message = _("Missing columns: %(columns)s. The first row must name the columns.")
        labels = ", ".join(column.label for column in missing)
        errors.append(RowError(None, "", message % {"columns": labels}))
    if errors:
        raise CsvFileError(errors)
    return positions


def csv_table_read(
    file: IO[bytes] | bytes,
    *,
    columns: Sequence[Column],
    max_rows: int,
    strict: bool = False,
) -> Table:
    """The file's data rows by column key, each cell stripped ("" for a missing cell).

    Raises CsvFileError with every problem of the header (strict: unknown and missing columns
    one by one; lenient: the missing ones in one message) or, strict, of rows longer than
    the header; or one message for a file that is too large, not text, empty, without data
    rows or with more than `max_rows`.
    """
    raw = file if isinstance(file, bytes) else file.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise CsvFileError(_("The file is larger than 5 MB."))
    records = _records(csv_text_decode(raw).lstrip("\ufeff"), columns)
    start = next((index for index, record in enumerate(records) if not _blank(record)), None)
    if start is None:
        raise CsvFileError(_("The file is empty."))
    width = len(records[start])
    positions = _header(records[start], columns, strict)
    headers = {key: records[start][p].strip().lstrip("\ufeff") for key, p in positions.items()}
    rows, errors = [], []
    for number, record in enumerate(records[start + 1 :], start=start + 2):
        if _blank(record):
            continue
        if strict and not _blank(record[width:]):
            message = _("Line %(n)d has more values than there are columns.")
            errors.append(RowError(None, "", message % {"n": number}))
        cells = {key: record[p].strip() if p < len(record) else "" for key, p in positions.items()}
        rows.append((number, cells))
    if errors:
        raise CsvFileError(errors)
    if not rows:
        raise CsvFileError(_("The file has a header row but no data rows."))
    if len(rows) > max_rows:
        raise CsvFileError(
            _("The file has %(count)d rows; at most %(max)d can be imported at once.")
            % {"count": len(rows), "max": max_rows}
        )
    return Table(rows=rows, headers=headers)


Report = Callable[[str, str], None]  # (column key, message)


def row_reporter(errors: list[RowError], number: int, table: Table | None = None) -> Report:
    """report(column key, message) for row `number`: the error names the column as the file's
    header wrote it; key "" reports the row as a whole."""

    def report(key: str, message: str) -> None:
        errors.append(RowError(number, table.header(key) if table and key else key, message))

    return report


def report_validation_error(
    report: Report, exc: ValidationError, columns: Mapping[str, str]
) -> None:
    """A model's ValidationError, each message under the column its field came from
    (`columns`: field name -> column key); other fields' messages concern the row as a whole."""
    for name, messages in exc.message_dict.items():
        column = columns.get(name, "") if name != NON_FIELD_ERRORS else ""
        for message in messages:
            report(column, message)
