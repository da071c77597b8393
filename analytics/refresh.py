"""Which days to rebuild, and when: today and yesterday every few minutes (scans buffered by the
landing page reach the database late, with their visit's time), the last 35 days nightly, and
at once (within a minute) the past days a change touched: an add found late by calibration or
a customer's details, a deletion, a late or newly matched conversion, a cost added, edited or
deleted. The changes are found by what was recorded since the last look (a watermark per
corp), so the apps below analytics need not know of it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime, timedelta

from django.db.models import Count, Max, Min, Q, Sum
from django.utils import timezone

from analytics.models import RollupDay, RollupState
from analytics.rollups import day_range, rollups_rebuild
from channels_app.models import ChannelCost
from contacts.models import ConversionEvent, RelationEvent
from scrm import days
from scrm.wecom.models import Corp

RECENT_DAYS = 2  # today and yesterday, rebuilt every RECENT_EVERY
RECENT_EVERY = timedelta(minutes=5)
NIGHTLY_DAYS = 35  # the 30-day windows and retention of the last month's cohorts mature
# A fact committed by a transaction that started before the last look but ended after it has
# an earlier recorded time than the watermark: look back this much further (a day found twice
# is only rebuilt twice).
WATERMARK_MARGIN = timedelta(minutes=5)

Progress = Callable[[int, int], None]


def day_ranges(to_rebuild: Iterable[date]) -> Iterator[tuple[date, date]]:
    """Consecutive days as (first, last) ranges, oldest first."""
    ordered = sorted(set(to_rebuild))
    while ordered:
        first = last = ordered.pop(0)
        while ordered and ordered[0] == last + timedelta(days=1):
            last = ordered.pop(0)
        yield first, last


def rollups_rebuild_days(
    *,
    corp: Corp,
    to_rebuild: Iterable[date],
    progress: Progress | None = None,
    now: datetime | None = None,
) -> int:
    """Rebuild these days in ranges of consecutive days (one transaction per range of at most
    a week: a long rebuild never holds its locks for long); the number of days rebuilt."""
    chunks = [
        (first, min(first + timedelta(days=6), last))
        for start, last in day_ranges(to_rebuild)
        for first in day_range(start, last)
        if (first - start).days % 7 == 0
    ]
    total = sum((last - first).days + 1 for first, last in chunks)
    done = 0
    for first, last in chunks:
        rollups_rebuild(corp=corp, first=first, last=last, now=now)
        done += (last - first).days + 1
        if progress is not None:
            progress(done, total)
    return done


def _local_days(queryset, field: str, corp: Corp) -> set[date]:
    return set(
        queryset.annotate(day=days.local_day(field, corp))
        .values_list("day", flat=True)
        .distinct()
        .order_by()
    )


def days_touched_since(*, corp: Corp, since: datetime) -> set[date]:
    """The local days whose rollups facts recorded after `since` change: the days of new
    relation events, and for every customer they or a new (or newly matched) conversion
    concern, the days of all the customer's adds (its first add, before and after a late
    earlier add took its place, is one of them)."""
    events = RelationEvent.objects.filter(corp=corp, recorded_at__gt=since)
    touched = _local_days(events, "occurred_at", corp)
    conversions = ConversionEvent.objects.filter(
        Q(created_at__gt=since) | Q(matched_at__gt=since), corp=corp, external_contact__isnull=False
    )
    customers = RelationEvent.objects.filter(
        Q(external_contact__in=events.values("external_contact_id"))
        | Q(external_contact__in=conversions.values("external_contact_id")),
        corp=corp,
        kind=RelationEvent.Kind.ADDED,
    )
    return touched | _local_days(customers, "occurred_at", corp)


def _costs_seen(corp: Corp) -> tuple[str, date | None, date | None]:
    """A fingerprint of the corp's costs (a row added, edited or deleted changes it) and the
    days they cover."""
    found = ChannelCost.objects.filter(corp=corp).aggregate(
        n=Count("pk"), total=Sum("amount"), edited=Max("updated_at"),
        first=Min("start_date"), last=Max("end_date"),
    )  # fmt: skip
    text = f"{found['n']}|{found['total']}|{found['edited']}"
    return hashlib.sha256(text.encode()).hexdigest()[:32], found["first"], found["last"]


def rollups_refresh(*, corp: Corp, now: datetime | None = None, recent: int = RECENT_DAYS) -> int:
    """Rebuild the days dirtied since the last refresh (facts recorded since, cost changes,
    days marked dirty), the corp's last `recent` local days when RECENT_EVERY has passed since
    they were, and move the watermark on; the number of days rebuilt. Run every minute."""
    now = now or timezone.now()
    state, _ = RollupState.objects.get_or_create(corp=corp)
    today = days.today(corp, now=now)
    to_rebuild: set[date] = set()
    last_look = RollupDay.objects.filter(corp=corp, day=today).values_list("computed_at", flat=True)
    if not last_look or last_look[0] is None or last_look[0] <= now - RECENT_EVERY:
        to_rebuild |= set(day_range(today - timedelta(days=recent - 1), today))
    if state.facts_seen_until is None:  # the corp's first refresh: the last month at least
        to_rebuild |= set(day_range(today - timedelta(days=NIGHTLY_DAYS - 1), today))
    else:
        to_rebuild |= days_touched_since(corp=corp, since=state.facts_seen_until)
    fingerprint, cost_first, cost_last = _costs_seen(corp)
    if fingerprint != state.costs_fingerprint:
        firsts = [d for d in (cost_first, state.cost_first) if d is not None]
        lasts = [d for d in (cost_last, state.cost_last) if d is not None]
        if firsts and lasts:
            to_rebuild |= set(day_range(min(firsts), min(max(lasts), today)))
    to_rebuild |= set(RollupDay.objects.filter(corp=corp, dirty=True).values_list("day", flat=True))
    rebuilt = rollups_rebuild_days(corp=corp, to_rebuild=to_rebuild, now=now)
    state.facts_seen_until = now - WATERMARK_MARGIN
    state.costs_fingerprint, state.cost_first, state.cost_last = fingerprint, cost_first, cost_last
    state.save()
    return rebuilt


def rollups_rebuild_recent(
    *, corp: Corp, since: date | None = None, progress: Progress | None = None
) -> int:
    """Rebuild the corp's days from `since` (default: the last NIGHTLY_DAYS) to today."""
    today = days.today(corp)
    since = since or today - timedelta(days=NIGHTLY_DAYS - 1)
    return rollups_rebuild_days(corp=corp, to_rebuild=day_range(since, today), progress=progress)
