"""A manager opens the report dashboard in a real browser: the charts are drawn (ECharts, from
our own static files) with the month's data, and a click on a column heading sorts the table."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from analytics.reports import ChannelReport, ReportParams
from analytics.rollups import rollups_rebuild
from channels_app.models import Channel, ChannelCost, LiveCode
from channels_app.state import encode_state
from scrm import days
from tests.analytics.test_reports import _add, _convert, _end, _scan, _slot

CHART_DATA = """
    var chart = echarts.getInstanceByDom(document.getElementById(arguments[0]));
    if (!chart) return null;
    var canvas = document.querySelector('#' + arguments[0] + ' canvas');
    return {series: chart.getOption().series.map(function (s) { return s.data; }),
            canvas: canvas ? [canvas.width, canvas.height] : null};
"""


def _month_of_data(corp) -> dict[str, Channel]:
    """Thirty days up to now in three channels: many cheap adds from Moments ads, fewer
    from Xiaohongshu (a landing code, with scans) and the store, whose customers buy most."""
    rng = random.Random(30)
    today = days.today(corp)
    channels, states, landing = {}, {}, None
    for key, name, mode in (("pyq", "朋友圈广告", LiveCode.Mode.NATIVE),
                            ("xhs", "小红书", LiveCode.Mode.LANDING),
                            ("store", "南京路店", LiveCode.Mode.NATIVE)):  # fmt: skip
        channel = Channel.objects.create(corp=corp, name=name, code=f"{key}_1")
        code = LiveCode.objects.create(corp=corp, channel=channel, name=f"{name}活码", slug=key,
                                       mode=mode)  # fmt: skip
        code.state = encode_state("native", code.pk)
        code.save(update_fields=["state"])
        channels[key] = channel
        states[key] = code.state
        if mode == LiveCode.Mode.LANDING:  # its adds come through a slot, after a scan
            landing, states[key] = code, _slot(code, "staff02").state
    start = today - dt.timedelta(days=29)
    ChannelCost.objects.create(corp=corp, channel=channels["pyq"], amount=Decimal("6000"),
                               start_date=start, end_date=today)  # fmt: skip
    customer = 0
    for back in range(29, -1, -1):
        # Every fact in the past, whatever the hour the test runs at (the last one 25 min ago).
        base = timezone.now() - dt.timedelta(days=back, hours=4)
        for key, adds, spend in (("pyq", 4, "30"), ("xhs", 2, "90"), ("store", 1, "400")):
            for index in range(rng.randint(adds - 1, adds + 1)):
                customer += 1
                at = base + dt.timedelta(minutes=index * 7)
                if key == "xhs":
                    _scan(landing, at - dt.timedelta(minutes=1), f"device-{customer}")
                    _scan(landing, at - dt.timedelta(minutes=2), f"device-{customer + 10_000}")
                _add(corp, f"wm-{customer}", f"staff0{customer % 3 + 1}", states[key], at)
                if rng.random() < 0.5:
                    _convert(corp, f"wm-{customer}", "order", at + dt.timedelta(hours=2), spend)
                if rng.random() < 0.15:
                    _end(corp, f"wm-{customer}", f"staff0{customer % 3 + 1}",
                         "deleted_by_customer", at + dt.timedelta(hours=3))  # fmt: skip
    rollups_rebuild(corp=corp, first=today - dt.timedelta(days=35), last=today)
    return channels


def _first_column(browser) -> list[str]:
    return [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#report-table tbody th")]


@pytest.mark.django_db(transaction=True)
def test_a_manager_sees_the_charts_drawn_and_sorts_the_channels(desktop, live_server, corp):
    _month_of_data(corp)
    get_user_model().objects.create_superuser("manager", "m@example.cn", "s3cret-pass")

    desktop.get(f"{live_server.url}/admin/login/?next=/reports/")
    desktop.find_element(By.NAME, "username").send_keys("manager")
    desktop.find_element(By.NAME, "password").send_keys("s3cret-pass")
    desktop.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    # The login page's own address holds "next=/reports/": wait for the page itself.
    WebDriverWait(desktop, 10).until(lambda browser: "/admin/login/" not in browser.current_url)
    assert "渠道报表" in desktop.title
    assert "数据更新于" in desktop.find_element(By.CSS_SELECTOR, ".report-computed").text

    # The daily trend: four series (adds, lost, net, scans) over the 30 days, on a canvas.
    trend = WebDriverWait(desktop, 15).until(
        lambda browser: browser.execute_script(CHART_DATA, "trend-chart")
    )
    assert len(trend["series"]) == 4
    adds, _lost, _net, scans = trend["series"]
    assert len(adds) == 30
    assert sum(adds) > 0
    assert sum(scans) > 0
    assert min(trend["canvas"]) > 0
    ranking = desktop.execute_script(CHART_DATA, "ranking-chart")
    assert sorted(ranking["series"][0], reverse=True)[0] > 0
    assert min(ranking["canvas"]) > 0

    # The table first lists the channels by adds; a click on revenue puts the store first.
    today = days.today(corp)
    report = ChannelReport(ReportParams(corp=corp, first=today - dt.timedelta(days=29),
                                        last=today)).calculate()  # fmt: skip
    by_adds = [row["name"] for row in report.rows]
    by_revenue = [row["name"] for row in sorted(report.rows, key=lambda r: -r["revenue"])]
    assert by_adds != by_revenue
    assert _first_column(desktop) == by_adds
    revenue = desktop.find_element(By.CSS_SELECTOR, "th[data-figure=revenue] button")
    revenue.click()
    assert _first_column(desktop) == by_revenue
    heading = desktop.find_element(By.CSS_SELECTOR, "th[data-figure=revenue]")
    assert heading.get_attribute("aria-sort") == "descending"
    revenue.click()  # again: the other way round
    assert _first_column(desktop) == by_revenue[::-1]
    assert heading.get_attribute("aria-sort") == "ascending"

    # The definitions open on a click.
    details = desktop.find_element(By.CSS_SELECTOR, "details.report-definitions")
    details.find_element(By.TAG_NAME, "summary").click()
    assert "净增客户 = 添加数 - 客户删除 - 员工删除" in details.text
