"""Surges: a live code suddenly much busier than usual for this hour of the week. Its new
customers get the corp's surge tag (紧急跟进 by default) and the operators see an alert in the
admin until the rate falls back.

The rule, per corp (DecisionSettings: surge_multiplier, surge_min_count, surge_weeks), checked
every minute by beat (`surges_check_all_task`):
- For each live code, count its scans (landing codes record them) and its adds (every add
  credited to the code through its Attribution, first adds and re-adds alike) in the last
  hour, [now - 1 h, now).
- Its usual level for this hour of the week is the median of the same one-hour window 7, 14,
  ..., 7 x surge_weeks days earlier. A week without any counts as 0; with an even number of
  weeks the median is the mean of the two middle ones. "7 days earlier" is read on the corp's
  clock, so the window is the same local weekday and hour across a daylight-saving change; in
  a zone without one (Asia/Shanghai) it is exactly 168 hours earlier whatever the zone.
- A metric surges when count > surge_multiplier x median and count >= surge_min_count; a code
  surges when its scans or its adds do. A code without history (median 0) therefore surges as
  soon as its hour reaches the minimum: for a new code the minimum is the only guard.
- An alert opens at the first check where the code surges (at most one open alert per code)
  and ends at the first check where it no longer does: no hysteresis. The one-hour window
  slides by the minute, so a burst stays in the count for the hour after it and the alert does
  not flicker with each add; it ends at most an hour after the burst has stopped.
- The code's new customers during the surge, those whose first add came through the code from
  the start of the detection window (detection - 1 h) until the alert ends, get the surge tag
  (tag_ensure in the auto_tag_group, then tags_apply with source "surge": mark_tag once per
  customer, the tag and the customer's timeline mirrored). Customers who arrive while the
  alert is open are tagged by the following checks; adds of an ended alert's period whose
  callbacks come late are tagged by the checks of the hour after its end.
- surge_enabled off: nothing is counted or tagged, and open alerts end at the next check.

Counting is done in the database: one grouped query per metric for all codes of the corp,
with one conditional count per window. No transaction is held across a WeCom call.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, F, Q, QuerySet
from django.db.models.functions import Greatest
from django.utils import timezone

from analytics.models import DecisionSettings, SurgeAlert, decision_settings_for
from channels_app.models import Attribution, Scan
from contacts.models import CustomerTag, FollowRelation
from contacts.tags import TagLibraryError, tag_ensure, tags_apply
from scrm import days
from scrm.wecom import tenancy
from scrm.wecom.client import WeComError, WeComTransientError
from scrm.wecom.models import Corp

logger = logging.getLogger("analytics.surges")

HOUR = timedelta(hours=1)
# Ended alerts are looked at for this long after their end: adds of their period whose
# callbacks arrived late (a retried callback, calibration) are tagged too.
LATE_ADDS = timedelta(hours=1)
# One check and one tagging per corp at a time; tagging thousands of customers (one mark_tag
# each) may run past the next minute's check, whose tagging then skips this corp instead of
# tagging them twice.
CHECK_LOCK_SECONDS = 600
BANNER_ALERTS = 10  # the admin banner names at most this many open alerts


@dataclass(frozen=True)
class CodeHour:
    """A live code's last hour against its usual level for this hour of the week."""

    live_code_id: int
    scans: int
    scans_usual: Decimal
    adds: int
    adds_usual: Decimal
    scans_surge: bool
    adds_surge: bool

    @property
    def surges(self) -> bool:
        return self.scans_surge or self.adds_surge

    @property
    def metric(self) -> str:
        if self.scans_surge and self.adds_surge:
            return SurgeAlert.Metric.BOTH
        return SurgeAlert.Metric.SCANS if self.scans_surge else SurgeAlert.Metric.ADDS


@dataclass
class SurgeCheck:
    opened: int = 0
    ended: int = 0
    tagged: int = 0
    codes: dict[int, CodeHour] = field(default_factory=dict)


def surge_windows(*, now: datetime, weeks: int, zone: tzinfo) -> list[tuple[datetime, datetime]]:
    """UTC [start, end) of the last hour, then of the same hour 1..weeks weeks earlier. A week
    earlier is the same wall-clock time on the corp's clock (aware arithmetic in its zone)."""
    local_now = now.astimezone(zone)
    windows = []
    for week in range(weeks + 1):
        end = (local_now - timedelta(days=7 * week)).astimezone(UTC)
        windows.append((end - HOUR, end))
    return windows


