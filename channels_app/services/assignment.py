"""Assignment: the pure engine (channels_app.assignment) ranks the candidates from today's
loads; the landing store claims the first it can (channels_app.landing_store), so a daily cap
holds with any number of concurrent requests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from django.db.models import F
from django.utils import timezone

from channels_app.assignment import (
    Candidate,
    eligible,
    members_on_duty,
    rank_staff,
)
from channels_app.models import DailyCounter, LiveCode, PoolMember, Store
from channels_app.selectors import schedule_read
from contacts.models import Staff
from scrm import days

MAX_CONTACT_WAY_USERS = 100  # WeCom's limit per contact way (41041)


def local_now(live_code: LiveCode, now: datetime | None = None) -> datetime:
    """Now (or `now`) on the clock of the code's corp: its local day counts the caps."""
    return days.local_datetime(now or timezone.now(), live_code.corp)


def members_on_duty_for(live_code: LiveCode, moment: datetime) -> frozenset[int] | None:
    """Pool member ids on duty at `moment` (local time); None when the code has no shifts.
    A code loaded with `has_schedule` annotated (the landing view's) skips the queries when it
    has neither weekly shifts nor special dates."""
    if getattr(live_code, "has_schedule", True) is False:
        return None
    shifts, specials = schedule_read(live_code, day=moment.date())
    return members_on_duty(shifts, specials, moment)


def pool_members(live_code: LiveCode, store: Store | None) -> list[PoolMember]:
    """The code's enabled pool members with their staff, in pool order; a store's only."""
    queryset = live_code.pool.filter(is_enabled=True).select_related("staff")
    if store is not None:
        queryset = queryset.filter(stores=store)
    return list(queryset.order_by("pk"))


def _candidates(
    members: Sequence[PoolMember], loads: dict[int, int], on_duty: frozenset[int] | None
) -> list[Candidate]:
    return [
        Candidate(
            staff_id=member.staff_id,
            weight=member.weight,
            cap=member.daily_cap,
            load=loads.get(member.staff_id, 0),
            is_backup=member.is_backup,
            on_shift=on_duty is None or member.pk in on_duty,
            active=member.staff.status == Staff.Status.ACTIVE,
            avg_reply_minutes=member.staff.avg_reply_minutes,
        )
        for member in members
    ]


def counters_ensure(*, live_code: LiveCode, day: date, staff_ids: list[int]) -> None:
    DailyCounter.objects.bulk_create(
        [
            DailyCounter(corp_id=live_code.corp_id, live_code=live_code, staff_id=s, day=day)
            for s in staff_ids
        ],
        ignore_conflicts=True,
    )


def daily_counters_read(
    *, live_code: LiveCode, members: Sequence[PoolMember], day: date
) -> dict[int, DailyCounter]:
    """The day's counters of already loaded pool members (the landing page's cached pool) by
    staff id, read in one query without a lock; missing counters are created first."""

    staff_ids = [m.staff_id for m in members]

    def read() -> dict[int, DailyCounter]:
        rows = DailyCounter.objects.filter(
            live_code=live_code, day=day, staff_id__in=staff_ids
        ).values_list("staff_id", "pk", "assigned")
        return {s: DailyCounter(pk=pk, staff_id=s, assigned=n) for s, pk, n in rows}

    counters = read()
    if len(counters) < len(set(staff_ids)):  # the first visit of the day
        counters_ensure(live_code=live_code, day=day, staff_ids=staff_ids)
        counters = read()
    return counters


def staff_ranked(
    live_code: LiveCode,
    members: Sequence[PoolMember],
    assigned: dict[int, int],
    on_duty: frozenset[int] | None,
) -> list[Candidate]:
    """The members a landing visit may go to, in the order the code's strategy tries them,
    from today's assignments by staff id (the engine in channels_app.assignment)."""
    return rank_staff(
        _candidates(members, assigned, on_duty),
        strategy=live_code.strategy,
        rotation=sum(assigned.values()),
        penalize_slow_reply=live_code.penalize_slow_reply,
    )


def counter_bump_added(*, live_code: LiveCode, staff_id: int, at: datetime) -> None:
    """Count one add for (code, staff, local day) with an atomic update."""
    day = local_now(live_code, at).date()
    counters_ensure(live_code=live_code, day=day, staff_ids=[staff_id])
    DailyCounter.objects.filter(live_code=live_code, staff_id=staff_id, day=day).update(
        added=F("added") + 1
    )


def native_userids(live_code: LiveCode, now: datetime | None = None) -> list[str]:
    """The userids a native code's contact way should list now: eligible staff by today's adds
    (least loaded first), at most 100. Empty when nobody, backups included, may take more."""
    moment = local_now(live_code, now)
    members = pool_members(live_code, None)
    counters = {
        c.staff_id: c for c in DailyCounter.objects.filter(live_code=live_code, day=moment.date())
    }
    added = {staff_id: c.added for staff_id, c in counters.items()}
    pool = eligible(_candidates(members, added, members_on_duty_for(live_code, moment)))
    pool.sort(key=lambda c: ((c.load + 1) / (c.cap or 10**6), c.staff_id))
    userid_of = {m.staff_id: m.staff.userid for m in members}
    return [userid_of[c.staff_id] for c in pool[:MAX_CONTACT_WAY_USERS]]
