"""Assignment under locks: the pure engine (channels_app.assignment) fed with counters read
under a row lock, so a daily cap holds with any number of concurrent requests."""

from __future__ import annotations

from datetime import date, datetime

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from channels_app.assignment import (
    Candidate,
    Shift,
    SpecialDate,
    eligible,
    members_on_duty,
    pick_staff,
)
from channels_app.lock_objects import daily_counters_lock
from channels_app.models import DailyCounter, LiveCode, PoolMember, Store
from contacts.models import Staff

MAX_CONTACT_WAY_USERS = 100  # WeCom's limit per contact way (41041)


def local_now(live_code: LiveCode, now: datetime | None = None) -> datetime:
    return (now or timezone.now()).astimezone(live_code.corp.tzinfo)


def members_on_duty_for(live_code: LiveCode, moment: datetime) -> frozenset[int] | None:
    """Pool member ids on duty at `moment` (local time); None when the code has no shifts."""
    shifts = [
        Shift(
            weekdays=frozenset(int(d) for d in rule.weekdays),
            start=rule.start_time,
            end=rule.end_time,
            member_ids=frozenset(m.pk for m in rule.members.all()),
        )
        for rule in live_code.schedules.prefetch_related("members")
    ]
    specials = [
        SpecialDate(
            day=item.date,
            closed=item.closed,
            start=item.start_time,
            end=item.end_time,
            member_ids=frozenset(m.pk for m in item.members.all()),
        )
        for item in live_code.overrides.filter(date=moment.date()).prefetch_related("members")
    ]
    return members_on_duty(shifts, specials, moment)


def _members(live_code: LiveCode, store: Store | None) -> list[PoolMember]:
    queryset = live_code.pool.filter(is_enabled=True).select_related("staff")
    if store is not None:
        queryset = queryset.filter(stores=store)
    return list(queryset.order_by("pk"))


def _candidates(
    members: list[PoolMember],
    counters: dict[int, DailyCounter],
    on_duty: frozenset[int] | None,
    *,
    load: str,
) -> list[Candidate]:
    return [
        Candidate(
            staff_id=member.staff_id,
            weight=member.weight,
            cap=member.daily_cap,
            load=getattr(counters[member.staff_id], load) if member.staff_id in counters else 0,
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


@transaction.atomic
def staff_assign(
    *, live_code: LiveCode, now: datetime | None = None, store: Store | None = None
) -> Staff | None:
    """Pick a staff member for one landing scan and count it, under a lock on the code's
    counters for today. None when everyone (backups included) is capped, off shift or gone."""
    moment = local_now(live_code, now)
    members = _members(live_code, store)
    if not members:
        return None
    staff_ids = [m.staff_id for m in members]
    counters_ensure(live_code=live_code, day=moment.date(), staff_ids=staff_ids)
    locked = daily_counters_lock(live_code_id=live_code.pk, day=moment.date(), staff_ids=staff_ids)
    counters = {c.staff_id: c for c in locked}
    choice = pick_staff(
        _candidates(members, counters, members_on_duty_for(live_code, moment), load="assigned"),
        strategy=live_code.strategy,
        rotation=sum(c.assigned for c in locked),
        penalize_slow_reply=live_code.penalize_slow_reply,
    )
    if choice is None:
        return None
    DailyCounter.objects.filter(pk=counters[choice.staff_id].pk).update(assigned=F("assigned") + 1)
    return next(m.staff for m in members if m.staff_id == choice.staff_id)


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
    members = _members(live_code, None)
    counters = {
        c.staff_id: c for c in DailyCounter.objects.filter(live_code=live_code, day=moment.date())
    }
    pool = eligible(
        _candidates(members, counters, members_on_duty_for(live_code, moment), load="added")
    )
    pool.sort(key=lambda c: ((c.load + 1) / (c.cap or 10**6), c.staff_id))
    userid_of = {m.staff_id: m.staff.userid for m in members}
    return [userid_of[c.staff_id] for c in pool[:MAX_CONTACT_WAY_USERS]]
