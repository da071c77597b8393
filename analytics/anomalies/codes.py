"""The rules on scans against adds: per landing code and day from the rollups, and the dead
staff QRs of the last hours from the facts (see analytics.anomalies for the rules)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db.models import Count, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils.translation import gettext

from analytics.anomalies.base import (
    DEAD_HOURS,
    DEAD_MIN_SCANS,
    DEFAULT_RATE,
    MIN_SCANS,
    NO_SCAN_MIN_ADDS,
    SHORTFALL,
    USUAL_DAYS,
    Anomaly,
    AnomalyParams,
    Kind,
    changelist,
    rate,
)
from analytics.models import DailyFlow, Touch
from channels_app.models import Attribution, LiveCode, Scan
from scrm import days
from scrm.wecom.models import Corp


def _code_evidence(corp: Corp, code_id: int, start: datetime, end: datetime) -> list:
    window = {"corp__id__exact": corp.pk, "live_code__id__exact": code_id}
    return [
        (
            gettext("Scans"),
            changelist(
                "channels_app_scan",
                **window,
                created_at__gte=start.isoformat(),
                created_at__lt=end.isoformat(),
            ),
        ),
        (
            gettext("Adds"),
            changelist(
                "channels_app_attribution",
                **window,
                added_at__gte=start.isoformat(),
                added_at__lt=end.isoformat(),
            ),
        ),
        (gettext("Live code"), reverse("admin:channels_app_livecode_change", args=[code_id])),
    ]


# -- scans against adds, per landing code and day (rollups) -------------------------------------


def code_days(params: AnomalyParams) -> list[Anomaly]:
    corp = params.corp
    flows = DailyFlow.objects.filter(
        corp=corp, touch=Touch.ANY, live_code__mode=LiveCode.Mode.LANDING
    )
    rows = list(
        flows.filter(day__gte=params.first, day__lte=params.last)
        .values("live_code_id", "live_code__name", "day")
        .annotate(scans=Sum("scans"), adds=Sum("adds"))
        .filter(Q(scans__gte=MIN_SCANS) | Q(scans=0, adds__gte=NO_SCAN_MIN_ADDS))
        .order_by()
    )
    busy = {row["live_code_id"] for row in rows if row["scans"] >= MIN_SCANS}
    history: dict[int, dict[date, tuple[int, int]]] = defaultdict(dict)
    if busy:  # each busy code's days before its own: its usual rate, day by day
        before = (
            flows.filter(
                live_code_id__in=busy,
                day__gte=params.first - timedelta(days=USUAL_DAYS),
                day__lt=params.last,
            )
            .values("live_code_id", "day")
            .annotate(scans=Sum("scans"), adds=Sum("adds"))
            .order_by()
        )
        for row in before:
            history[row["live_code_id"]][row["day"]] = (row["scans"], row["adds"])
    found = []
    for row in rows:
        code_id, day, scans, adds = row["live_code_id"], row["day"], row["scans"], row["adds"]
        start, end = days.day_bounds(day, corp)
        evidence = _code_evidence(corp, code_id, start, end)
        if scans == 0:
            found.append(
                Anomaly(
                    kind=Kind.ADDS_WITHOUT_SCANS,
                    key=f"noscan:{code_id}:{day.isoformat()}",
                    subject=row["live_code__name"],
                    day=day,
                    evidence=evidence,
                    figures={"live_code": code_id, "scans": 0, "adds": adds},
                )
            )
            continue
        usual = _usual_rate(history[code_id], day)
        expected = (scans * usual).quantize(Decimal("0.1"), ROUND_HALF_UP)
        if adds >= expected * SHORTFALL:
            continue
        found.append(
            Anomaly(
                kind=Kind.ADDS_BELOW_SCANS,
                key=f"code:{code_id}:{day.isoformat()}",
                subject=row["live_code__name"],
                day=day,
                evidence=evidence,
                figures={
                    "live_code": code_id,
                    "scans": scans,
                    "adds": adds,
                    "scan_to_add": rate(adds, scans),
                    "usual_rate": usual,
                    "expected_adds": expected,
                },
            )
        )
    return found


def _usual_rate(history: dict[date, tuple[int, int]], day: date) -> Decimal:
    """adds / scans over the USUAL_DAYS days before `day` (at most 1: re-adds and shared QRs
    can outnumber scans), or DEFAULT_RATE when those hold fewer than MIN_SCANS scans."""
    scans = adds = 0
    for offset in range(1, USUAL_DAYS + 1):
        day_scans, day_adds = history.get(day - timedelta(days=offset), (0, 0))
        scans, adds = scans + day_scans, adds + day_adds
    if scans < MIN_SCANS:
        return DEFAULT_RATE
    return min(rate(adds, scans) or Decimal(0), Decimal(1))


# -- dead staff QRs (facts of the last hours) ---------------------------------------------------


def _count_per_code(queryset: Any) -> Subquery:
    return Subquery(
        queryset.filter(live_code=OuterRef("pk"))
        .order_by()
        .values("live_code")
        .annotate(n=Count("pk"))
        .values("n")
    )


def dead_codes(params: AnomalyParams) -> list[Anomaly]:
    corp, now = params.corp, params.now
    start = now - timedelta(hours=DEAD_HOURS)
    scans = Scan.objects.filter(corp=corp, created_at__gte=start, created_at__lt=now)
    adds = Attribution.objects.filter(corp=corp, added_at__gte=start, added_at__lt=now)
    last_add = (
        Attribution.objects.filter(corp=corp, live_code=OuterRef("pk"), added_at__lt=now)
        .order_by("-added_at")
        .values("added_at")[:1]
    )
    codes = (
        LiveCode.objects.filter(
            corp=corp, mode=LiveCode.Mode.LANDING, status=LiveCode.Status.ACTIVE
        )
        .annotate(
            recent_scans=Coalesce(_count_per_code(scans), 0),
            recent_adds=Coalesce(_count_per_code(adds), 0),
            last_add=Subquery(last_add),
        )
        .filter(recent_scans__gte=DEAD_MIN_SCANS, recent_adds=0)
        .values("pk", "name", "recent_scans", "last_add")
        .order_by("pk")
    )
    found = []
    for code in codes:
        # One episode per last add before it: while no add comes, the key stays; after an add,
        # a new silence is a new occurrence.
        last = code["last_add"]
        found.append(
            Anomaly(
                kind=Kind.DEAD_CODE,
                key=f"dead:{code['pk']}:{int(last.timestamp()) if last else 0}",
                subject=code["name"],
                since=last,
                evidence=_code_evidence(corp, code["pk"], start, now),
                figures={
                    "live_code": code["pk"],
                    "scans": code["recent_scans"],
                    "adds": 0,
                    "hours": DEAD_HOURS,
                    "last_add": last,
                },
            )
        )
    return found
