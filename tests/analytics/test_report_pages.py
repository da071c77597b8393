"""The report pages (/reports/): behind the login, their filters checked with a message that
says why, periods in the corp's own days, the figures exactly the report classes' (formatted),
the KPI cards against the previous period, the drill-down down to the admin's customer list,
the definitions, and a fixed number of queries per page."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from decimal import Decimal
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import openpyxl
import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.contrib.staticfiles import finders
from django.utils import translation

from analytics.definitions import DEFINITIONS
from analytics.pages import KPI_FIGURES, change_percent, day_ranges, figure_display
from analytics.periods import period_dates, period_previous
from analytics.reports import FIGURES, ChannelReport, DailyReport, ReportParams
from analytics.reports import base as report_base
from analytics.rollups import rollups_rebuild
from analytics.views import ECHARTS_VERSION
from channels_app.models import Channel, ChannelCost, LiveCode
from channels_app.state import encode_state
from scrm import days
from scrm.wecom.models import Corp
from tests.analytics.test_reports import (
    FIRST,
    LAST,
    NOW,
    _add,
    _at,
    _codes,
    _convert,
    _scan,
    _slot,
)
from tests.tenancy import member

pytestmark = pytest.mark.django_db

OCTOBER = {"from": "2026-10-01", "to": "2026-10-31"}


@pytest.fixture(autouse=True)
def _chinese(settings) -> None:
    settings.LANGUAGE_CODE = "zh-hans"  # what the project ships with, whatever the developer's


@pytest.fixture
def month(corp) -> dict[str, LiveCode]:
    """Two channels in October: a Moments ad (two native codes, a cost, an order) and
    Xiaohongshu (a landing code); adds on both halves of the month."""
    codes = _codes(corp)
    poster = LiveCode.objects.create(corp=corp, channel=codes["pyq"].channel, name="pyq poster",
                                     slug="pyq-poster", mode=LiveCode.Mode.NATIVE)  # fmt: skip
    poster.state = encode_state("native", poster.pk)
    poster.save(update_fields=["state"])
    codes["poster"] = poster
    ChannelCost.objects.create(corp=corp, channel=codes["pyq"].channel, start_date=FIRST,
                               end_date=LAST, amount=Decimal("3100"))  # fmt: skip
    slot = _slot(codes["xhs"], "staff03")
    _add(corp, "wm-a", "staff01", codes["pyq"].state, _at(2))
    _add(corp, "wm-b", "staff02", codes["pyq"].state, _at(3))
    _add(corp, "wm-c", "staff02", poster.state, _at(18))
    _add(corp, "wm-d", "staff03", slot.state, _at(20))
    _add(corp, "wm-e", "staff01", codes["pyq"].state, _at(25))
    _convert(corp, "wm-a", "order", _at(4), "620.50")
    rollups_rebuild(corp=corp, first=FIRST, last=LAST, now=NOW)
    return codes


def _get(client, path: str = "/reports/", **query):
    return client.get(path, query)


# -- a small reader of the page's table and cards ------------------------------------------------


class _Page(HTMLParser):
    """The table's rows ({name, link, figures: {figure: text}}), its totals, the KPI cards
    ({figure: (value, change)}) and the page's text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.rows: list[dict] = []
        self.totals: dict[str, str] = {}
        self.kpis: dict[str, dict[str, str]] = {}
        self.text_parts: list[str] = []
        self._section = ""
        self._row: dict | None = None
        self._cell: tuple[str, str] | None = None  # (kind, figure)
        self._kpi = ""
        self._kpi_part = ""
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        if tag in ("tbody", "tfoot") and self._section != "skip":
            self._section = tag
        if tag == "tr" and self._section in ("tbody", "tfoot"):
            self._row = {"name": "", "link": "", "figures": {}}
        if self._row is not None and tag == "th":
            self._cell = ("name", "")
        if self._row is not None and tag == "td" and "data-figure" in attrs:
            self._cell = ("figure", attrs["data-figure"])
            self._row["figures"][attrs["data-figure"]] = ""
        if self._row is not None and tag == "a" and self._cell and self._cell[0] == "name":
            self._row["link"] = attrs["href"]
        classes = (attrs.get("class") or "").split()
        if "report-kpi" in classes:
            self._kpi = attrs["data-figure"]
            self.kpis[self._kpi] = {"value": "", "change": "", "previous": ""}
        for part in ("value", "change", "previous"):
            if f"report-kpi-{part}" in classes:
                self._kpi_part = part

    def handle_endtag(self, tag: str) -> None:
        if tag in ("th", "td"):
            self._cell = None
        if tag == "tr" and self._row is not None:
            if self._section == "tbody" and self._row["figures"]:
                self.rows.append(self._row)
            elif self._section == "tfoot":
                self.totals = self._row["figures"]
            self._row = None
        if tag in ("tbody", "tfoot"):
            self._section = ""
        if tag == "div" and self._kpi_part:
            self._kpi_part = ""

    def handle_data(self, data: str) -> None:
        self.text_parts.append(data)
        if self._row is not None and self._cell:
            kind, figure = self._cell
            if kind == "name":
                self._row["name"] += data.strip()
            else:
                self._row["figures"][figure] += data.strip()
        if self._kpi and self._kpi_part:
            self.kpis[self._kpi][self._kpi_part] += data.strip()

    @property
    def text(self) -> str:
        return re.sub(r"\s+", " ", " ".join(self.text_parts))

    def row(self, name: str) -> dict:
        return next(row for row in self.rows if row["name"] == name)


