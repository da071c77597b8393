"""scrm.csv_import, the reader every CSV import shares: header mapping, Excel's row numbers,
lenient and strict tables, and problems as RowError."""

from __future__ import annotations

import io

import pytest
from django.core.exceptions import ValidationError

from scrm.csv_import import (
    Column,
    CsvFileError,
    RowError,
    csv_table_read,
    report_validation_error,
    row_reporter,
)

COLUMNS = (Column("name", "名称", required=True), Column("amount", "金额"))


@pytest.fixture(autouse=True)
def _english(settings) -> None:
    settings.LANGUAGE_CODE = "en"


def _read(text: str, *, encoding: str = "utf-8", **kw):
    kw.setdefault("max_rows", 10)
    return csv_table_read(io.BytesIO(text.encode(encoding)), columns=COLUMNS, **kw)


def test_rows_by_key_numbered_as_excel_shows_them():
    table = _read("\r\n金额 , 名称,备注\r\n 12 ,甲,x\r\n,,\r\n5,乙\r\n")
    # The header is the first non-blank row (row 2 here); blank rows count but are skipped.
    assert table.rows == [(3, {"name": "甲", "amount": "12"}), (5, {"name": "乙", "amount": "5"})]
    assert (table.header("amount"), table.header("name")) == ("金额", "名称")


def test_the_delimiter_is_the_one_that_makes_the_header_make_sense():
    table = _read("name\tamount\r\n甲\t1,5\r\n", encoding="utf-16")
    assert table.rows == [(2, {"name": "甲", "amount": "1,5"})]


def test_a_lenient_table_ignores_unknown_columns_and_names_the_missing_ones_together():
    with pytest.raises(CsvFileError) as error:
        _read("金额,备注\r\n1,x\r\n")
    assert [(e.row, e.column) for e in error.value.errors] == [(None, "")]
    assert "名称 (name)" in error.value.message


def test_a_strict_table_lists_every_header_problem_and_rows_longer_than_the_header():
    with pytest.raises(CsvFileError) as error:
        _read("amount,note,extra\r\n1,x,y\r\n", strict=True)
    assert [(e.row, e.column, e.message) for e in error.value.errors] == [
        (None, "note", "Unknown column."),
        (None, "extra", "Unknown column."),
        (None, "名称 (name)", "Missing column."),
    ]
    with pytest.raises(CsvFileError) as error:
        _read("name,amount\r\n甲,1\r\n乙,2,3\r\n", strict=True)
    assert [e.message for e in error.value.errors] == [
        "Line 3 has more values than there are columns."
    ]
    assert _read("name,amount\r\n甲,1,,\r\n", strict=True).rows == [
        (2, {"name": "甲", "amount": "1"})
    ]


def test_the_row_limit_counts_data_rows():
    assert len(_read("name\r\n" + "甲\r\n" * 3, max_rows=3).rows) == 3
    with pytest.raises(CsvFileError, match="4 rows; at most 3"):
        _read("name\r\n" + "甲\r\n" * 4, max_rows=3)


def test_errors_are_reported_under_the_header_as_written_and_in_the_api_shape():
    table = _read("名称,Amount\r\n甲,x\r\n")
    errors: list[RowError] = []
    report = row_reporter(errors, 2, table)
    report("amount", "not a number")
    exc = ValidationError({"amount": ["too large"], "slug": ["taken"], "__all__": ["both"]})
    report_validation_error(report, exc, {"amount": "amount"})
    assert [(e.row, e.column, e.message) for e in errors] == [
        (2, "Amount", "not a number"),
        (2, "Amount", "too large"),
        (2, "", "taken"),
        (2, "", "both"),
    ]
    assert errors[2].as_dict() == {"row": 2, "field": "non_field_errors", "message": "taken"}
