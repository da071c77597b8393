"""A manager opens the cohort matrix in a real browser: the heatmap is drawn on a canvas
(ECharts, from our static files), the immature cells are a series of their own, grey and
outside the colour scale, and switching the metric or the cohorts' period redraws it."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.contrib.auth import get_user_model
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.browser.test_reports_dashboard import _month_of_data

HEATMAP = """
    var element = document.getElementById("cohort-chart");
    var chart = element && echarts.getInstanceByDom(element);
    if (!chart) return null;
    var option = chart.getOption();
    var canvas = element.querySelector("canvas");
    return {
        metric: element.getAttribute("data-metric"),
        period: element.getAttribute("data-period"),
        rows: option.yAxis[0].data.length,
        mature: option.series[0].data.length,
        pending: option.series[1].data.length,
        pendingColor: option.series[1].itemStyle.color,
        scaleColors: option.visualMap[0].inRange.color,
        scaleSeries: option.visualMap[0].seriesIndex,
        values: option.series[0].data.map(function (cell) { return cell[2]; }),
        canvas: canvas ? [canvas.width, canvas.height] : null
    };
"""


def _heatmap(browser, **expected) -> dict:
    def drawn(browser):
        found = browser.execute_script(HEATMAP)
        if found and all(found[key] == value for key, value in expected.items()):
            return found
        return None

    return WebDriverWait(browser, 15).until(drawn)


def _this_afternoon() -> dt.datetime:
    """Today 14:00 in the corp's zone (Shanghai). The month of data is laid out hours before
    now: run just after local midnight, its latest adds fell on the day before (29 rows)."""
    zone = ZoneInfo("Asia/Shanghai")
    return dt.datetime.combine(dt.datetime.now(zone).date(), dt.time(14), tzinfo=zone)


@time_machine.travel(_this_afternoon(), tick=True)
@pytest.mark.django_db(transaction=True)
def test_the_cohort_heatmap_draws_immature_cells_apart_and_switches(desktop, live_server, corp):
    _month_of_data(corp)
    get_user_model().objects.create_superuser("manager", "m@example.cn", "s3cret-pass")
    page = "/reports/cohorts/?period=last_30&cohort_period=day&metric=retention"
    desktop.get(f"{live_server.url}/admin/login/?next={page.replace('&', '%26')}")
    desktop.find_element(By.NAME, "username").send_keys("manager")
    desktop.find_element(By.NAME, "password").send_keys("s3cret-pass")
    desktop.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    WebDriverWait(desktop, 10).until(lambda browser: "/admin/login/" not in browser.current_url)

    # 30 daily cohorts; the latest ones are not mature at most ages: a triangle apart.
    daily = _heatmap(desktop, metric="retention", period="day")
    assert daily["rows"] == 30
    assert daily["mature"] > 0
    assert daily["pending"] > 0
    assert daily["scaleSeries"] == 0  # the colour scale is the mature cells' only
    assert daily["pendingColor"] not in daily["scaleColors"]
    assert all(0 <= value <= 1 for value in daily["values"])
    assert min(daily["canvas"]) > 0
    table = desktop.find_element(By.ID, "cohort-table")
    assert len(table.find_elements(By.CSS_SELECTOR, "tbody td[data-immature]")) == daily["pending"]

    # Revenue per customer: the form submits on change, the heatmap is drawn again.
    Select(desktop.find_element(By.NAME, "metric")).select_by_value("revenue")
    revenue = _heatmap(desktop, metric="revenue", period="day")
    assert max(revenue["values"]) > 1  # yuan per customer, not a share
    assert revenue["pending"] == daily["pending"]

    # By week: fewer, larger cohorts.
    Select(desktop.find_element(By.NAME, "cohort_period")).select_by_value("week")
    weekly = _heatmap(desktop, metric="revenue", period="week")
    assert 4 <= weekly["rows"] <= 6
    assert weekly["pending"] > 0