def _page(response) -> _Page:
    assert response.status_code == 200, response.content.decode()[:2000]
    return _Page(response.content.decode())


def _shown(row: dict) -> dict[str, str]:
    return {name: figure_display(row[name], kind) for name, _label, kind in FIGURES}


# -- login and the admin's links -----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/reports/", "/reports/channel-types/", "/reports/live-codes/",
                                  "/reports/staff/", "/reports/by/device/"])  # fmt: skip
def test_every_report_page_needs_a_login(client, corp, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=")


def test_the_admin_links_to_the_reports(admin_client):
    index = admin_client.get("/admin/").content.decode()
    assert 'href="/reports/"' in index
    assert 'href="/reports/live-codes/"' in index
    assert "数据报表" in index
    changelist = admin_client.get("/admin/contacts/externalcontact/").content.decode()
    assert 'id="reports-link"' in changelist  # beside the user's links on every admin page


def test_without_a_corp_the_page_says_so(admin_client, db):
    response = admin_client.get("/reports/")
    assert response.status_code == 200
    assert "还没有可统计的企业" in response.content.decode()


# -- the figures ---------------------------------------------------------------------------------


def test_the_dashboard_shows_the_report_classes_figures(admin_client, corp, month):
    page = _page(_get(admin_client, corp=corp.corp_id, window=7, **OCTOBER))
    expected = ChannelReport(ReportParams(corp=corp, first=FIRST, last=LAST, window=7)).calculate()
    assert [row["name"] for row in page.rows] == [row["name"] for row in expected.rows]
    for row in expected.rows:
        assert page.row(row["name"])["figures"] == _shown(row)
    assert page.totals == _shown(expected.totals)
    moments = page.row("pyq")["figures"]
    # Money with ¥ and two decimals, rates as %, no denominator as "—".
    assert (moments["revenue"], moments["cost"], moments["roi"]) == ("¥620.50", "¥3,100.00",
                                                                     "20.02%")  # fmt: skip
    assert moments["scan_to_add"] == "—"
    assert page.row("xhs")["figures"]["roi"] == "—"  # no cost, no ROI
    assert "7 天收入" in page.text


def test_the_charts_data_is_the_daily_report(admin_client, corp, month):
    response = _get(admin_client, corp=corp.corp_id, **OCTOBER)
    daily = DailyReport(ReportParams(corp=corp, first=FIRST, last=LAST)).calculate()
    trend = response.context["trend_chart"]
    assert trend["days"][0] == "2026-10-01"
    assert len(trend["days"]) == 31
    series = {series["name"]: series["data"] for series in trend["series"]}
    assert list(series) == ["adds", "lost", "net_adds", "scans"]
    assert series["adds"] == [row["adds"] for row in daily.rows]
    assert response.context["ranking_chart"]["names"] == ["xhs", "pyq"]  # most at the top
    html = response.content.decode()
    assert 'id="trend-data" type="application/json"' in html
    script = f"vendor/echarts/{ECHARTS_VERSION}/echarts.min.js"
    assert f"/static/{script}" in html
    assert finders.find(script) is not None  # our own file, vendored (no CDN)
    assert "cdn" not in html.lower()


def test_kpi_cards_compare_with_the_previous_period_of_equal_length(admin_client, corp, month):
    # 16..31 October against 31 September (no data) .. 15 October: 16 days each.
    response = _get(admin_client, corp=corp.corp_id, **{"from": "2026-10-16", "to": "2026-10-31"})
    previous = response.context["previous"]
    assert (previous.first, previous.last) == (dt.date(2026, 9, 30), dt.date(2026, 10, 15))
    page = _page(response)
    now = DailyReport(ReportParams(corp=corp, first=dt.date(2026, 10, 16), last=LAST)).calculate()
    before = DailyReport(ReportParams(corp=corp, first=previous.first,
                                      last=previous.last)).calculate()  # fmt: skip
    assert list(page.kpis) == list(KPI_FIGURES)
    for name in KPI_FIGURES:
        kind = dict((n, k) for n, _l, k in FIGURES)[name]
        assert page.kpis[name]["value"] == figure_display(now.totals[name], kind)
        assert page.kpis[name]["previous"].endswith(figure_display(before.totals[name], kind))
    # New customers: c, d, e now against a, b before: +50.0%.
    assert (now.totals["new_customers"], before.totals["new_customers"]) == (3, 2)
    assert page.kpis["new_customers"]["change"] == "▲ +50.0%"
    # Revenue: nothing now against the order of a before: -100.0%, shown as a fall.
    assert page.kpis["revenue"]["change"] == "▼ -100.0%"
    # Cost per new customer: ¥1,600 / 3 now, ¥1,500 / 2 before (cost spread over October,
    # and none on 30 September): less is better.
    assert now.totals["cost_per_new_customer"] == Decimal("533.33")
    assert before.totals["cost_per_new_customer"] == Decimal("750.00")
    html = response.content.decode()
    assert 'class="report-kpi-change down good"' in html


def test_a_change_against_nothing_is_a_dash():
    assert change_percent(5, 0) is None
    assert change_percent(None, 3) is None
    assert change_percent(Decimal("1.5"), None) is None
    assert change_percent(3, 2) == Decimal("50.0")
    assert change_percent(-1, -2) == Decimal("50.0")  # net adds: -2 -> -1 is a rise
    assert figure_display(None, "money") == "—"
    assert figure_display(Decimal("-50"), "money") == "-¥50.00"
    assert figure_display(Decimal("0.12345"), "rate") == "12.35%"
    assert figure_display(12345, "count") == "12,345"


# -- filters -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"from": "2026-10-31", "to": "2026-10-01"}, "期间的结束日早于开始日"),
        ({"from": "2026-13-01", "to": "2026-10-31"}, "输入一个有效的日期"),
        ({"period": "custom", "from": "2026-10-01"}, "自定义期间请选择开始和结束两个日期"),
        ({"period": "fortnight"}, "fortnight"),
        ({"window": "10"}, "10"),
        ({"corp": "wwnobody"}, "没有这个企业，或您无权查看"),
        ({"channel": "999999"}, "所选企业中没有这个渠道"),
        ({"live_code": "abc"}, "输入整数"),
        ({"from": "2020-01-01", "to": "2026-10-31"}, "期间超过三年"),
    ],
)
def test_bad_filters_are_a_400_with_a_clear_message(admin_client, corp, month, query, message):
    response = _get(admin_client, **query)
    assert response.status_code == 400
    text = re.sub(r"\s+", " ", response.content.decode())
    assert message in text
    assert "report-table" not in text  # no figures for filters that are wrong


