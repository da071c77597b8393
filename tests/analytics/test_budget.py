"""Budget advice on the channel report: the median first reply of each channel's new customers'
staff (one value per customer) against the corp's thresholds, and the spend share it suggests;
on the page and in the API, never applied."""

from __future__ import annotations

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from analytics.budget import budget_advice
from analytics.models import DecisionSettings
from analytics.reports import ChannelReport, ReportParams
from analytics.rollups import rollups_rebuild
from channels_app.models import Channel, ChannelCost, LiveCode
from channels_app.state import encode_state
from contacts.models import Staff
from tests.analytics.test_reports import FIRST, LAST, NOW, _add, _at

pytestmark = pytest.mark.django_db

D = Decimal


def _channel(corp, key: str, cost: str) -> LiveCode:
    channel = Channel.objects.create(corp=corp, name=key, code=key)
    code = LiveCode.objects.create(corp=corp, channel=channel, name=key, slug=key,
                                   mode=LiveCode.Mode.NATIVE)  # fmt: skip
    code.state = encode_state("native", code.pk)
    code.save(update_fields=["state"])
    ChannelCost.objects.create(corp=corp, channel=channel, start_date=FIRST, end_date=LAST,
                               amount=D(cost))  # fmt: skip
    return code


@pytest.fixture
def month(corp):
    """slow: 3 customers of a 5-hour member and 1 of a 1-hour one (median 300 min: reduce);
    fast: 2 customers of the 1-hour member (increase); middle: a 3-hour member's (keep);
    silent: a member without a reply time (no advice). Spend 600 / 300 / 100 / 0."""
    codes = {key: _channel(corp, key, cost)
             for key, cost in (("slow", "600"), ("fast", "300"), ("middle", "100"),
                               ("silent", "0"))}  # fmt: skip
    people = [("slow", "staff01"), ("slow", "staff01"), ("slow", "staff01"), ("slow", "staff02"),
              ("fast", "staff02"), ("fast", "staff02"), ("middle", "staff03"),
              ("silent", "staff04")]  # fmt: skip
    for index, (key, userid) in enumerate(people):
        _add(corp, f"wm-{index}", userid, codes[key].state, _at(index + 2))
    for userid, minutes in (("staff01", 300), ("staff02", 60), ("staff03", 180)):
        Staff.objects.filter(corp=corp, userid=userid).update(avg_reply_minutes=minutes)
    rollups_rebuild(corp=corp, first=FIRST, last=LAST, now=NOW)
    return codes


def _advice(corp) -> dict[str, dict]:
    report = ChannelReport(ReportParams(corp=corp, first=FIRST, last=LAST))
    result = report.calculate()
    names = {row["key"]: row["name"] for row in result.rows}
    return {names[key]: advice for key, advice in budget_advice(report, result).items()}


def test_advice_from_the_median_reply_against_the_thresholds(corp, month):
    advice = _advice(corp)
    medians = {name: (it["median_reply_minutes"], it["advice"]) for name, it in advice.items()}
    assert medians == {
        "slow": (D(300), "reduce"),
        "fast": (D(60), "increase"),
        "middle": (D(180), "keep"),
        "silent": (None, None),
    }  # fmt: skip
    # Shares 0.6 / 0.3 / 0.1 / 0, scaled x0.8, x1.2, x1, x1 (0.94 in all), back to 100 %.
    assert {name: item["current_share"] for name, item in advice.items()} == {
        "slow": D("0.6"), "fast": D("0.3"), "middle": D("0.1"), "silent": D(0)
    }  # fmt: skip
    assert {name: item["suggested_share"] for name, item in advice.items()} == {
        "slow": D("0.5106"), "fast": D("0.3830"), "middle": D("0.1064"), "silent": D(0)
    }  # fmt: skip


def test_the_thresholds_are_the_corps(corp, month):
    DecisionSettings.objects.create(corp=corp, budget_reduce_above_hours=D(6),
                                    budget_increase_below_hours=D("0.5"))  # fmt: skip
    advice = _advice(corp)
    assert [advice[name]["advice"] for name in ("slow", "fast", "middle")] == ["keep"] * 3
    assert advice["slow"]["suggested_share"] == D("0.6")


def test_without_spend_there_is_no_share(corp, month):
    ChannelCost.objects.all().delete()
    rollups_rebuild(corp=corp, first=FIRST, last=LAST, now=NOW)
    advice = _advice(corp)
    assert advice["slow"]["advice"] == "reduce"
    assert (advice["slow"]["current_share"], advice["slow"]["suggested_share"]) == (None, None)


def test_the_api_gives_the_advice_by_channel_only(admin_user, corp, month):
    api = APIClient()
    api.force_authenticate(admin_user)
    query = {"corp": corp.corp_id, "from": FIRST.isoformat(), "to": LAST.isoformat()}
    body = api.get("/api/v1/reports/channels/", query).json()
    rows = {row["name"]: row["budget_advice"] for row in body["rows"]}
    assert rows["slow"] == {"median_reply_minutes": 300.0, "advice": "reduce",
                            "current_share": 0.6, "suggested_share": 0.5106}  # fmt: skip
    assert rows["silent"]["advice"] is None
    by_staff = api.get("/api/v1/reports/channels/", {**query, "group_by": "staff"}).json()
    assert all(row["budget_advice"] is None for row in by_staff["rows"])


def test_the_channel_page_shows_the_advice(admin_client, corp, month):
    query = {"corp": corp.corp_id, "from": FIRST.isoformat(), "to": LAST.isoformat()}
    html = admin_client.get("/reports/", query).content.decode()
    assert 'data-budget="advice" data-sort="reduce"' in html
    assert 'data-budget="advice" data-sort="increase"' in html
    assert 'id="budget-definition"' in html
    staff_page = admin_client.get("/reports/staff/", query).content.decode()
    assert "data-budget" not in staff_page
