"""The rollups' beat: setup_periodic_tasks schedules the minute's refresh and the hourly nightly
check; the refresh rebuilds today and yesterday once five minutes have passed (a scan the
landing page buffered reaches the report then); the nightly check rebuilds a corp's last 35
local days in the hour its own clock reads 02:00 and in no other, and that rebuild matures the
30-day retention and folds in late orders."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.management import call_command
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from analytics.models import DailyCohort, DailyFlow, RollupDay
from analytics.refresh import NIGHTLY_DAYS, RECENT_EVERY
from analytics.tasks import (
    nightly_hour,
    rollups_nightly_all_task,
    rollups_rebuild_recent_task,
    rollups_refresh_all_task,
)
from scrm import days
from scrm.celery import app as celery_app
from tests.analytics.test_reports import CST, _add, _codes, _convert, _scan, _slot
from tests.factories import CorpFactory

pytestmark = pytest.mark.django_db

NEW_YORK = "America/New_York"
REFRESH = "analytics.tasks.rollups_refresh_all_task"
NIGHTLY = "analytics.tasks.rollups_nightly_all_task"


def _computed(corp) -> dict[dt.date, dt.datetime]:
    """The corp's rebuilt days and when each was last rebuilt."""
    return dict(RollupDay.objects.filter(corp=corp).values_list("day", "computed_at"))


def _last_days(corp, now: dt.datetime, n: int = NIGHTLY_DAYS) -> set[dt.date]:
    today = days.today(corp, now=now)
    return {today - dt.timedelta(days=i) for i in range(n)}


# -- the schedule ------------------------------------------------------------------------------


def test_setup_periodic_tasks_schedules_the_refresh_every_minute_and_the_nightly_hourly():
    call_command("setup_periodic_tasks", stdout=io.StringIO())
    refresh = PeriodicTask.objects.get(task=REFRESH)
    nightly = PeriodicTask.objects.get(task=NIGHTLY)
    for task, seconds in ((refresh, 60), (nightly, 3600)):
        assert (task.interval.every, task.interval.period) == (seconds, IntervalSchedule.SECONDS)
        assert task.enabled
        assert task.args == "[]"  # the tasks fan out over the corps themselves
        assert task.task in celery_app.tasks  # a name the workers know
    # Run after every deploy: one row per task still, and a task paused in the admin stays so.
    PeriodicTask.objects.filter(pk=nightly.pk).update(enabled=False)
    out = io.StringIO()
    call_command("setup_periodic_tasks", stdout=out)
    assert "updated: analytics: rebuild changed and recent days every 60s" in out.getvalue()
    assert PeriodicTask.objects.filter(task__in=[REFRESH, NIGHTLY]).count() == 2
    assert not PeriodicTask.objects.get(task=NIGHTLY).enabled
    assert PeriodicTask.objects.get(task=REFRESH).interval.every == 60


# -- the five-minute refresh -------------------------------------------------------------------


def test_the_refresh_rebuilds_today_and_yesterday_once_five_minutes_have_passed(corp):
    """Scans buffered by the landing page reach the database late, with their visit's time,
    and record nothing the watermark sees: only the five-minute rebuild brings them in."""
    start = dt.datetime(2026, 11, 20, 10, 0, tzinfo=CST)
    codes = _codes(corp)
    slot = _slot(codes["xhs"], "staff01")
    with time_machine.travel(start - dt.timedelta(hours=1), tick=False):
        _add(corp, "wm-earlier", "staff02", codes["pyq"].state, start - dt.timedelta(days=3))
    with time_machine.travel(start, tick=False):
        assert rollups_refresh_all_task() == 1  # the first refresh: the last 35 days
    assert _computed(corp) == dict.fromkeys(_last_days(corp, start), start)

    # Flushed from the buffer a minute later: a scan of today, one of yesterday near midnight.
    _scan(codes["xhs"], start - dt.timedelta(minutes=2), "device-1", slot)
    _scan(codes["xhs"], dt.datetime(2026, 11, 19, 23, 58, tzinfo=CST), "device-2", slot)
    almost = start + RECENT_EVERY - dt.timedelta(seconds=1)
    with time_machine.travel(almost, tick=False):
        rollups_refresh_all_task()
    assert _computed(corp) == dict.fromkeys(_last_days(corp, start), start)  # not yet
    assert not DailyFlow.objects.filter(corp=corp, scans__gt=0).exists()

    due = start + RECENT_EVERY
    with time_machine.travel(due, tick=False):
        rollups_refresh_all_task()
    today, yesterday = dt.date(2026, 11, 20), dt.date(2026, 11, 19)
    computed = _computed(corp)
    assert {day for day, at in computed.items() if at == due} == {today, yesterday}
    assert all(at == start for day, at in computed.items() if day not in (today, yesterday))
    scans = DailyFlow.objects.filter(corp=corp, touch="any", scans__gt=0)
    assert sorted(scans.values_list("day", "scans")) == [(yesterday, 1), (today, 1)]

    # And again five minutes after that one, not before.
    with time_machine.travel(due + RECENT_EVERY - dt.timedelta(seconds=1), tick=False):
        rollups_refresh_all_task()
    assert {day for day, at in _computed(corp).items() if at > due} == set()
    with time_machine.travel(due + RECENT_EVERY, tick=False):
        rollups_refresh_all_task()
    assert {day for day, at in _computed(corp).items() if at > due} == {today, yesterday}