def test_a_live_code_of_another_channel_is_refused(admin_client, corp, month):
    response = _get(admin_client, "/reports/staff/", channel=month["xhs"].channel_id,
                    live_code=month["pyq"].pk)  # fmt: skip
    assert response.status_code == 400
    assert "这个活码不属于该渠道" in response.content.decode()


# Monday 7 December 2026 11:00 in Shanghai is still Sunday 6 December 19:00 in Los Angeles.
INSTANT = dt.datetime(2026, 12, 7, 3, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("zone", "period", "first", "last"),
    [
        ("America/Los_Angeles", "today", "2026-12-06", "2026-12-06"),
        ("America/Los_Angeles", "yesterday", "2026-12-05", "2026-12-05"),
        ("America/Los_Angeles", "this_week", "2026-11-30", "2026-12-06"),
        ("America/Los_Angeles", "last_week", "2026-11-23", "2026-11-29"),
        ("America/Los_Angeles", "this_month", "2026-12-01", "2026-12-06"),
        ("America/Los_Angeles", "last_7", "2026-11-30", "2026-12-06"),
        ("America/Los_Angeles", "last_30", "2026-11-07", "2026-12-06"),
        ("America/Los_Angeles", "last_90", "2026-09-08", "2026-12-06"),
        ("Asia/Shanghai", "today", "2026-12-07", "2026-12-07"),
        ("Asia/Shanghai", "this_week", "2026-12-07", "2026-12-07"),
        ("Asia/Shanghai", "last_week", "2026-11-30", "2026-12-06"),
        ("Asia/Shanghai", "this_month", "2026-12-01", "2026-12-07"),
    ],
)
def test_presets_are_the_corps_local_days(admin_client, corp, zone, period, first, last):
    corp.time_zone = zone
    corp.save(update_fields=["time_zone"])
    with time_machine.travel(INSTANT, tick=False):
        response = _get(admin_client, period=period)
    params = response.context["params"]
    assert (params.first.isoformat(), params.last.isoformat()) == (first, last)
    # The date inputs show the days the preset stands for.
    html = response.content.decode()
    assert f'value="{first}"' in html
    assert f'value="{last}"' in html


