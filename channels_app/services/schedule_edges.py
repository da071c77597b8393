"""Which native codes reach a window edge now: the beat task syncs only those."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from django.db.models import Q
from django.utils import timezone

from channels_app.models import LiveCode, PoolMember, ScheduleOverride, ScheduleRule
from scrm import days
from scrm.wecom.models import Corp


def _between(field: str, start: time, end: time) -> Q:
    """field in (start, end], wrapping past midnight."""
    if start < end:
        return Q(**{f"{field}__gt": start, f"{field}__lte": end})
    return Q(**{f"{field}__gt": start}) | Q(**{f"{field}__lte": end})


def live_codes_at_window_edge(*, now: datetime | None = None, span_seconds: int = 60) -> set[int]:
    now = now or timezone.now()
    ids: set[int] = set()
    for corp in Corp.objects.filter(is_active=True):
        local = days.local_datetime(now, corp)
        start, end = (local - timedelta(seconds=span_seconds)).time(), local.time()
        native = {"live_code__corp": corp, "live_code__mode": LiveCode.Mode.NATIVE,
                  "live_code__status": LiveCode.Status.ACTIVE}  # fmt: skip
        rules = ScheduleRule.objects.filter(
            _between("start_time", start, end) | _between("end_time", start, end), **native
        )
        overrides = ScheduleOverride.objects.filter(
            _between("start_time", start, end) | _between("end_time", start, end),
            date=local.date(),
            **native,
        )
        codes = LiveCode.objects.filter(
            _between("auto_accept_from", start, end) | _between("auto_accept_to", start, end),
            corp=corp, mode=LiveCode.Mode.NATIVE, status=LiveCode.Status.ACTIVE,
        )  # fmt: skip
        ids |= set(rules.values_list("live_code_id", flat=True))
        ids |= set(overrides.values_list("live_code_id", flat=True))
        ids |= set(codes.values_list("pk", flat=True))
        if start > end or start == time(0, 0):  # local midnight: daily caps reset
            capped = PoolMember.objects.filter(daily_cap__isnull=False, **native)
            ids |= set(capped.values_list("live_code_id", flat=True))
            # Yesterday's special dates end, today's begin.
            ids |= set(
                ScheduleOverride.objects.filter(
                    date__in=[local.date(), local.date() - timedelta(days=1)], **native
                ).values_list("live_code_id", flat=True)
            )
    return ids
