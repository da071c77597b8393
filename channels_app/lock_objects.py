"""Row locks of the channels domain, always taken in primary-key order (no deadlocks).
select_for_update is a no-op on SQLite, whose IMMEDIATE transactions serialise writers."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Q, QuerySet
from django.utils import timezone

from channels_app.models import DailyCounter, LandingSlot


def daily_counters_lock(*, live_code_id: int, day, staff_ids: Iterable[int]) -> list[DailyCounter]:
    return list(
        DailyCounter.objects.select_for_update()
        .filter(live_code_id=live_code_id, day=day, staff_id__in=list(staff_ids))
        .order_by("pk")
    )


def free_landing_slot_lock(*, live_code_id: int, staff_id: int) -> LandingSlot | None:
    """A slot of this staff member that no scan holds, locked; skips slots being leased by a
    concurrent request instead of waiting for them."""
    queryset: QuerySet[LandingSlot] = LandingSlot.objects.filter(
        Q(leased_until__isnull=True) | Q(leased_until__lt=timezone.now()),
        live_code_id=live_code_id,
        staff_id=staff_id,
    ).exclude(config_id="")
    return queryset.select_for_update(skip_locked=True).order_by("leased_until", "pk").first()