def test_the_default_is_the_last_30_days_of_the_first_corp(admin_client, corp):
    other = Corp.objects.create(corp_id="wwother", name="另一家", secret="s", callback_token="t",
                                encoding_aes_key="A" * 43)  # fmt: skip
    with time_machine.travel(INSTANT, tick=False):
        response = _get(admin_client)
    params = response.context["params"]
    assert params.corp == corp
    assert (params.first, params.last) == (dt.date(2026, 11, 8), dt.date(2026, 12, 7))
    html = response.content.decode()
    assert f'<option value="{other.corp_id}">另一家</option>' in html  # a picker for two corps
    response = _get(admin_client, corp=other.corp_id)
    assert response.context["params"].corp == other


def test_periods_and_the_previous_one():
    monday = dt.date(2026, 12, 7)
    assert period_dates("this_week", monday) == (monday, monday)
    assert period_dates("last_week", monday) == (dt.date(2026, 11, 30), dt.date(2026, 12, 6))
    assert period_dates("this_month", dt.date(2026, 3, 1)) == (dt.date(2026, 3, 1),) * 2
    assert period_previous(dt.date(2026, 3, 1), dt.date(2026, 3, 31)) == (
        dt.date(2026, 1, 29), dt.date(2026, 2, 28),
    )  # fmt: skip
    with pytest.raises(ValueError, match="unknown period"):
        period_dates("fortnight", monday)


def test_channel_type_and_group_filters_narrow_the_table(admin_client, corp, month):
    Channel.objects.filter(pk=month["xhs"].channel_id).update(
        category="种草", channel_type=Channel.Type.STORE
    )
    rollups_rebuild(corp=corp, first=FIRST, last=LAST, now=NOW)
    page = _page(_get(admin_client, channel_group="种草", **OCTOBER))
    assert [row["name"] for row in page.rows] == ["xhs"]
    page = _page(_get(admin_client, channel_type=Channel.Type.AD, **OCTOBER))
    assert [row["name"] for row in page.rows] == ["pyq"]
    by_type = _page(_get(admin_client, "/reports/channel-types/", **OCTOBER))
    assert sorted(row["name"] for row in by_type.rows) == ["广告投放", "门店"]
    store = by_type.row("门店")
    assert parse_qs(urlsplit(store["link"]).query)["channel_type"] == [str(Channel.Type.STORE)]


# -- drill-down ----------------------------------------------------------------------------------