def _counts_per_code(
    queryset: QuerySet, time_field: str, windows: list[tuple[datetime, datetime]]
) -> dict[int, list[int]]:
    """One grouped query: per live code, its rows in each window (conditional counts), over the
    rows of the windows only (the time column's index, not weeks of rows)."""
    in_any = Q()
    counts: dict[str, Any] = {}
    for index, (start, end) in enumerate(windows):
        window = Q(**{f"{time_field}__gte": start, f"{time_field}__lt": end})
        in_any |= window
        counts[f"w{index}"] = Count("pk", filter=window)
    rows = queryset.filter(in_any).values("live_code_id").annotate(**counts).order_by()
    return {row["live_code_id"]: [row[f"w{i}"] for i in range(len(windows))] for row in rows}


def _usual(history: list[int]) -> Decimal:
    return Decimal(statistics.median(history)) if history else Decimal(0)


def _surges(count: int, usual: Decimal, settings: DecisionSettings) -> bool:
    return count > settings.surge_multiplier * usual and count >= settings.surge_min_count


def surge_hours(
    *, corp: Corp, now: datetime, settings: DecisionSettings | None = None
) -> dict[int, CodeHour]:
    """Every live code of the corp with a scan or an add in the last hour or in one of the
    weeks' windows, judged by the rule (two queries: scans, adds)."""
    settings = settings or decision_settings_for(corp)
    windows = surge_windows(now=now, weeks=settings.surge_weeks, zone=corp.tzinfo)
    scans = _counts_per_code(Scan.objects.filter(corp=corp), "created_at", windows)
    adds = _counts_per_code(
        Attribution.objects.filter(corp=corp, live_code__isnull=False), "added_at", windows
    )
    empty = [0] * len(windows)
    hours = {}
    for code_id in scans.keys() | adds.keys():
        code_scans, code_adds = scans.get(code_id, empty), adds.get(code_id, empty)
        scans_usual, adds_usual = _usual(code_scans[1:]), _usual(code_adds[1:])
        hours[code_id] = CodeHour(
            live_code_id=code_id,
            scans=code_scans[0],
            scans_usual=scans_usual,
            adds=code_adds[0],
            adds_usual=adds_usual,
            scans_surge=_surges(code_scans[0], scans_usual, settings),
            adds_surge=_surges(code_adds[0], adds_usual, settings),
        )
    return hours


@transaction.atomic
def surge_alerts_update(
    *, corp: Corp, hours: dict[int, CodeHour], now: datetime
) -> tuple[int, int]:
    """Open an alert for each surging code without one, raise the open ones' peaks, end the
    open ones whose code no longer surges. Returns (opened, ended). Idempotent: a second
    check racing this one meets surge_alert_one_open_per_code and opens nothing more."""
    surging = {code_id: hour for code_id, hour in hours.items() if hour.surges}
    open_alerts = {
        alert.live_code_id: alert
        for alert in SurgeAlert.objects.filter(corp=corp, ended_at__isnull=True)
    }
    ended = SurgeAlert.objects.filter(
        pk__in=[alert.pk for code_id, alert in open_alerts.items() if code_id not in surging]
    ).update(ended_at=now)
    for code_id, alert in open_alerts.items():
        hour = surging.get(code_id)
        if hour and (hour.scans > alert.peak_scans or hour.adds > alert.peak_adds):
            SurgeAlert.objects.filter(pk=alert.pk).update(
                peak_scans=Greatest("peak_scans", hour.scans),
                peak_adds=Greatest("peak_adds", hour.adds),
            )
    new = [
        SurgeAlert(corp=corp, live_code_id=code_id, metric=hour.metric, started_at=now,
                   scans=hour.scans, scans_usual=hour.scans_usual, adds=hour.adds,
                   adds_usual=hour.adds_usual, peak_scans=hour.scans, peak_adds=hour.adds)
        for code_id, hour in surging.items() if code_id not in open_alerts
    ]  # fmt: skip
    SurgeAlert.objects.bulk_create(new, ignore_conflicts=True)
    return len(new), ended


