"""Cohort matrices (analytics.reports.cohorts): they sum back to the channel report (new
customers, revenue per window), cells are null until mature, weeks and months are the corp's
own, each metric and each split; and the API's answers, its refusals and its query count."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from analytics.reports import ChannelReport, ReportParams
from analytics.reports.cohorts import CohortParams, CohortReport
from analytics.rollups import rollups_rebuild
from scrm.wecom.services import corp_create
from tests.analytics.test_reports import CST, _add, _at, _codes, _convert, _end, _slot
from tests.tenancy import member

pytestmark = pytest.mark.django_db

FIRST, LAST = dt.date(2026, 10, 1), dt.date(2026, 10, 31)
LATE = dt.datetime(2026, 12, 15, 12, tzinfo=CST)  # every October cohort is 30 days old


def _rebuild(corp, now: dt.datetime = LATE) -> None:
    rollups_rebuild(corp=corp, first=dt.date(2026, 9, 25), last=dt.date(2026, 12, 14), now=now)


@pytest.fixture
def october(corp):
    """Re-adds, deletions, removals, a second relation, refunds of either sign, orders at the
    windows' exact ends, an order before the first add, and a late conversion."""
    codes = _codes(corp)
    pyq, xhs = codes["pyq"].state, _slot(codes["xhs"], "staff02").state
    _add(corp, "wm-a", "staff01", pyq, _at(2))
    _convert(corp, "wm-a", "order", _at(4), "620.50")
    _convert(corp, "wm-a", "order", _at(20), "100")  # day 18: window 30 only
    _convert(corp, "wm-a", "refund", _at(25), "50")  # positive refund: still -50
    _add(corp, "wm-b", "staff02", pyq, _at(3, 9))
    _end(corp, "wm-b", "staff02", "deleted_by_customer", _at(10))
    _add(corp, "wm-b", "staff02", pyq, _at(12))  # re-add of the same relation
    _convert(corp, "wm-b", "order", _at(13), "80")
    _add(corp, "wm-c", "staff03", xhs, _at(5))
    _end(corp, "wm-c", "staff03", "deleted_by_staff", _at(40))
    _convert(corp, "wm-c", "refund", _at(6), "-30")  # negative refund: -30
    _add(corp, "wm-d", "staff02", xhs, _at(15, 8))
    _add(corp, "wm-d", "staff01", pyq, _at(16))  # a second relation: first touch stays xhs
    _convert(corp, "wm-d", "order", _at(22, 8), "70")  # exactly 7 days: not in window 7
    _convert(corp, "wm-d", "order", _at(45, 8), "999")  # exactly 30 days: not in window 30
    _convert(corp, "wm-d", "order", _at(14), "5")  # before the first add: never counted
    _add(corp, "wm-e", "staff01", pyq, _at(0))  # September: outside the period
    _convert(corp, "wm-e", "order", _at(3), "1000")
    _add(corp, "wm-f", "staff03", pyq, _at(31, 23))
    _end(corp, "wm-f", "staff03", "deleted_by_customer", _at(33))
    _rebuild(corp)
    # Days later an order dated inside wm-f's window arrives; the next rebuild takes it in.
    _convert(corp, "wm-f", "order", _at(32), "42")
    _rebuild(corp)
    return codes


def _channel_report(corp, group_by: str, window: int):
    params = ReportParams(corp=corp, first=FIRST, last=LAST, window=window, group_by=group_by)
    return ChannelReport(params).calculate()


def _matrix(corp, now: dt.datetime = LATE, **params):
    values = {"first": FIRST, "last": LAST, **params}
    return CohortReport(CohortParams(corp=corp, **values), now=now).calculate()


@pytest.mark.parametrize("by", ["none", "channel", "live_code", "staff"])
def test_cohorts_sum_back_to_the_channel_reports_new_customers_and_revenue(corp, october, by):
    matrix = _matrix(corp, period="day", metric="revenue", by=by)
    assert len(matrix.columns) >= 30
    for window in (7, 15, 30):
        report = _channel_report(corp, "channel" if by == "none" else by, window)
        expected = {row["key"]: row for row in report.rows}
        sizes: dict = {}
        revenue: dict = {}
        for row in matrix.rows:
            key = None if by == "none" else row["key"]
            sizes[key] = sizes.get(key, 0) + row["size"]
            revenue[key] = revenue.get(key, Decimal(0)) + row["counts"][window - 1]
            # The cell is the revenue per customer: times the size, the revenue to a cent.
            assert abs(row["cells"][window - 1] * row["size"] - row["counts"][window - 1]) <= (
                Decimal("0.005") * row["size"]
            )
        if by == "none":
            assert sizes == {None: report.totals["new_customers"]}
            assert revenue == {None: report.totals["revenue"]}
        else:
            assert sizes == {key: row["new_customers"] for key, row in expected.items()}
            assert revenue == {key: row["revenue"] for key, row in expected.items()}
    # The figures themselves: 620.50 - 30 + 42 in 7 days; + 80 + 70 within 15; + 100 - 50 in 30.
    total = {w: sum(row["counts"][w - 1] for row in matrix.rows) for w in (7, 15, 30)}
    assert total == {7: Decimal("632.50"), 15: Decimal("782.50"), 30: Decimal("832.50")}
    assert sum(row["size"] for row in matrix.rows) == 5