def test_drill_down_from_channel_to_live_codes_to_staff_to_the_customers(admin_client, corp, month):
    page = _page(_get(admin_client, corp=corp.corp_id, **OCTOBER))
    link = page.row("pyq")["link"]
    assert link.startswith("/reports/live-codes/?")
    assert parse_qs(urlsplit(link).query)["channel"] == [str(month["pyq"].channel_id)]

    codes = _page(admin_client.get(link))
    assert sorted(row["name"] for row in codes.rows) == ["pyq code", "pyq poster"]
    assert "渠道“pyq”的活码" in codes.text
    link = codes.row("pyq code")["link"]
    assert link.startswith("/reports/staff/?")
    assert parse_qs(urlsplit(link).query)["live_code"] == [str(month["pyq"].pk)]

    staff = _page(admin_client.get(link))
    assert sorted((row["name"], row["figures"]["new_customers"]) for row in staff.rows) == [
        ("staff01", "2"), ("staff02", "1"),
    ]  # fmt: skip
    link = staff.row("staff01")["link"]
    path, query = urlsplit(link).path, parse_qs(urlsplit(link).query)
    assert path == "/admin/contacts/externalcontact/"
    start, end = days.days_bounds(FIRST, LAST, corp)
    assert query["first_source__added_at__gte"] == [start.isoformat()]
    assert query["first_source__added_at__lt"] == [end.isoformat()]
    assert query["first_live_code"] == [str(month["pyq"].pk)]
    assert query["first_channel"] == [str(month["pyq"].channel_id)]
    assert query["corp__id__exact"] == [str(corp.pk)]

    customers = admin_client.get(link)
    assert customers.status_code == 200
    listed = {contact.external_userid for contact in customers.context["cl"].result_list}
    assert listed == {"wm-a", "wm-e"}  # the two new customers of the row, no one else


def test_rows_without_a_key_lead_nowhere(admin_client, corp, month):
    page = _page(_get(admin_client, "/reports/staff/", **OCTOBER))
    assert all(row["link"] for row in page.rows)
    Channel.objects.create(corp=corp, name="空渠道", code="empty_1")
    page = _page(_get(admin_client, **OCTOBER))
    assert "空渠道" not in [row["name"] for row in page.rows]  # no figures, no row


# -- status and definitions ----------------------------------------------------------------------


def test_the_page_says_when_it_was_computed_and_which_days_are_not(admin_client, corp, month):
    corp.time_zone = "America/New_York"
    corp.save(update_fields=["time_zone"])
    page = _page(_get(admin_client, **{"from": "2026-10-30", "to": "2026-11-02"}))
    # Rebuilt at NOW, 2026-11-20 12:00 in Shanghai: 04:00 UTC, 23:00 the day before in New York.
    assert "数据更新于 2026-11-19 23:00 EST" in page.text
    assert "2026-11-01 – 2026-11-02" in page.text
    assert day_ranges([dt.date(2026, 1, 5), dt.date(2026, 1, 1), dt.date(2026, 1, 2)]) == [
        "2026-01-01 – 2026-01-02", "2026-01-05",
    ]  # fmt: skip


def _docstring_items() -> list[str]:
    """The definitions in analytics/reports/base.py's docstring (after its first paragraph):
    each "- " item with its indented lines, and the paragraph after them, each as one line."""
    items: list[str] = []
    in_item = False
    for line in (report_base.__doc__ or "").split("\n\n", 1)[1].splitlines():
        if not line.strip():
            in_item = False
        elif line.startswith("- ") or (in_item and not line.startswith(" ")) or not items:
            items.append(line.removeprefix("- ").strip())
            in_item = line.startswith("- ")
        else:
            items[-1] += " " + line.strip()
    return items


def test_the_definitions_are_the_report_docstrings_word_for_word():
    with translation.override("en"):
        assert [str(definition) for definition in DEFINITIONS] == _docstring_items()


def test_the_page_prints_the_definitions_in_chinese(admin_client, corp, month):
    html = _get(admin_client, **OCTOBER).content.decode()
    assert "<summary>指标说明</summary>" in html
    with translation.override("zh-hans"):
        for definition in DEFINITIONS:
            assert str(definition) in html.replace("&quot;", '"')
    assert "净增客户 = 添加数 - 客户删除 - 员工删除" in html


