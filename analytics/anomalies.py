"""Anomalies: what in a corp's figures or plumbing needs a person to look, each with its
evidence. Read-only (the acknowledgement is analytics.anomaly_services); every count is done
in the database, in a fixed number of queries whatever the number of codes or anomalies.

The rules (per corp; a day is the corp's local day):
- adds_below_scans: a landing code's day with at least MIN_SCANS scans whose adds fall below
  SHORTFALL (half) of what its usual scan-to-add rate predicts. The usual rate is the code's
  own adds / scans over the USUAL_DAYS days before that day, when those hold at least
  MIN_SCANS scans; otherwise DEFAULT_RATE (60 %), so a code without history is flagged below
  30 %. Counts come from the daily rollups (DailyFlow, each add credited to its own code).
- adds_without_scans: a landing code's day with at least NO_SCAN_MIN_ADDS adds and no scan
  (the landing page's scans lost, or the staff member's own QR passed around).
- dead_code: an active landing code with at least DEAD_MIN_SCANS scans in the last
  DEAD_HOURS hours and no add in them (a dead staff QR: a left member, a deleted contact way),
  counted on the facts (scans, attributions), not the rollups.
- empty_api: WeCom calls answered errcode 0 with an empty list from an endpoint whose answer
  cannot be empty for a corp in use (EXPECTED_RESULTS): how rate limits and wrong secrets hide.
- calibration: the days on which the corp's latest finished calibration found our adds per
  staff member differing from WeCom's statistics (a later run that agrees clears them).
- callback_backlog: callback events still pending BACKLOG_AFTER after they arrived;
  callback_failed: events whose processing failed (until retried).
- left_staff: staff members who left the corp and are still enabled in the pool of a live
  code that is not archived.
Each occurrence has a key (kind-specific, corp-wide unique); an acknowledged key is listed
apart, and a recurrence has a new key, so it is listed again.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import urlencode

from django.db.models import Count, Max, Min, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils.translation import gettext

from analytics.models import AnomalyAck, DailyFlow, Touch
from channels_app.models import Attribution, LiveCode, PoolMember, Scan
from contacts.models import CalibrationDeviation, CalibrationRun, Staff
from scrm import days
from scrm.wecom.models import ApiCall, CallbackEvent, Corp

Kind = AnomalyAck.Kind

MIN_SCANS = 20
USUAL_DAYS = 28
DEFAULT_RATE = Decimal("0.6")
SHORTFALL = Decimal("0.5")
NO_SCAN_MIN_ADDS = 3
DEAD_HOURS = 3
DEAD_MIN_SCANS = 10
BACKLOG_AFTER = timedelta(minutes=10)  # the sweeper re-queues sooner: this is a real backlog
MAX_DAYS = 366
# Endpoints whose list is never empty for a corp in use: its members with customer contact,
# a customer's own follow users, a day's statistics row per day asked.
EXPECTED_RESULTS = (
    "externalcontact/get_follow_user_list",
    "externalcontact/get",
    "externalcontact/get_user_behavior_data",
)
KIND_ORDER = {kind: index for index, kind in enumerate(Kind.values)}
RATE_PLACES = Decimal("0.0001")


class AnomalyError(ValueError):
    """Parameters that cannot be answered (a reversed or too long period)."""


@dataclass(frozen=True)
class AnomalyParams:
    corp: Corp
    first: date
    last: date
    now: datetime

    def validate(self) -> None:
        if self.first > self.last:
            raise AnomalyError(gettext("The period ends before it starts."))
        if (self.last - self.first).days + 1 > MAX_DAYS:
            raise AnomalyError(
                gettext("A period of at most %(days)s days, please.") % {"days": MAX_DAYS}
            )


@dataclass(frozen=True)
class Anomaly:
    """One occurrence: its kind and key, what it is about, its figures (kind-specific), the
    day it belongs to (day kinds) or since when it lasts, links to its evidence, and its
    acknowledgement if any."""

    kind: str
    key: str
    subject: str
    figures: dict[str, Any]
    evidence: list[tuple[str, str]]
    day: date | None = None
    since: datetime | None = None
    ack: AnomalyAck | None = field(default=None, compare=False)


@dataclass(frozen=True)
class AnomalyResult:
    params: AnomalyParams
    open: list[Anomaly]
    acknowledged: list[Anomaly]

    def find(self, kind: str, key: str) -> Anomaly | None:
        for anomaly in (*self.open, *self.acknowledged):
            if (anomaly.kind, anomaly.key) == (kind, key):
                return anomaly
        return None


def key_day(kind: str, key: str) -> date | None:
    """The day a day kind's key names (its last part), else None."""
    if kind not in (
        Kind.ADDS_BELOW_SCANS,
        Kind.ADDS_WITHOUT_SCANS,
        Kind.EMPTY_API,
        Kind.CALIBRATION,
    ):
        return None
    try:
        return date.fromisoformat(key.rsplit(":", 1)[-1])
    except ValueError:
        return None


