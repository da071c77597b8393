"""A manager opens the channel quality page in a real browser: the score's parts (a stacked bar
per channel) and the best channels' ranks over the hours (lines) are drawn by ECharts."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from analytics.quality import quality_scores_compute
from analytics.rollups import rollups_rebuild
from channels_app.models import Channel, LiveCode
from channels_app.state import encode_state
from contacts.models import Staff
from scrm import days
from tests.analytics.test_reports import _add, _convert
from tests.browser.test_reports_dashboard import CHART_DATA


@pytest.mark.django_db(transaction=True)
def test_the_quality_page_draws_the_parts_and_the_ranks(desktop, live_server, corp):
    customer = 0
    for key, count in (("pyq", 5), ("xhs", 3), ("store", 1)):
        channel = Channel.objects.create(corp=corp, name=key, code=key)
        code = LiveCode.objects.create(corp=corp, channel=channel, name=key, slug=key,
                                       mode=LiveCode.Mode.NATIVE)  # fmt: skip
        code.state = encode_state("native", code.pk)
        code.save(update_fields=["state"])
        for _index in range(count):
            customer += 1
            at = timezone.now() - dt.timedelta(days=2, minutes=customer)
            _add(corp, f"wm-{customer}", f"staff0{count % 3 + 1}", code.state, at)
            if customer % 2:
                _convert(corp, f"wm-{customer}", "consult", at + dt.timedelta(hours=1))
    Staff.objects.filter(corp=corp, userid="staff03").update(avg_reply_minutes=30)
    today = days.today(corp)
    rollups_rebuild(corp=corp, first=today - dt.timedelta(days=35), last=today)
    now = timezone.now()
    for hours in (2, 1, 0):
        quality_scores_compute(corp=corp, now=now - dt.timedelta(hours=hours))
    get_user_model().objects.create_superuser("manager", "m@example.cn", "s3cret-pass")

    desktop.get(f"{live_server.url}/admin/login/?next=/reports/quality/")
    desktop.find_element(By.NAME, "username").send_keys("manager")
    desktop.find_element(By.NAME, "password").send_keys("s3cret-pass")
    desktop.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    WebDriverWait(desktop, 10).until(lambda browser: "/admin/login/" not in browser.current_url)

    parts = WebDriverWait(desktop, 15).until(
        lambda browser: browser.execute_script(CHART_DATA, "quality-parts-chart")
    )
    assert len(parts["series"]) == 6  # one stack per part
    assert all(len(series) == 3 for series in parts["series"])  # three channels
    assert min(parts["canvas"]) > 0
    ranks = desktop.execute_script(CHART_DATA, "quality-rank-chart")
    assert len(ranks["series"]) == 3
    assert all(len(series) == 3 for series in ranks["series"])  # three hours
    assert {series[-1] for series in ranks["series"]} == {1, 2, 3}
    first = desktop.find_element(By.CSS_SELECTOR, "#quality-table tbody tr")
    assert first.get_attribute("data-rank") == "1"