def test_english_on_request(admin_client, corp, month):
    response = admin_client.get("/reports/", OCTOBER, HTTP_ACCEPT_LANGUAGE="en")
    text = _Page(response.content.decode()).text
    assert "Data updated at" in text
    assert "Definitions" in text
    assert "数据更新于" not in text


# -- queries -------------------------------------------------------------------------------------


def _more_channels(corp, count: int) -> None:
    for index in range(count):
        channel = Channel.objects.create(corp=corp, name=f"ch{index}", code=f"ch_{index}")
        code = LiveCode.objects.create(corp=corp, channel=channel, name=f"code{index}",
                                       slug=f"c{index}", mode=LiveCode.Mode.NATIVE)  # fmt: skip
        code.state = encode_state("native", code.pk)
        code.save(update_fields=["state"])
        _add(corp, f"wm-more-{index}", f"staff0{index % 3 + 1}", code.state, _at(index + 1))
    rollups_rebuild(corp=corp, first=FIRST, last=LAST, now=NOW)


@pytest.mark.parametrize(
    ("path", "extra", "queries"),
    [
        # session, user, corps, channel groups; the channel report (11), the daily trend's days
        # (6: its totals are the table's) and the previous period's totals (6: no days); the
        # budget advice (2: the corp's decision settings, the channels' grouped reply times)
        ("/reports/", {}, 29),
        # a live code has no cost: no cost query in any report; its row, with its channel;
        # the staff report's own: the caps per member and in total, the corp's alert share
        ("/reports/staff/", {"live_code": "pyq"}, 27),
    ],
)
def test_a_page_reads_in_a_fixed_number_of_queries(
    admin_client, corp, month, django_assert_num_queries, path, extra, queries
):
    query = {**OCTOBER, **{name: month[code].pk for name, code in extra.items()}}
    admin_client.get(path, query)  # the session and the user are then cached the same way
    with django_assert_num_queries(queries):
        assert admin_client.get(path, query).status_code == 200
    _more_channels(corp, 12)
    with django_assert_num_queries(queries):
        assert admin_client.get(path, query).status_code == 200


def test_a_staff_user_without_superuser_rights_reads_the_reports(client, corp, month):
    user = get_user_model().objects.create_user("manager", password="x", is_staff=True)
    client.force_login(member(user, corp, role="manager"))
    assert client.get("/reports/", OCTOBER).status_code == 200


# -- first touch and the breakdowns --------------------------------------------------------------