def anomalies_list(*, params: AnomalyParams) -> AnomalyResult:
    """The corp's anomalies of the period (day kinds) and of now (the others), open ones first
    by kind and latest day, the acknowledged ones apart. Nine queries at most."""
    params.validate()
    found = [
        *_code_days(params),
        *_dead_codes(params),
        *_empty_api_calls(params),
        *_calibration_days(params),
        *_callbacks(params),
        *_left_staff(params),
    ]
    acks = (
        {
            (ack.kind, ack.key): ack
            for ack in AnomalyAck.objects.filter(
                corp=params.corp, key__in=[anomaly.key for anomaly in found]
            ).select_related("acknowledged_by")
        }
        if found
        else {}
    )
    found = [replace(anomaly, ack=acks.get((anomaly.kind, anomaly.key))) for anomaly in found]
    found.sort(key=lambda a: (KIND_ORDER[a.kind], -(a.day or date.min).toordinal(), a.key))
    return AnomalyResult(
        params=params,
        open=[anomaly for anomaly in found if anomaly.ack is None],
        acknowledged=[anomaly for anomaly in found if anomaly.ack is not None],
    )


# -- evidence links (the admin's lists, filtered) -----------------------------------------------


def _changelist(name: str, **query: Any) -> str:
    values = {key: value for key, value in query.items() if value is not None}
    return f"{reverse(f'admin:{name}_changelist')}?{urlencode(values)}"


def _code_evidence(corp: Corp, code_id: int, start: datetime, end: datetime) -> list:
    window = {"corp__id__exact": corp.pk, "live_code__id__exact": code_id}
    return [
        (
            gettext("Scans"),
            _changelist(
                "channels_app_scan",
                **window,
                created_at__gte=start.isoformat(),
                created_at__lt=end.isoformat(),
            ),
        ),
        (
            gettext("Adds"),
            _changelist(
                "channels_app_attribution",
                **window,
                added_at__gte=start.isoformat(),
                added_at__lt=end.isoformat(),
            ),
        ),
        (gettext("Live code"), reverse("admin:channels_app_livecode_change", args=[code_id])),
    ]


def _rate(adds: int, scans: int) -> Decimal | None:
    if not scans:
        return None
    return (Decimal(adds) / Decimal(scans)).quantize(RATE_PLACES, ROUND_HALF_UP)


# -- scans against adds, per landing code and day (rollups) -------------------------------------


def _code_days(params: AnomalyParams) -> list[Anomaly]:
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
                    "scan_to_add": _rate(adds, scans),
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
    return min(_rate(adds, scans) or Decimal(0), Decimal(1))


# -- dead staff QRs (facts of the last hours) ---------------------------------------------------


def _count_per_code(queryset: Any) -> Subquery:
    return Subquery(
        queryset.filter(live_code=OuterRef("pk"))
        .order_by()
        .values("live_code")
        .annotate(n=Count("pk"))
        .values("n")
    )