def _customers_to_tag(
    *, corp: Corp, settings: DecisionSettings, now: datetime
) -> list[tuple[SurgeAlert, list[FollowRelation]]]:
    """Per alert open or recently ended: the follow relations of the first adds through its
    code in its period not yet carrying the surge tag (one query for the alerts, one each)."""
    alerts = SurgeAlert.objects.filter(corp=corp).filter(
        Q(ended_at__isnull=True) | Q(ended_at__gte=now - LATE_ADDS)
    )
    tagged = CustomerTag.objects.filter(
        corp=corp, tag__name=settings.surge_tag_name, tag__deleted=False
    ).values("follow_relation_id")
    found = []
    for alert in alerts.order_by("pk"):
        period = Q(added_at__gte=alert.started_at - HOUR)
        if alert.ended_at is not None:
            period &= Q(added_at__lt=alert.ended_at)
        relations = [
            attribution.follow_relation
            for attribution in Attribution.objects.filter(
                period, corp=corp, live_code_id=alert.live_code_id, is_first_touch=True,
                follow_relation__status=FollowRelation.Status.ACTIVE,
            ).exclude(follow_relation_id__in=tagged).select_related("follow_relation")
            .order_by("added_at", "pk")
        ]  # fmt: skip
        if relations:
            found.append((alert, relations))
    return found


def surge_tagging_due(*, corp: Corp, now: datetime) -> bool:
    """Whether an alert is open or ended recently enough that its customers may need the tag."""
    return SurgeAlert.objects.filter(
        Q(ended_at__isnull=True) | Q(ended_at__gte=now - LATE_ADDS), corp=corp
    ).exists()


def surge_customers_tag(*, corp: Corp, now: datetime | None = None) -> int:
    """Tag the surges' new customers (see the module's docstring); returns how many were
    tagged now (0 while another tagging of the corp runs). A customer WeCom refuses is logged
    and tried again at the next check; a rate limit or network error stops this round (the
    next check carries on)."""
    now = now or timezone.now()
    settings = decision_settings_for(corp)
    if not settings.surge_enabled:
        return 0
    lock = f"analytics:surge-tag:{corp.pk}"
    if not cache.add(lock, 1, CHECK_LOCK_SECONDS):
        return 0
    try:
        return _customers_tag(corp=corp, settings=settings, now=now)
    except WeComTransientError as exc:
        logger.warning("surge tagging of corp %s stopped: %s", corp.corp_id, exc)
        return 0
    finally:
        cache.delete(lock)


def _customers_tag(*, corp: Corp, settings: DecisionSettings, now: datetime) -> int:
    found = _customers_to_tag(corp=corp, settings=settings, now=now)
    if not found:
        return 0
    try:
        tag = tag_ensure(
            corp=corp, group_name=settings.auto_tag_group, name=settings.surge_tag_name
        )
    except TagLibraryError as exc:
        logger.warning("surge tag not available for corp %s: %s", corp.corp_id, exc.message)
        return 0
    total = 0
    for alert, relations in found:
        tagged = 0
        try:
            for relation in relations:
                try:
                    if tags_apply(relation=relation, tag_ids=[tag.tag_id],
                                  source=CustomerTag.Source.SURGE):  # fmt: skip
                        tagged += 1
                except WeComTransientError:
                    raise
                except WeComError as exc:
                    logger.warning("surge tag refused for relation %s: %s", relation.pk, exc)
        finally:
            if tagged:
                SurgeAlert.objects.filter(pk=alert.pk).update(
                    customers_tagged=F("customers_tagged") + tagged
                )
            total += tagged
    return total


def surge_check(
    *, corp: Corp, now: datetime | None = None, tag_customers: bool = True
) -> SurgeCheck:
    """The minute's check of one corp: count, open and end alerts, and (`tag_customers`) tag
    the surges' new customers. Skipped (an empty result) while another check of the corp is
    running."""
    now = now or timezone.now()
    settings = decision_settings_for(corp)
    if not settings.surge_enabled:
        ended = SurgeAlert.objects.filter(corp=corp, ended_at__isnull=True).update(ended_at=now)
        return SurgeCheck(ended=ended)
    lock = f"analytics:surge-check:{corp.pk}"
    if not cache.add(lock, 1, CHECK_LOCK_SECONDS):
        return SurgeCheck()
    try:
        hours = surge_hours(corp=corp, now=now, settings=settings)
        opened, ended = surge_alerts_update(corp=corp, hours=hours, now=now)
        tagged = surge_customers_tag(corp=corp, now=now) if tag_customers else 0
        return SurgeCheck(opened=opened, ended=ended, tagged=tagged, codes=hours)
    finally:
        cache.delete(lock)


def surge_alerts_open(*, user: Any) -> list[SurgeAlert]:
    """The open alerts of the corps the user may read, newest first, for the admin's banner
    (one query); each with `since`, its detection time on its corp's clock."""
    queryset = SurgeAlert.objects.filter(ended_at__isnull=True).select_related("live_code")
    alerts = list(tenancy.scope(queryset, user).order_by("-started_at")[:BANNER_ALERTS])
    for alert in alerts:
        alert.since = days.local_display(alert.started_at, days.corp_zone(alert.corp_id))
    return alerts
