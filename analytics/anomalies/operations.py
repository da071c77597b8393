"""The rules on the plumbing: WeCom's empty answers, calibration deviations, the callback
inbox and the pools (see analytics.anomalies for the rules)."""

from __future__ import annotations

from django.db.models import Count, Max, Min, Q, Subquery, Sum
from django.urls import reverse
from django.utils.translation import gettext

from analytics.anomalies.base import (
    BACKLOG_AFTER,
    EXPECTED_RESULTS,
    Anomaly,
    AnomalyParams,
    Kind,
    changelist,
)
from channels_app.models import LiveCode, PoolMember
from contacts.models import CalibrationDeviation, CalibrationRun, Staff
from scrm import days
from scrm.wecom.models import ApiCall, CallbackEvent

# -- WeCom's empty answers ----------------------------------------------------------------------


def empty_api_calls(params: AnomalyParams) -> list[Anomaly]:
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
        link = changelist(
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


def calibration_days(params: AnomalyParams) -> list[Anomaly]:
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


def callbacks(params: AnomalyParams) -> list[Anomaly]:
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
                        changelist(
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
                        changelist(
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


def left_staff(params: AnomalyParams) -> list[Anomaly]:
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
