"""Staff changes from WeCom: who has customer contact (members who left drop off the list), and
the recent average first-reply time the assignment engine weighs (get_user_behavior_data).

Taking members who left out of live-code pools is channels_app's business; `staff_sync`
reports who left and `staff_ids_left` lists them, for the project-level task to pass on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from contacts.calibration import WECOM_DAY_TZ, wecom_day_start
from contacts.models import AuditLog, Staff
from scrm.wecom.client import WeComClient, WeComError, WeComTransientError
from scrm.wecom.models import Corp

logger = logging.getLogger("contacts.staff_sync")

STATS_MAX_DAYS = 30  # get_user_behavior_data spans at most 30 days


@dataclass(frozen=True)
class StaffSyncResult:
    """Staff ids: created (new in WeCom's list), left (gone from it), returned (back on it)."""

    created: list[int] = field(default_factory=list)
    left: list[int] = field(default_factory=list)
    returned: list[int] = field(default_factory=list)


def staff_sync(*, corp: Corp) -> StaffSyncResult:
    """Align our staff with get_follow_user_list (members with customer contact enabled).

    Members missing from the list are marked left (left_at now), whether active or disabled;
    members on the list again become active. An empty list changes nothing: a disabled app or
    a wrong secret also answers with an empty list, and would otherwise empty every pool.
    """
    userids = WeComClient(corp).follow_user_list()
    if not userids:
        logger.warning("corp %s: get_follow_user_list is empty; staff left alone", corp.corp_id)
        return StaffSyncResult()
    return staff_sync_apply(corp=corp, userids=userids, now=timezone.now())


@transaction.atomic
def staff_sync_apply(*, corp: Corp, userids: list[str], now: datetime) -> StaffSyncResult:
    listed = set(userids)
    existing = set(Staff.objects.filter(corp=corp).values_list("userid", flat=True))
    Staff.objects.bulk_create(
        [Staff(corp=corp, userid=userid) for userid in sorted(listed - existing)],
        ignore_conflicts=True,
    )
    created = Staff.objects.filter(corp=corp, userid__in=listed - existing)
    leaving = (
        Staff.objects.filter(corp=corp).exclude(userid__in=listed).exclude(status=Staff.Status.LEFT)
    )
    left = list(leaving.values_list("pk", "userid", "status"))
    Staff.objects.filter(pk__in=[pk for pk, _u, _s in left]).update(
        status=Staff.Status.LEFT, left_at=now
    )
    back = Staff.objects.filter(corp=corp, userid__in=listed, status=Staff.Status.LEFT)
    returned = list(back.values_list("pk", "userid", "status"))
    Staff.objects.filter(pk__in=[pk for pk, _u, _s in returned]).update(
        status=Staff.Status.ACTIVE, left_at=None
    )
    # Who left or came back is visible to operators (pools change): one audit row each.
    audit = [
        (left, "staff_left", Staff.Status.LEFT),
        (returned, "staff_returned", Staff.Status.ACTIVE),
    ]
    AuditLog.objects.bulk_create(
        AuditLog(
            corp=corp,
            actor_label="WeCom",
            action=action,
            target=userid,
            detail={"old": old, "new": new.value},
        )
        for rows, action, new in audit
        for _pk, userid, old in rows
    )
    return StaffSyncResult(
        created=sorted(created.values_list("pk", flat=True)),
        left=sorted(pk for pk, _u, _s in left),
        returned=sorted(pk for pk, _u, _s in returned),
    )


def staff_ids_left(*, corp: Corp) -> list[int]:
    """Every member of the corp marked left, not only the ones the last sync found."""
    return list(
        Staff.objects.filter(corp=corp, status=Staff.Status.LEFT)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def staff_reply_times_refresh(*, corp: Corp, days: int = 7) -> int:
    """Store each active member's average first-reply time (minutes) over the last `days`
    days, up to yesterday: the mean of the daily avg_reply_time values WeCom reports (only days
    with chats have one); None when there were none. Returns how many members were updated.

    One request per member, since WeCom sums several userids into one figure. A member WeCom
    refuses (left since the last sync) is skipped; transient errors propagate for a retry.
    """
    days = min(max(days, 1), STATS_MAX_DAYS)
    last = timezone.localdate(timezone=WECOM_DAY_TZ) - timedelta(days=1)
    first = last - timedelta(days=days - 1)
    client = WeComClient(corp)
    updated = 0
    members = Staff.objects.filter(corp=corp, status=Staff.Status.ACTIVE).order_by("pk")
    for staff in members:
        try:
            rows = client.user_behavior_data(
                userids=[staff.userid],
                start_time=wecom_day_start(first),
                end_time=wecom_day_start(last),
            )
        except WeComTransientError:
            raise
        except WeComError as exc:
            logger.warning("reply time of %s not fetched: %s", staff.userid, exc)
            continue
        values = [float(r["avg_reply_time"]) for r in rows if r.get("avg_reply_time") is not None]
        average = round(sum(values) / len(values), 1) if values else None
        Staff.objects.filter(pk=staff.pk).update(avg_reply_minutes=average)
        updated += 1
    return updated