def test_sizes_sum_back_by_week_and_month_too(corp, october):
    new_customers = _channel_report(corp, "channel", 30).totals["new_customers"]
    for period in ("week", "month"):
        for metric in ("retention", "revenue", "buyers"):
            matrix = _matrix(corp, period=period, metric=metric, by="channel")
            assert sum(row["size"] for row in matrix.rows) == new_customers == 5
    # Column 0 by week is the 7-day window, by month the 30-day one.
    week = _matrix(corp, period="week", metric="revenue")
    month = _matrix(corp, period="month", metric="revenue")
    assert sum(row["counts"][0] for row in week.rows) == Decimal("632.50")
    assert sum(row["counts"][0] for row in month.rows) == Decimal("832.50")


def test_cells_are_null_until_every_customer_of_the_cohort_reached_the_age(corp, october):
    now = dt.datetime(2026, 11, 20, 12, tzinfo=CST)
    matrix = _matrix(corp, now=now, period="day", metric="retention")
    by_day = {row["cohort"]: row for row in matrix.rows}
    # 2026-10-31 23:00: one day of age is over at 11-01 23:00, ..., 19 days at 11-19 23:00.
    last = by_day[dt.date(2026, 10, 31)]
    mature = [cell is not None for cell in last["cells"]]
    assert mature[:19] == [True] * 19
    assert not any(mature[19:])
    # 10-15 08:00 (wm-d): 36 days mature by 11-20 12:00.
    fifteenth = by_day[dt.date(2026, 10, 15)]["cells"]
    assert fifteenth[35] is not None
    assert fifteenth[36] is None
    # A month cohort waits for its last customer: October's first age ends 11-30 23:00.
    month = _matrix(corp, now=now, period="month", metric="retention")
    assert month.rows[0]["cells"][0] is None
    assert month.totals["cells"][0] is None


def test_retention_counts_customers_still_customers_at_each_age(corp, october):
    matrix = _matrix(corp, period="day", metric="retention")
    by_day = {row["cohort"]: row for row in matrix.rows}
    # wm-b left on day 10 and came back on day 12: a customer throughout (see the docstring).
    assert by_day[dt.date(2026, 10, 3)]["cells"][:10] == [Decimal(1)] * 10
    # wm-c removed on 11-09 10:00, exactly 35 days after its add: still one after 34 days.
    wm_c = by_day[dt.date(2026, 10, 5)]
    assert wm_c["cells"][33] == Decimal(1)
    assert wm_c["cells"][34] == Decimal(0)
    assert wm_c["counts"][34] == 0
    # wm-f deleted after 1 day 11 hours: still one at the end of day 0, not of day 1.
    wm_f = by_day[dt.date(2026, 10, 31)]
    assert (wm_f["cells"][0], wm_f["cells"][1]) == (Decimal(1), Decimal(0))
    # The 30-day column lines up with the channel report's retention for these customers.
    report = _channel_report(corp, "channel", 30)
    retained = sum(row["counts"][29] for row in matrix.rows)
    assert report.totals["retained_30d_rate"] == Decimal(retained) / 5


def test_buyers_and_revenue_cumulate(corp, october):
    buyers = _matrix(corp, period="week", metric="buyers")
    weeks = {row["cohort"]: row for row in buyers.rows}
    # Week of 09-28 (days 1-4 in the period): wm-a and wm-b; both bought within 7 days of
    # their own add (wm-b on day 13 is 10 days: the second week).
    first = weeks[dt.date(2026, 9, 28)]
    assert (first["first"], first["last"], first["size"]) == (FIRST, dt.date(2026, 10, 4), 2)
    assert first["cells"][:3] == [Decimal("0.5"), Decimal(1), Decimal(1)]
    revenue = _matrix(corp, period="week", metric="revenue")
    week = {row["cohort"]: row for row in revenue.rows}[dt.date(2026, 9, 28)]
    assert week["counts"][:3] == [Decimal("620.50"), Decimal("700.50"), Decimal("800.50")]
    assert week["cells"][:3] == [Decimal("310.25"), Decimal("350.25"), Decimal("400.25")]
    assert week["counts"][3] == Decimal("750.50")  # the refund on day 23
    # Totals: over the cohorts mature at each age, weighted by size.
    assert revenue.totals["size"] == 5
    assert revenue.totals["counts"][0] == Decimal("632.50")


