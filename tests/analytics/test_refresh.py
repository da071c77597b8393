"""Which days get rebuilt: the last month on a corp's first refresh, then only what changed
(a late conversion, an add found late, a cost added, edited or deleted) and today and yesterday
every five minutes; by hand with analytics_rebuild."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.utils import timezone

from analytics.models import DailyCohort, DailyCost, RollupDay
from analytics.refresh import day_ranges, rollups_refresh
from analytics.tasks import rollups_refresh_all_task
from channels_app.models import ChannelCost
from scrm import days
from tests.analytics.test_reports import _add, _codes, _convert

pytestmark = pytest.mark.django_db


def _ago(n: int, hour: int = 10) -> dt.datetime:
    now = timezone.now().astimezone(dt.UTC)
    return now.replace(hour=hour, minute=0, second=0, microsecond=0) - dt.timedelta(days=n)


def _rebuilt(corp, since: dt.datetime) -> set[dt.date]:
    return set(
        RollupDay.objects.filter(corp=corp, computed_at__gte=since).values_list("day", flat=True)
    )


def test_consecutive_days_are_rebuilt_as_ranges():
    d = dt.date(2026, 10, 1)
    got = list(day_ranges([d, d + dt.timedelta(days=1), d + dt.timedelta(days=5), d]))
    assert got == [(d, d + dt.timedelta(days=1)), (d + dt.timedelta(days=5),) * 2]


def test_the_first_refresh_rebuilds_the_last_35_days_then_only_what_changed(corp):
    codes = _codes(corp)
    _add(corp, "wm-old", "staff01", codes["pyq"].state, _ago(20))
    start = timezone.now() + dt.timedelta(minutes=10)  # past the watermark's look-back
    assert rollups_refresh(corp=corp, now=start) == 35
    assert DailyCohort.objects.get().new_customers == 1
    # Nothing changed, and today was rebuilt less than five minutes ago: nothing to do.
    assert rollups_refresh(corp=corp, now=start + dt.timedelta(minutes=1)) == 0

    later = start + dt.timedelta(minutes=2)
    first_add, order_at, found_at = _ago(20), _ago(15), _ago(9)
    with time_machine.travel(later, tick=False):  # recorded after the last look
        _convert(corp, "wm-old", "order", order_at, "66.00")  # dated in the window, sent late
        _add(corp, "wm-found", "staff02", codes["pyq"].state, found_at)  # an add found late
    rollups_refresh(corp=corp, now=later + dt.timedelta(minutes=1))
    day = days.local_date
    assert _rebuilt(corp, later) == {day(first_add, corp), day(found_at, corp)}
    assert DailyCohort.objects.get(day=day(first_add, corp)).revenue_30 == Decimal("66.00")


def test_a_cost_added_edited_or_deleted_rebuilds_the_days_it_covers(corp):
    codes = _codes(corp)
    rollups_refresh(corp=corp)
    today = days.today(corp)
    cost = ChannelCost.objects.create(
        corp=corp, channel=codes["pyq"].channel, amount=Decimal("700"),
        start_date=today - dt.timedelta(days=10), end_date=today - dt.timedelta(days=4),
    )  # fmt: skip
    rollups_refresh(corp=corp)
    assert DailyCost.objects.filter(corp=corp).count() == 7
    cost.amount = Decimal("1400")
    cost.save()
    rollups_refresh(corp=corp)
    assert {c.amount for c in DailyCost.objects.filter(corp=corp)} == {Decimal("200")}
    cost.delete()
    rollups_refresh(corp=corp)
    assert not DailyCost.objects.filter(corp=corp).exists()


def test_the_beat_refreshes_every_active_corp(corp):
    assert rollups_refresh_all_task() == 1  # eager in tests: the refresh ran too
    assert RollupDay.objects.filter(corp=corp).count() == 35


def test_the_command_rebuilds_with_progress_and_refuses_a_future_day(corp):
    out = io.StringIO()
    since = days.today(corp) - dt.timedelta(days=9)
    call_command("analytics_rebuild", corp=corp.corp_id, since=since, stdout=out)
    assert "(10/10 days)" in out.getvalue()
    assert "10 days of wwtest0000000001 rebuilt" in out.getvalue()
    assert RollupDay.objects.filter(corp=corp).count() == 10
    with pytest.raises(CommandError, match="after the corp's today"):
        call_command("analytics_rebuild", corp=corp.corp_id, since=dt.date(2999, 1, 1))
    with pytest.raises(CommandError, match="No corp"):
        call_command("analytics_rebuild", corp="wwnobody")
