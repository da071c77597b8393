"""The pure assignment engine and shift logic, without a database."""

import datetime as dt
from collections import Counter

import pytest

from channels_app.assignment import (
    Candidate,
    Shift,
    SpecialDate,
    members_on_duty,
    pick_staff,
    rank_staff,
)


def _run(candidates, strategy, rounds, **kw):
    """Assign `rounds` customers, feeding each pick back as load, as the service does."""
    load = {c.staff_id: c.load for c in candidates}
    picks = []
    for turn in range(rounds):
        current = [Candidate(**{**c.__dict__, "load": load[c.staff_id]}) for c in candidates]
        choice = pick_staff(current, strategy=strategy, rotation=turn, **kw)
        if choice is None:
            picks.append(None)
            continue
        load[choice.staff_id] += 1
        picks.append(choice.staff_id)
    return picks


def test_round_robin_cycles_in_staff_order():
    staff = [Candidate(3), Candidate(1), Candidate(2)]
    assert _run(staff, "round_robin", 6) == [1, 2, 3, 1, 2, 3]


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("round_robin", [3, 4, 1, 2]),  # rotation 6 over four: starts at the third
        ("weighted", [4, 3, 2, 1]),  # (load + 1) / weight: 1/4, 2/3, 4/2, 6/1
        ("least_loaded", [3, 4, 2, 1]),  # (load + 1) / cap: 2/50, 1/10, 4/20, 6/10
    ],
)
def test_rank_orders_every_eligible_candidate_for_fallback(strategy, expected):
    staff = [
        Candidate(1, load=5, cap=10, weight=1),
        Candidate(2, load=3, cap=20, weight=2),
        Candidate(3, load=1, cap=50, weight=3),
        Candidate(4, load=0, cap=10, weight=4),
        Candidate(5, load=10, cap=10, weight=9),  # capped: never ranked
    ]
    ranked = rank_staff(staff, strategy=strategy, rotation=6)
    assert [c.staff_id for c in ranked] == expected
    assert pick_staff(staff, strategy=strategy, rotation=6) == ranked[0]


def test_weighted_spreads_in_proportion_to_weights():
    staff = [Candidate(1, weight=3), Candidate(2, weight=1)]
    assert Counter(_run(staff, "weighted", 40)) == {1: 30, 2: 10}


def test_least_loaded_fills_by_ratio_to_cap():
    staff = [Candidate(1, cap=10, load=5), Candidate(2, cap=100, load=20)]
    assert _run(staff, "least_loaded", 1) == [2]


def test_slow_responders_are_weighed_down():
    staff = [Candidate(1, cap=10, avg_reply_minutes=180), Candidate(2, cap=10, load=2)]
    assert _run(staff, "least_loaded", 1, penalize_slow_reply=True) == [2]
    assert _run(staff, "least_loaded", 1, penalize_slow_reply=False) == [1]


@pytest.mark.parametrize("strategy", ["round_robin", "weighted", "least_loaded"])
def test_caps_are_never_exceeded_and_backup_takes_over(strategy):
    staff = [Candidate(1, cap=2), Candidate(2, cap=3), Candidate(9, cap=1, is_backup=True)]
    picks = _run(staff, strategy, 8)
    assert Counter(picks) == {1: 2, 2: 3, 9: 1, None: 2}
    assert picks.index(9) == 5  # only once the primaries are full


def test_left_disabled_or_off_shift_staff_are_skipped():
    staff = [Candidate(1, active=False), Candidate(2, on_shift=False), Candidate(3)]
    assert set(_run(staff, "round_robin", 4)) == {3}
    backup_off_shift = [Candidate(1, on_shift=False), Candidate(5, is_backup=True, on_shift=False)]
    assert _run(backup_off_shift, "least_loaded", 1) == [5]  # backups ignore shifts


def _at(y, m, d, h, minute=0):
    return dt.datetime(y, m, d, h, minute)


DAY = Shift(frozenset({1, 2, 3, 4, 5}), dt.time(9), dt.time(18), frozenset({10}))
NIGHT = Shift(frozenset({1, 2, 3, 4, 5}), dt.time(18), dt.time(9), frozenset({20}))
WEEKEND = Shift(frozenset({6, 7}), dt.time(0), dt.time(0), frozenset({30}))


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (_at(2026, 11, 23, 10), {10}),  # Monday daytime
        (_at(2026, 11, 23, 18), {20}),  # Monday 18:00: the evening shift starts
        (_at(2026, 11, 24, 3), {20}),  # Tuesday 03:00: Monday's night shift runs on
        (_at(2026, 11, 28, 3), {20, 30}),  # Saturday 03:00: Friday's night shift + weekend
        (_at(2026, 11, 29, 12), {30}),  # Sunday noon
        (_at(2026, 11, 23, 3), set()),  # Monday 03:00: no night shift on Sunday, weekend over
    ],
)
def test_shifts_across_weekdays_and_midnight(moment, expected):
    assert members_on_duty([DAY, NIGHT, WEEKEND], [], moment) == expected


def test_special_dates_replace_weekly_shifts():
    holiday = SpecialDate(dt.date(2026, 10, 1), True, None, None, frozenset())
    short_day = SpecialDate(dt.date(2026, 12, 31), False, dt.time(10), dt.time(15),
                            frozenset({10}))  # fmt: skip
    assert members_on_duty([DAY], [holiday], _at(2026, 10, 1, 10)) == frozenset()
    assert members_on_duty([DAY], [short_day], _at(2026, 12, 31, 11)) == {10}
    assert members_on_duty([DAY], [short_day], _at(2026, 12, 31, 16)) == frozenset()
    assert members_on_duty([], [], _at(2026, 12, 31, 16)) is None  # no schedule: all on duty


def test_corp_time_zone_decides_the_shift(make_code, corp):
    from zoneinfo import ZoneInfo

    from channels_app.models import ScheduleRule
    from channels_app.services.assignment import members_on_duty_for

    code = make_code()
    rule = ScheduleRule.objects.create(live_code=code, start_time=dt.time(9), end_time=dt.time(18))
    rule.members.set(code.pool.all()[:1])
    utc_0200 = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)  # 10:00 in Shanghai
    assert members_on_duty_for(code, utc_0200.astimezone(ZoneInfo("Asia/Shanghai")))
    corp.time_zone = "America/New_York"  # 21:00 the evening before: nobody
    corp.save()
    code.refresh_from_db()
    assert members_on_duty_for(code, utc_0200.astimezone(code.corp.tzinfo)) == frozenset()