def test_weeks_and_months_are_the_corps_own(db):
    """A corp in New York: a Saturday-night add there is already Sunday in Shanghai and UTC;
    an add on the last evening of October is November elsewhere."""
    corp = corp_create(corp_id="wwnewyork", name="NY", secret="s", agent_id="1",
                       callback_token="t", encoding_aes_key="k" * 43)  # fmt: skip
    corp.time_zone = "America/New_York"
    corp.save(update_fields=["time_zone"])
    ny = ZoneInfo("America/New_York")
    codes = _codes(corp)
    state = codes["pyq"].state
    _add(corp, "wm-sun", "staff01", state, dt.datetime(2026, 11, 1, 22, tzinfo=ny))  # Sunday
    _add(corp, "wm-mon", "staff01", state, dt.datetime(2026, 11, 2, 1, tzinfo=ny))  # Monday
    _add(corp, "wm-oct", "staff01", state, dt.datetime(2026, 10, 31, 21, tzinfo=ny))
    now = dt.datetime(2027, 3, 1, tzinfo=ny)
    rollups_rebuild(corp=corp, first=dt.date(2026, 10, 25), last=dt.date(2026, 11, 10), now=now)
    params = {"first": dt.date(2026, 10, 1), "last": dt.date(2026, 11, 30)}
    weeks = CohortReport(CohortParams(corp=corp, period="week", **params), now=now).calculate()
    assert [(row["cohort"], row["size"]) for row in weeks.rows] == [
        (dt.date(2026, 10, 26), 2), (dt.date(2026, 11, 2), 1),
    ]  # fmt: skip
    months = CohortReport(CohortParams(corp=corp, period="month", **params), now=now).calculate()
    assert [(row["cohort"], row["size"]) for row in months.rows] == [
        (dt.date(2026, 10, 1), 1), (dt.date(2026, 11, 1), 2),
    ]  # fmt: skip
    assert months.rows[0]["last"] == dt.date(2026, 10, 31)


# -- the API -----------------------------------------------------------------------------------

URL = "/api/v1/reports/cohorts/"


@pytest.fixture
def api(admin_user) -> APIClient:
    client = APIClient()
    client.force_authenticate(admin_user)
    return client


def _query(corp, **extra) -> dict:
    return {"corp": corp.corp_id, "from": "2026-10-01", "to": "2026-10-31", **extra}


def test_the_api_answers_the_matrix(api, corp, october):
    response = api.get(URL, _query(corp, period="week", metric="revenue", by="channel"))
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["period"], body["metric"], body["by"]) == ("week", "revenue", "channel")
    assert body["columns"][:3] == [0, 1, 2]
    assert {row["name"] for row in body["rows"]} == {"pyq", "xhs"}
    row = body["rows"][0]
    assert set(row) == {"cohort", "first", "last", "key", "name", "size", "cells", "counts"}
    assert isinstance(row["cells"][0], str)  # money as a decimal string
    assert len(row["cells"]) == len(body["columns"])
    assert None in body["rows"][-1]["cells"]  # the last cohort's latest ages: not mature
    rates = api.get(URL, _query(corp, metric="retention")).json()
    assert isinstance(rates["rows"][0]["cells"][0], float)
    assert (rates["period"], rates["by"]) == ("month", "none")  # the defaults


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"period": "year"}, "period"),
        ({"metric": "profit"}, "metric"),
        ({"by": "device"}, "by"),
        ({"window": "30"}, "unknown_parameters"),  # the channel report's, not this one's
        ({"from": "2026-10-31", "to": "2026-10-01"}, "detail"),
        ({"from": "2025-01-01", "to": "2026-10-31", "period": "day"}, "detail"),
        ({"from": "nope"}, "from"),
        ({"channel": "999999"}, "channel"),
        ({"format": "pdf"}, "format"),
    ],
)
def test_bad_parameters_are_a_400_with_a_reason(api, corp, october, extra, field):
    response = api.get(URL, _query(corp, **extra))
    assert response.status_code == 400, response.content
    assert field in response.json()


def test_another_corps_cohorts_read_as_an_unknown_corp(corp, october, django_user_model):
    other = corp_create(corp_id="wwother", name="Other", secret="s", agent_id="1",
                        callback_token="t", encoding_aes_key="k" * 43)  # fmt: skip
    user = member(django_user_model.objects.create_user(username="ops-b"), other)
    client = APIClient()
    client.force_authenticate(user)
    refused = client.get(URL, _query(corp))
    unknown = client.get(URL, {**_query(corp), "corp": "wwnosuchcorp"})
    assert refused.status_code == unknown.status_code == 400
    assert refused.json() == {
        key: [text.replace("wwnosuchcorp", corp.corp_id) for text in value]
        for key, value in unknown.json().items()
    }
    assert client.get(URL, _query(other)).status_code == 200