def _dead_codes(params: AnomalyParams) -> list[Anomaly]:
    corp, now = params.corp, params.now
    start = now - timedelta(hours=DEAD_HOURS)
    scans = Scan.objects.filter(corp=corp, created_at__gte=start, created_at__lte=now)
    adds = Attribution.objects.filter(corp=corp, added_at__gte=start, added_at__lte=now)
    last_add = (
        Attribution.objects.filter(corp=corp, live_code=OuterRef("pk"), added_at__lte=now)
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


# -- WeCom's empty answers ----------------------------------------------------------------------


def _empty_api_calls(params: AnomalyParams) -> list[Anomaly]:
    corp = params.corp
    start, end = days.days_bounds(params.first, params.last, corp)
    rows = (
        ApiCall.objects.filter(
            corp=corp,
            created_at__gte=start,
            created_at__lt=end,
            errcode=0,
            endpoint__in=EXPECTED_RESULTS,
        )
        .annotate(day=days.local_day("created_at", corp))
        .values("endpoint", "day")
        .annotate(calls=Count("pk"), empty=Count("pk", filter=Q(items_returned=0)))
        .filter(empty__gte=1)
        .order_by()
    )
    found = []
    for row in rows:
        day_start, day_end = days.day_bounds(row["day"], corp)
        link = _changelist(
            "wecom_apicall",
            corp__id__exact=corp.pk,
            endpoint=row["endpoint"],
            errcode=0,
            items_returned=0,
            created_at__gte=day_start.isoformat(),
            created_at__lt=day_end.isoformat(),
        )
        found.append(
            Anomaly(
                kind=Kind.EMPTY_API,
                key=f"api:{row['endpoint']}:{row['day'].isoformat()}",
                subject=row["endpoint"],
                day=row["day"],
                evidence=[(gettext("API calls"), link)],
                figures={"endpoint": row["endpoint"], "empty": row["empty"], "calls": row["calls"]},
            )
        )
    return found


# -- calibration ---------------------------------------------------------------------------------


def _calibration_days(params: AnomalyParams) -> list[Anomaly]:
    corp = params.corp
    latest = (
        CalibrationRun.objects.filter(corp=corp, status=CalibrationRun.Status.DONE)
        .order_by("-started_at", "-pk")
        .values("pk")[:1]
    )
    rows = (
        CalibrationDeviation.objects.filter(
            corp=corp, run=Subquery(latest), day__gte=params.first, day__lte=params.last
        )
        .values("day")
        .annotate(
            run_id=Max("run_id"),
            staff=Count("staff_id", distinct=True),
            ours=Sum("ours"),
            wecom=Sum("wecom"),
        )
        .order_by("day")
    )
    return [
        Anomaly(
            kind=Kind.CALIBRATION,
            key=f"calib:{row['day'].isoformat()}",
            day=row["day"],
            subject=gettext("%(n)d staff members") % {"n": row["staff"]},
            evidence=[
                (
                    gettext("Calibration run"),
                    reverse("admin:contacts_calibrationrun_change", args=[row["run_id"]]),
                )
            ],
            figures={
                "run": row["run_id"],
                "staff": row["staff"],
                "ours": row["ours"],
                "wecom": row["wecom"],
                "difference": row["ours"] - row["wecom"],
            },
        )
        for row in rows
    ]


# -- the callback inbox --------------------------------------------------------------------------


def _callbacks(params: AnomalyParams) -> list[Anomaly]:
    corp = params.corp
    Status = CallbackEvent.Status
    waiting = Q(status=Status.PENDING, received_at__lt=params.now - BACKLOG_AFTER)
    failed = Q(status=Status.FAILED)
    inbox = CallbackEvent.objects.filter(corp=corp, status__in=[Status.PENDING, Status.FAILED])
    found = inbox.aggregate(
        waiting=Count("pk", filter=waiting),
        oldest_id=Min("pk", filter=waiting),
        oldest_at=Min("received_at", filter=waiting),
        failed=Count("pk", filter=failed),
        failed_last_id=Max("pk", filter=failed),
        failed_first_at=Min("received_at", filter=failed),
    )
    anomalies = []
    if found["waiting"]:
        # Keyed by its oldest event: an acknowledged backlog that drains and builds up again
        # is a new one.
        anomalies.append(
            Anomaly(
                kind=Kind.CALLBACK_BACKLOG,
                key=f"backlog:{found['oldest_id']}",
                subject="",
                since=found["oldest_at"],
                evidence=[
                    (
                        gettext("Callback events"),
                        _changelist(
                            "wecom_callbackevent",
                            corp__id__exact=corp.pk,
                            status__exact=Status.PENDING,
                        ),
                    )
                ],
                figures={
                    "events": found["waiting"],
                    "oldest": found["oldest_at"],
                    "minutes": int(BACKLOG_AFTER.total_seconds() // 60),
                },
            )
        )
    if found["failed"]:
        anomalies.append(
            Anomaly(
                kind=Kind.CALLBACK_FAILED,
                key=f"failed:{found['failed_last_id']}",
                subject="",
                since=found["failed_first_at"],
                evidence=[
                    (
                        gettext("Callback events"),
                        _changelist(
                            "wecom_callbackevent",
                            corp__id__exact=corp.pk,
                            status__exact=Status.FAILED,
                        ),
                    )
                ],
                figures={"events": found["failed"]},
            )
        )
    return anomalies


# -- pools ----------------------------------------------------------------------------------------


def _left_staff(params: AnomalyParams) -> list[Anomaly]:
    members = (
        PoolMember.objects.filter(
            corp=params.corp, staff__status=Staff.Status.LEFT, is_enabled=True
        )
        .exclude(live_code__status=LiveCode.Status.ARCHIVED)
        .select_related("staff", "live_code")
        .order_by("live_code_id", "staff_id")
    )
    return [
        Anomaly(
            kind=Kind.LEFT_STAFF,
            key=f"left:{member.staff_id}:{member.live_code_id}",
            subject=f"{member.staff} @ {member.live_code}",
            since=member.staff.left_at,
            evidence=[
                (
                    gettext("Live code's pool"),
                    reverse("admin:channels_app_livecode_change", args=[member.live_code_id]),
                )
            ],
            figures={
                "staff": member.staff_id,
                "live_code": member.live_code_id,
                "left_at": member.staff.left_at,
            },
        )
        for member in members
    ]
