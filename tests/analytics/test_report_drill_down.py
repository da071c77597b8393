"""The drill-down filters of the report parameters: one channel's live codes, one live code's
staff members. The rows of a narrower report add up to the wider report's row they came from,
and a live code, having no cost of its own, shows none."""

from __future__ import annotations

from decimal import Decimal

import pytest

from analytics.reports import ChannelReport, DailyReport, ReportParams
from analytics.rollups import rollups_rebuild
from channels_app.models import ChannelCost, LiveCode
from channels_app.state import encode_state
from tests.analytics.test_reports import FIRST, LAST, NOW, _add, _at, _codes, _convert, _slot

pytestmark = pytest.mark.django_db


@pytest.fixture
def month(corp) -> dict[str, LiveCode]:
    codes = _codes(corp)
    pyq = codes["pyq"]
    second = LiveCode.objects.create(corp=corp, channel=pyq.channel, name="pyq poster",
                                     slug="pyq-poster", mode=LiveCode.Mode.NATIVE)  # fmt: skip
    second.state = encode_state("native", second.pk)
    second.save(update_fields=["state"])
    codes["pyq2"] = second
    ChannelCost.objects.create(corp=corp, channel=pyq.channel, start_date=FIRST, end_date=LAST,
                               amount=Decimal("3100"))  # fmt: skip
    _add(corp, "wm-a", "staff01", pyq.state, _at(2))
    _add(corp, "wm-b", "staff02", pyq.state, _at(3))
    _add(corp, "wm-c", "staff02", second.state, _at(4))
    _add(corp, "wm-d", "staff03", _slot(codes["xhs"], "staff03").state, _at(5))
    _convert(corp, "wm-b", "order", _at(6), "88")
    rollups_rebuild(corp=corp, first=FIRST, last=LAST, now=NOW)
    return codes


def _params(corp, **extra) -> ReportParams:
    return ReportParams(corp=corp, first=FIRST, last=LAST, **extra)


def _by_name(result) -> dict:
    return {row["name"]: row for row in result.rows}


def test_a_channel_filter_gives_that_channels_live_codes_adding_up_to_its_row(corp, month):
    channel = month["pyq"].channel
    by_channel = _by_name(ChannelReport(_params(corp)).calculate())
    codes = ChannelReport(_params(corp, group_by="live_code", channel=channel.pk)).calculate()
    assert sorted((row["name"], row["adds"]) for row in codes.rows) == [
        ("pyq code", 2), ("pyq poster", 1),
    ]  # fmt: skip
    assert codes.totals["adds"] == by_channel["pyq"]["adds"] == 3
    assert codes.totals["revenue"] == by_channel["pyq"]["revenue"] == Decimal("88.00")
    assert {row["cost"] for row in codes.rows} == {None}  # a code has no cost of its own
    # The daily trend of the channel keeps the channel's cost.
    daily = DailyReport(_params(corp, channel=channel.pk)).calculate()
    assert daily.totals["cost"] == by_channel["pyq"]["cost"] == Decimal("3100.00")
    assert daily.totals["adds"] == 3


def test_a_live_code_filter_gives_its_staff_and_no_cost(corp, month):
    code = month["pyq"]
    params = _params(corp, group_by="staff", channel=code.channel_id, live_code=code.pk)
    staff = ChannelReport(params).calculate()
    assert sorted((row["name"], row["new_customers"]) for row in staff.rows) == [
        ("staff01", 1), ("staff02", 1),
    ]  # fmt: skip
    assert staff.totals["new_customers"] == 2
    assert staff.totals["cost"] is None
    assert staff.totals["roi"] is None
    daily = DailyReport(_params(corp, live_code=code.pk)).calculate()
    assert sum(row["adds"] for row in daily.rows) == 2
    assert {row["cost"] for row in daily.rows} == {None}  # empty days too


def test_the_drill_down_filters_are_part_of_the_cache_key(corp, month):
    code = month["pyq"]
    keys = {
        _params(corp).cache_key("channels"),
        _params(corp, channel=code.channel_id).cache_key("channels"),
        _params(corp, channel=code.channel_id, live_code=code.pk).cache_key("channels"),
    }
    assert len(keys) == 3