def test_the_matrix_exports_as_csv_and_xlsx(api, corp, october):
    response = api.get(URL, _query(corp, period="week", metric="buyers", format="csv"))
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    lines = list(csv.reader(io.StringIO(text)))
    assert lines[0][:3] == [lines[0][0], lines[0][1], "0"]
    assert lines[1][:5] == ["2026-09-28", "2", "0.5000", "1.0000", "1.0000"]
    assert lines[-1][1] == "5"  # the totals: every new customer
    xlsx = api.get(URL, _query(corp, format="xlsx", by="staff"))
    assert xlsx.status_code == 200
    assert xlsx["Content-Type"].startswith("application/vnd.openxmlformats")


def _queries(client, corp, **extra) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(URL, _query(corp, **extra)).status_code == 200
    return len(queries)


@pytest.mark.parametrize("metric", ["retention", "revenue", "buyers"])
def test_the_query_count_does_not_grow_with_the_data(api, corp, metric):
    state = _codes(corp)["pyq"].state
    _add(corp, "wm-q", "staff01", state, _at(1))
    _rebuild(corp)
    few = _queries(api, corp, metric=metric, by="staff", period="day")
    for index in range(12):
        at = _at(2 + index * 2)
        _add(corp, f"wm-q{index}", f"staff{index:02d}", state, at)
        _convert(corp, f"wm-q{index}", "order", at + dt.timedelta(hours=1), "10")
        _end(
            corp,
            f"wm-q{index}",
            f"staff{index:02d}",
            "deleted_by_customer",
            at + dt.timedelta(days=index),
        )
    _rebuild(corp)
    many = _queries(api, corp, metric=metric, by="staff", period="day")
    assert many == few <= 8


# -- the page ----------------------------------------------------------------------------------

PAGE = "/reports/cohorts/"


def _page_query(corp, **extra) -> dict:
    return {"corp": corp.corp_id, "from": "2026-10-01", "to": "2026-10-31", **extra}


def test_the_page_shows_the_heatmap_data_and_the_table(admin_client, corp, october):
    response = admin_client.get(PAGE, _page_query(corp, cohort_period="week", metric="buyers"))
    assert response.status_code == 200
    heatmap = response.context["heatmap"]
    assert heatmap["kind"] == "rate"
    assert len(heatmap["rows"]) == 4  # the weeks of 09-28, 10-05, 10-12 and 10-26 (none on 10-19)
    assert heatmap["pending"]  # the last weeks' latest ages are not mature as of today
    assert len(heatmap["cells"]) + len(heatmap["pending"]) == 4 * len(heatmap["columns"])
    html = response.content.decode()
    assert 'id="cohort-chart"' in html
    assert "data-immature" in html
    assert 'data-export="csv"' in html
    assert "/reports/cohorts/" in html  # the tab, among the report pages'
    # Its tabs lead to the other report pages with the same corp and period (a year by
    # default), and theirs lead here.
    for tab in admin_client.get(PAGE, {"corp": corp.corp_id}).context["tabs"]:
        assert admin_client.get(tab["url"]).status_code == 200, tab["url"]
    assert PAGE in admin_client.get("/reports/", {"corp": corp.corp_id}).content.decode()


def test_the_page_refuses_bad_filters_with_a_reason(admin_client, corp, october):
    bad = admin_client.get(PAGE, _page_query(corp, metric="profit"))
    assert bad.status_code == 400
    assert bad.context["form"].errors["metric"]
    reversed_ = admin_client.get(
        PAGE, _page_query(corp, **{"from": "2026-10-31", "to": "2026-10-01"})
    )
    assert reversed_.status_code == 400


def test_the_page_reads_in_a_fixed_number_of_queries(admin_client, corp, october):
    with CaptureQueriesContext(connection) as few:
        admin_client.get(PAGE, _page_query(corp, by="channel", metric="revenue"))
    _add(corp, "wm-more", "staff09", october["pyq"].state, _at(9))
    _convert(corp, "wm-more", "order", _at(10), "1")
    _rebuild(corp)
    with CaptureQueriesContext(connection) as many:
        admin_client.get(PAGE, _page_query(corp, by="channel", metric="revenue"))
    assert len(many) == len(few)


def test_the_definitions_are_the_cohort_docstring_word_for_word():
    from django.utils import translation

    from analytics.definitions import COHORT_DEFINITIONS
    from analytics.reports import cohorts

    items: list[str] = []
    for line in (cohorts.__doc__ or "").split("\n\n", 1)[1].splitlines():
        if line.startswith("- "):
            items.append(line[2:].strip())
        elif line.strip():
            items[-1] += " " + line.strip()
    with translation.override("en"):
        assert [str(definition) for definition in COHORT_DEFINITIONS] == items
