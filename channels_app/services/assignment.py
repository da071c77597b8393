"""Assignment: the pure engine (channels_app.assignment) ranks the candidates from today's
counters, and a conditional update claims one, so a daily cap holds with any number of
concurrent requests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from django.db import transaction
from django.db.models import F, OuterRef, Subquery
from django.utils import timezone

from channels_app.assignment import (
    Candidate,
    eligible,
    members_on_duty,
    rank_staff,
)
from channels_app.lock_objects import daily_counter_claim
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


def _members(live_code: LiveCode, store: Store | None) -> list[PoolMember]:
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


def _members_with_counters(
    live_code: LiveCode, store: Store | None, day: date
) -> tuple[list[PoolMember], dict[int, DailyCounter]]:
    """Enabled pool members and their counters for `day`, read in one query (no lock: they
    rank the candidates; the claim re-checks the cap). Missing counters are created first."""
    counter = DailyCounter.objects.filter(live_code=live_code, staff=OuterRef("staff"), day=day)
    queryset = (
        live_code.pool.filter(is_enabled=True)
        .select_related("staff")
        .annotate(
            counter_id=Subquery(counter.values("pk")[:1]),
            assigned_today=Subquery(counter.values("assigned")[:1]),
        )
        .order_by("pk")
    )
    if store is not None:
        queryset = queryset.filter(stores=store)
    members = list(queryset)
    if any(m.counter_id is None for m in members):  # the first visit of the day
        counters_ensure(live_code=live_code, day=day, staff_ids=[m.staff_id for m in members])
        members = list(queryset.all())
    counters = {
        m.staff_id: DailyCounter(pk=m.counter_id, staff_id=m.staff_id, assigned=m.assigned_today)
        for m in members
    }
    return members, counters


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


@transaction.atomic(savepoint=False)  # inside the visit's transaction: no SAVEPOINT round trips
def staff_assign(
    *,
    live_code: LiveCode,
    now: datetime | None = None,
    store: Store | None = None,
    members: Sequence[PoolMember] | None = None,
) -> Staff | None:
    """Pick a staff member for one landing scan and count it. None when everyone (backups
    included) is capped, off shift or gone.

    Counters are read without a lock to rank the candidates; the first candidate whose counter
    can be claimed below its cap gets the scan. Rows held by concurrent requests are skipped on
    the first pass, so 32 visitors at once spread over the pool instead of queueing on one row;
    only when every candidate is held does a request wait (see daily_counter_claim).

    `members`, when given, are the code's enabled pool members already loaded (for a visit
    without a store); otherwise they are read with the counters.
    """
    moment = local_now(live_code, now)
    if members is not None and store is None:
        counters = daily_counters_read(live_code=live_code, members=members, day=moment.date())
    else:
        members, counters = _members_with_counters(live_code, store, moment.date())
    if not members:
        return None
    assigned = {staff_id: c.assigned for staff_id, c in counters.items()}
    ranked = staff_ranked(live_code, members, assigned, members_on_duty_for(live_code, moment))
    staff_of = {m.staff_id: m.staff for m in members}
    for wait in (False, True):
        for candidate in ranked:
            claimed = daily_counter_claim(
                counter_id=counters[candidate.staff_id].pk, cap=candidate.cap, wait=wait
            )
            if claimed:
                return staff_of[candidate.staff_id]
    return None


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
    added = {staff_id: c.added for staff_id, c in counters.items()}
    pool = eligible(_candidates(members, added, members_on_duty_for(live_code, moment)))
    pool.sort(key=lambda c: ((c.load + 1) / (c.cap or 10**6), c.staff_id))
    userid_of = {m.staff_id: m.staff.userid for m in members}
    return [userid_of[c.staff_id] for c in pool[:MAX_CONTACT_WAY_USERS]]