# -- the nightly rebuild -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shanghai", "new_york"),
    [
        ((1, 59), ()),  # a minute early
        ((2, 0), ("Shanghai",)),
        ((2, 59), ("Shanghai",)),
        ((3, 0), ()),  # an hour's check later: too late
        ((15, 30), ("New York",)),  # 02:30 in New York (EST, November)
        ((14, 30), ()),  # 01:30 in New York
    ],
)
def test_the_nightly_check_rebuilds_the_last_35_days_of_the_corps_whose_clock_reads_two(
    corp, shanghai, new_york
):
    other = CorpFactory(time_zone=NEW_YORK)
    CorpFactory(is_active=False)  # a corp whose contract ended: never rebuilt
    now = dt.datetime(2026, 11, 6, *shanghai, tzinfo=CST)
    with time_machine.travel(now, tick=False):
        queued = rollups_nightly_all_task()  # eager in tests: each corp's rebuild ran too
    assert queued == len(new_york)
    for name, which in (("Shanghai", corp), ("New York", other)):
        expected = dict.fromkeys(_last_days(which, now), now) if name in new_york else {}
        assert _computed(which) == expected, name
    assert RollupDay.objects.count() == NIGHTLY_DAYS * len(new_york)


@pytest.mark.parametrize(
    ("local", "due"),
    [
        (dt.datetime(2026, 3, 8, 1, 30), False),
        (dt.datetime(2026, 3, 8, 3, 15), True),  # clocks jumped from 02:00 to 03:00 tonight
        (dt.datetime(2026, 3, 9, 2, 15), True),
        (dt.datetime(2026, 3, 9, 3, 15), False),  # an ordinary night: 02:xx happened
        (dt.datetime(2026, 11, 1, 1, 30), False),  # falling back: 01:xx twice, 02:xx once
        (dt.datetime(2026, 11, 1, 2, 30), True),
    ],
)
def test_the_night_clocks_spring_forward_rebuilds_at_three(local, due):
    zone = ZoneInfo(NEW_YORK)
    assert nightly_hour(local.replace(tzinfo=zone).astimezone(dt.UTC), zone) is due
    shanghai = ZoneInfo("Asia/Shanghai")  # no daylight saving: 02:xx only
    assert nightly_hour(local.replace(hour=3, tzinfo=shanghai), shanghai) is False


def test_the_rebuild_of_recent_days_covers_the_last_35_local_days_up_to_today(corp):
    """rollups_rebuild_recent_task: the corp's days from 34 days ago to today (its local
    days), and not the day before; the number of days rebuilt; a corp gone since: nothing."""
    codes = _codes(corp)
    now = dt.datetime(2026, 11, 6, 0, 30, tzinfo=CST)  # November 5 in UTC: local days count
    _add(corp, "wm-in", "staff01", codes["pyq"].state, dt.datetime(2026, 10, 3, 9, tzinfo=CST))
    _add(corp, "wm-out", "staff01", codes["pyq"].state, dt.datetime(2026, 10, 2, 9, tzinfo=CST))
    with time_machine.travel(now, tick=False):
        assert rollups_rebuild_recent_task(corp.pk) == NIGHTLY_DAYS
    computed = _computed(corp)
    assert min(computed) == dt.date(2026, 10, 3)
    assert max(computed) == dt.date(2026, 11, 6)
    assert set(computed) == _last_days(corp, now)
    assert list(DailyCohort.objects.values_list("day", "new_customers")) == [
        (dt.date(2026, 10, 3), 1)
    ]
    assert rollups_rebuild_recent_task(corp.pk + 1000) == 0  # deleted meanwhile


def test_the_nightly_rebuild_matures_retention_and_folds_in_a_late_order(corp):
    codes = _codes(corp)
    added = dt.datetime(2026, 10, 10, 10, tzinfo=CST)
    with time_machine.travel(added + dt.timedelta(hours=1), tick=False):
        _add(corp, "wm-a", "staff01", codes["pyq"].state, added)
        rollups_rebuild_recent_task(corp.pk)
    cohort = DailyCohort.objects.get(day=added.date())
    assert (cohort.new_customers, cohort.mature_30d, cohort.retained_30d) == (1, 0, 0)

    night = dt.datetime(2026, 11, 10, 2, 15, tzinfo=CST)  # 31 days on, 02:15 in Shanghai
    with time_machine.travel(night - dt.timedelta(hours=3), tick=False):
        # An order dated in the first week, sent a month late.
        _convert(corp, "wm-a", "order", added + dt.timedelta(days=5), "128.00")
    assert DailyCohort.objects.get(day=added.date()).revenue_30 == Decimal("0.00")
    with time_machine.travel(night, tick=False):
        assert rollups_nightly_all_task() == 1
    cohort = DailyCohort.objects.get(day=added.date())
    assert (cohort.mature_30d, cohort.retained_30d) == (1, 1)
    assert (cohort.revenue_7, cohort.revenue_30) == (Decimal("128.00"), Decimal("128.00"))
    assert RollupDay.objects.get(corp=corp, day=added.date()).computed_at == night