def test_first_touch_credits_a_re_add_to_the_customers_first_channel(admin_client, corp, month):
    # wm-a came through the Moments ad; on day 10 the same customer adds staff03 through the
    # Xiaohongshu slot: any touch counts that add for xhs, first touch for pyq.
    _add(corp, "wm-a", "staff03", _slot(month["xhs"], "staff03").state, _at(10))
    rollups_rebuild(corp=corp, first=FIRST, last=LAST, now=NOW)
    any_touch = _page(_get(admin_client, **OCTOBER))
    first_touch_response = _get(admin_client, touch="first", **OCTOBER)
    first_touch = _page(first_touch_response)
    assert any_touch.row("xhs")["figures"]["adds"] == "2"
    assert first_touch.row("xhs")["figures"]["adds"] == "1"
    assert first_touch.row("pyq")["figures"]["adds"] == "5"
    expected = ChannelReport(
        ReportParams(corp=corp, first=FIRST, last=LAST, touch="first")
    ).calculate()
    for row in expected.rows:
        assert first_touch.row(row["name"])["figures"] == _shown(row)
    html = first_touch_response.content.decode()
    assert re.search(r'<option value="first" selected>', html)
    # The drill-down keeps the crediting; the breakdown tabs (any touch only) drop it.
    assert parse_qs(urlsplit(first_touch.row("pyq")["link"]).query)["touch"] == ["first"]
    tabs = dict(re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', html.split("report-tabs")[1]))
    assert all(("touch=first" in url) != ("/by/" in url) for url in tabs
               if "/quality/" not in url and "/anomalies/" not in url)  # fmt: skip
    # The pages with periods of their own take the corp only.
    assert [url.split("?")[1] for url in tabs if "/quality/" in url or "/anomalies/" in url] == [
        f"corp={corp.corp_id}"
    ] * 2


@pytest.mark.parametrize("by", ["utm_source", "utm_medium", "utm_campaign", "device", "add_way"])
def test_every_breakdown_has_its_page_with_the_report_classes_figures(admin_client, corp, by):
    codes = _codes(corp)
    slot = _slot(codes["xhs"], "staff03")
    for number in range(4):
        _scan(codes["xhs"], _at(5, 10, number), f"device-{number}", slot)
    _add(corp, "wm-a", "staff03", slot.state, _at(5, 10, 5), add_way=1)
    _add(corp, "wm-b", "staff01", codes["pyq"].state, _at(6), add_way=17)
    rollups_rebuild(corp=corp, first=FIRST, last=LAST, now=NOW)
    # touch=first in the address (a bookmark from another tab) is not this page's business
    page = _page(_get(admin_client, f"/reports/by/{by}/", touch="first", **OCTOBER))
    expected = ChannelReport(ReportParams(corp=corp, first=FIRST, last=LAST, group_by=by))
    rows = expected.calculate().rows
    assert sum(row["adds"] for row in rows) == 2
    assert sorted(row["name"] for row in page.rows) == sorted(str(row["name"]) for row in rows)
    for row in rows:
        assert page.row(str(row["name"]))["figures"] == _shown(row)
        assert page.row(str(row["name"]))["link"] == ""  # a utm value leads nowhere further
    assert 'name="touch"' not in _get(admin_client, f"/reports/by/{by}/").content.decode()


def test_an_unknown_breakdown_is_a_404(admin_client, corp):
    assert admin_client.get("/reports/by/moon/").status_code == 404


EXPORT_LINK = re.compile(r'<a href="([^"]+)" data-export="(csv|xlsx)">')


@pytest.mark.parametrize(
    ("path", "query", "names"),
    [
        ("/reports/", {"window": 7}, ["pyq", "xhs"]),
        ("/reports/live-codes/", {"channel": "pyq"}, ["pyq code", "pyq poster"]),
        ("/reports/staff/", {}, ["staff01", "staff02", "staff03"]),
        ("/reports/by/utm_source/", {}, None),
    ],
)
def test_every_table_page_exports_its_table_and_its_days(
    admin_client, corp, month, path, query, names
):
    if query.get("channel"):
        query["channel"] = month["pyq"].channel_id
    response = _get(admin_client, path, corp=corp.corp_id, **OCTOBER, **query)
    page = _page(response)
    links = EXPORT_LINK.findall(response.content.decode())
    assert [answer for _url, answer in links] == ["csv", "xlsx", "csv", "xlsx"]
    (table_csv, _), (table_xlsx, _), (daily_csv, _), (daily_xlsx, _) = [
        (url.replace("&amp;", "&"), answer) for url, answer in links
    ]
    # The table: the page's rows, in the page's order, then the totals.
    exported = admin_client.get(table_csv)
    assert exported.status_code == 200
    text = b"".join(exported.streaming_content).decode("utf-8")
    assert text.startswith("\ufeff")
    lines = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    shown = [row["name"] for row in page.rows]
    if names is not None:
        assert sorted(shown) == names
    assert [line[1] for line in lines[1:-1]] == shown
    assert lines[-1][1] in ("合计", "Total")
    workbook = admin_client.get(table_xlsx)
    assert workbook.status_code == 200
    sheet = openpyxl.load_workbook(io.BytesIO(b"".join(workbook.streaming_content))).active
    assert [row[1] for row in sheet.iter_rows(min_row=2, values_only=True)][:-1] == shown
    # The days of the period, filtered as the page is.
    days_text = b"".join(admin_client.get(daily_csv).streaming_content).decode("utf-8")
    day_lines = list(csv.reader(io.StringIO(days_text.lstrip("\ufeff"))))
    assert len(day_lines) == 1 + 31 + 1  # header, October's days, totals
    assert admin_client.get(daily_xlsx).status_code == 200
    params = parse_qs(urlsplit(table_csv).query)
    assert params["from"] == ["2026-10-01"]
    assert params["to"] == ["2026-10-31"]
    if query.get("channel"):
        assert params["channel"] == [str(month["pyq"].channel_id)]
        assert parse_qs(urlsplit(daily_csv).query)["channel"] == params["channel"]
