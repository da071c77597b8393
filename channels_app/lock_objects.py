"""Row locks of the channels domain. A request holds at most one counter and one slot, and
never waits for a row while holding another: no deadlocks. select_for_update is a no-op on
SQLite, whose IMMEDIATE transactions serialise writers."""

from __future__ import annotations

from datetime import date

from django.db.models import F, QuerySet

from channels_app.models import DailyCounter, LandingSlot


def _daily_counter(*, corp_id: int, live_code_id: int, staff_id: int, day: date) -> QuerySet:
    """One DailyCounter by its natural key (the unique index)."""
    return DailyCounter.objects.filter(
        corp_id=corp_id, live_code_id=live_code_id, staff_id=staff_id, day=day
    )


def daily_counter_claim(
    *, corp_id: int, live_code_id: int, staff_id: int, day: date, cap: int | None, wait: bool
) -> bool:
    """Count one assignment on a DailyCounter if it is below `cap`; False when it is at the cap
    or (with wait=False) another transaction holds the row.

    With wait=False the row is taken with SKIP LOCKED, so concurrent requests move on to their
    next candidate instead of queueing. With wait=True a conditional UPDATE waits for the
    holder and re-checks the cap on the committed row (PostgreSQL re-evaluates the WHERE on
    the newest version), and a failed check leaves no lock behind, so a request never holds
    one counter while waiting for another: no deadlock.
    """
    queryset = _daily_counter(corp_id=corp_id, live_code_id=live_code_id, staff_id=staff_id,
                              day=day)  # fmt: skip
    if cap is not None:
        queryset = queryset.filter(assigned__lt=cap)
    if not wait:
        # One statement: UPDATE ... WHERE id IN (SELECT id ... FOR UPDATE SKIP LOCKED).
        queryset = DailyCounter.objects.filter(
            pk__in=queryset.select_for_update(skip_locked=True).values("pk")
        )
    return queryset.update(assigned=F("assigned") + 1) == 1


def daily_counter_grant(
    *, corp_id: int, live_code_id: int, staff_id: int, day: date, cap: int, chunk: int
) -> int:
    """Reserve up to `chunk` of a member's capacity for the day on its DailyCounter (the Redis
    store spends it visit by visit); returns how much was granted, 0 when the counter is at
    its cap. Each try is one conditional UPDATE whose increment is known, so the grant is
    exact under any concurrency without RETURNING: a whole chunk while one fits below the
    cap, then single units (so the last chunk-1 units cost a statement each)."""
    counter = _daily_counter(corp_id=corp_id, live_code_id=live_code_id, staff_id=staff_id,
                             day=day)  # fmt: skip
    if chunk > 1 and counter.filter(assigned__lte=cap - chunk).update(
        assigned=F("assigned") + chunk
    ):
        return chunk
    return 1 if counter.filter(assigned__lt=cap).update(assigned=F("assigned") + 1) else 0


def landing_slot_lease_lock(*, live_code_id: int, staff_id: int) -> LandingSlot | None:
    """The staff member's slot to lease next, locked: one no scan holds (never leased, or its
    lease is over) if there is one, else the one leased longest ago. Ordering by the lease's
    end, never-leased first, gives both in one query. Slots being leased by a concurrent
    request are skipped instead of waited for."""
    queryset: QuerySet[LandingSlot] = LandingSlot.objects.filter(
        live_code_id=live_code_id, staff_id=staff_id
    ).exclude(config_id="")
    return (
        queryset.select_for_update(skip_locked=True)
        .order_by(F("leased_until").asc(nulls_first=True), "pk")
        .first()
    )
