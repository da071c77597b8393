"""校准 (calibration): what WeCom itself knows, held against what the callbacks told us.

A run (a) takes the member list from get_follow_user_list, (b) pages batch/get_by_user for every
member and hands each add that no callback announced to the one add step (scrm.pipeline's
add_record, through contacts.adds), which records it in the relation history with the time
WeCom gives, marked backfilled, attributes it by its `state` and projects the first source, as
for a callback; then (c) compares our adds per member and day with
get_user_behavior_data's new_contact_cnt and stores the days that differ. WeCom counts its
statistics in China Standard Time whatever the corp's time zone, so the comparison counts ours
by the same CST days (for a corp in China they are its local days).

No transaction spans the run: every follow_info is applied in its own short transaction, so
callbacks arriving meanwhile never wait on a lock held across WeCom calls.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from itertools import islice
from typing import Any
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from contacts.compliance import erased_pseudonym
from contacts.models import (
    CalibrationDeviation,
    CalibrationRun,
    ExternalContact,
    FirstSource,
    FollowRelation,
    RelationEvent,
    Staff,
)
from contacts.services import (
    ADD_MATCH_WINDOW,
    datetime_from_timestamp,
    external_contact_apply_details,
    external_contact_get_or_create,
    follow_relation_apply_follow_info,
)
from scrm import days
from scrm.wecom.client import WeComClient, WeComError, WeComTransientError
from scrm.wecom.models import Corp

logger = logging.getLogger("contacts.calibration")

Progress = Callable[[int, int], None]

# WeCom's statistics count days in China Standard Time, whatever the corp's time zone.
WECOM_DAY_TZ = ZoneInfo("Asia/Shanghai")
DEFAULT_COMPARE_DAYS = 7
# get_user_behavior_data: at most a 30-day span a request, only the last 180 days. 30 days
# inclusive (a 29-day span) stays inside the limit however WeCom counts the ends.
STATS_WINDOW_DAYS = 30
STATS_RETENTION_DAYS = 180
# Follow infos applied per round of look-ups (three queries); a page of 100 dicts is ~100 kB.
APPLY_BATCH = 100
# A run still "running" after this long died with its worker; it no longer blocks a new one.
RUN_STALE_AFTER = timedelta(hours=6)


class CalibrationAlreadyRunning(Exception):
    """Another calibration of this corp is under way."""


def wecom_day_start(day: date) -> int:
    """The unix timestamp WeCom's statistics use for `day` (its 00:00 CST)."""
    return int(datetime.combine(day, time.min, tzinfo=WECOM_DAY_TZ).timestamp())


def wecom_stat_day(stat_time: Any) -> date:
    return datetime.fromtimestamp(int(stat_time), WECOM_DAY_TZ).date()


def _batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


@dataclass
class _Meter:
    """Progress over follow infos seen plus statistics calls made. How many follow infos WeCom
    holds is unknown until the last page: our own count of active relations stands in."""

    progress: Progress | None
    expected: int
    calls: int
    seen: int = 0
    calls_done: int = 0
    paging: bool = True

    def report(self) -> None:
        if self.progress is None:
            return
        relations = max(self.expected, self.seen) if self.paging else self.seen
        self.progress(self.seen + self.calls_done, relations + self.calls)


def calibrate(
    *,
    corp: Corp,
    since: date | None = None,
    triggered_by: str = "",
    progress: Progress | None = None,
    backfill: bool = True,
) -> CalibrationRun:
    """Run one calibration of `corp` and return its CalibrationRun (done or failed).

    Compares the days from `since` (default 7 days ago, at most 180; the corp's local days) to
    yesterday, each a WeCom statistics day (CST) that has ended; `backfill=False` only
    compares. Idempotent: a second run backfills nothing new. A WeCom error ends the run as
    failed with its text; a transient one (rate limit, network) is raised after that, for a
    task to retry. Raises CalibrationAlreadyRunning when another run of the corp is under way.
    """
    today = days.today(corp)
    earliest = today - timedelta(days=STATS_RETENTION_DAYS - 1)
    since = max(since or today - timedelta(days=DEFAULT_COMPARE_DAYS), earliest)
    run = _run_start(corp=corp, since=since, triggered_by=triggered_by)
    try:
        _run(run, today=today, progress=progress, backfill=backfill)
    except Exception as exc:
        _run_finish(run, status=CalibrationRun.Status.FAILED, error=str(exc) or repr(exc))
        logger.warning("calibration %s of corp %s failed: %s", run.pk, corp.corp_id, exc)
        if isinstance(exc, WeComError) and not isinstance(exc, WeComTransientError):
            return run
        raise
    _run_finish(run, status=CalibrationRun.Status.DONE)
    return run


@transaction.atomic
def _run_start(*, corp: Corp, since: date, triggered_by: str) -> CalibrationRun:
    now = timezone.now()
    runs = CalibrationRun.objects.filter(corp=corp, status=CalibrationRun.Status.RUNNING)
    runs.filter(started_at__lt=now - RUN_STALE_AFTER).update(
        status=CalibrationRun.Status.FAILED, error="interrupted", finished_at=now
    )
    if runs.exists():
        raise CalibrationAlreadyRunning(corp.corp_id)
    return CalibrationRun.objects.create(corp=corp, since=since, triggered_by=triggered_by[:150])


def _run_finish(run: CalibrationRun, *, status: str, error: str = "") -> None:
    run.status, run.error, run.finished_at = status, error, timezone.now()
    run.save()


def _run(run: CalibrationRun, *, today: date, progress: Progress | None, backfill: bool) -> None:
    client = WeComClient(run.corp)
    staff = staff_ensure(corp=run.corp, userids=client.follow_user_list())
    run.staff_count = len(staff)
    run.save(update_fields=["staff_count"])
    # The last day compared is over both for the corp and for WeCom (corps east of China reach
    # a day before WeCom's statistics have closed it).
    last = min(today, days.today(WECOM_DAY_TZ)) - timedelta(days=1)
    windows = list(_windows(run.since, last))
    expected = 0
    if backfill:
        expected = FollowRelation.objects.filter(
            corp=run.corp, staff__in=staff.values(), status=FollowRelation.Status.ACTIVE
        ).count()
    meter = _Meter(progress, expected=expected, calls=len(windows) * len(staff))
    meter.report()
    if backfill and staff:
        _backfill(run, client, list(staff), meter)
    meter.paging = False
    run.deviations = _compare(run, client, staff, windows, meter)


def staff_ensure(*, corp: Corp, userids: list[str]) -> dict[str, Staff]:
    """Our Staff rows for these WeCom members, creating the missing ones."""
    Staff.objects.bulk_create(
        [Staff(corp=corp, userid=userid) for userid in userids], ignore_conflicts=True
    )
    rows = Staff.objects.filter(corp=corp, userid__in=userids).order_by("userid")
    return {staff.userid: staff for staff in rows}


# -- (b) backfill --------------------------------------------------------------------------------


def _backfill(run: CalibrationRun, client: WeComClient, userids: list[str], meter: _Meter) -> None:
    # The client sends 100 userids a request and pages by cursor, 100 contacts a page.
    for batch in _batched(client.external_contacts_by_user(userids), APPLY_BATCH):
        relations, first_sources = _apply_batch(run, batch)
        run.contacts_seen += len(batch)
        run.relations_backfilled += relations
        run.first_sources_backfilled += first_sources
        run.save(
            update_fields=["contacts_seen", "relations_backfilled", "first_sources_backfilled"]
        )
        meter.seen += len(batch)
        meter.report()


def _external_userid(item: dict[str, Any]) -> str:
    return str((item.get("external_contact") or {}).get("external_userid") or "")


def _add_way(value: Any) -> int | None:
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else None


def _follow_fingerprint(follow: dict[str, Any]) -> tuple:
    """What applying a follow_info would write to an existing relation (see services)."""
    return (
        _add_way(follow.get("add_way")),
        str(follow.get("oper_userid") or "")[:64],
        str(follow.get("remark") or "")[:255],
        str(follow.get("description") or ""),
    )


def _backfilled_first_sources(corp: Corp, external_userids: set[str]) -> set[str]:
    return set(
        FirstSource.objects.filter(
            corp=corp, external_contact__external_userid__in=external_userids, backfilled=True
        ).values_list("external_contact__external_userid", flat=True)
    )


def _apply_batch(run: CalibrationRun, batch: list[dict[str, Any]]) -> tuple[int, int]:
    """Apply one batch of batch/get_by_user items; (relations, first sources) backfilled."""
    corp = run.corp
    external_userids = {_external_userid(item) for item in batch} - {""}
    # A customer erased here (PIPL) is still a contact in WeCom and still counted, under the
    # pseudonym its row now carries: re-creating it from WeCom's data would undo the erasure.
    pseudonyms = {
        erased_pseudonym(corp_id=corp.corp_id, external_userid=ext): ext for ext in external_userids
    }
    erased = {
        pseudonyms[pseudonym]
        for pseudonym in ExternalContact.objects.filter(
            corp=corp, external_userid__in=pseudonyms
        ).values_list("external_userid", flat=True)
    }
    batch = [item for item in batch if _external_userid(item) not in erased]
    external_userids -= erased
    contacts = {
        contact.external_userid: contact
        for contact in ExternalContact.objects.filter(
            corp=corp, external_userid__in=external_userids
        )
    }
    relations = FollowRelation.objects.filter(
        corp=corp, external_contact__external_userid__in=external_userids
    ).values_list(
        "external_contact__external_userid", "staff__userid", "created_at",
        "add_way", "oper_userid", "remark", "description",
    )  # fmt: skip
    known = {
        (ext, userid): (created_at, tuple(details))
        for ext, userid, created_at, *details in relations
    }
    sources_before = _backfilled_first_sources(corp, external_userids)
    created = sum(_apply_item(run, item, contacts, known) for item in batch)
    sources_after = _backfilled_first_sources(corp, external_userids)
    return created, len(sources_after - sources_before)


def _apply_item(
    run: CalibrationRun,
    item: dict[str, Any],
    contacts: dict[str, ExternalContact],
    known: dict[tuple[str, str], tuple[datetime | None, tuple]],
) -> bool:
    """Apply one follow_info; True when it told of an add no callback had announced (recorded
    through the one add step, as backfilled, with the time WeCom gives)."""
    profile = item.get("external_contact") or {}
    follow = item.get("follow_info") or {}
    external_userid = _external_userid(item)
    userid = str(follow.get("userid") or "")
    if not external_userid or not userid:
        return False
    contact = contacts.get(external_userid)
    before = known.get((external_userid, userid))
    if before is not None and before[1] == _follow_fingerprint(follow):
        added_at = datetime_from_timestamp(follow.get("createtime"))
        if (
            before[0] is not None
            and added_at is not None
            and (abs(before[0] - added_at) <= ADD_MATCH_WINDOW)
        ):
            return False  # the latest add is known, and WeCom says nothing new: no write at all
    with transaction.atomic():
        if contact is None:
            contact = external_contact_get_or_create(corp=run.corp, external_userid=external_userid)
        if contact.details_fetched_at is None:
            # Saves the details fetch a customer no callback announced would still need.
            contact = external_contact_apply_details(
                contact=contact, external_contact=profile, follow_users=[]
            )
        contacts[external_userid] = contact
        recorded = follow_relation_apply_follow_info(contact=contact, follow=follow, backfill=True)
    return recorded is not None and recorded.created


# -- (c) comparison with WeCom's statistics ------------------------------------------------------


def _windows(first: date, last: date) -> Iterator[tuple[date, date]]:
    start = first
    while start <= last:
        end = min(start + timedelta(days=STATS_WINDOW_DAYS - 1), last)
        yield start, end
        start = end + timedelta(days=1)


def our_new_contact_counts(
    *,
    corp: Corp,
    staff_ids: Iterable[int],
    first: date,
    last: date,
    tz: tzinfo | None = None,
) -> dict[tuple[int, date], int]:
    """Adds per (staff id, day) from the relation history, counted in the database. Days are
    the corp's local days, or those of `tz` (WeCom's, to compare with its statistics). The
    history keeps every add, so a past day's count does not change when a customer deletes or
    re-adds later (only a backfilled add of that day can change it)."""
    tz = tz or corp.tzinfo
    start, end = days.days_bounds(first, last, tz)
    rows = (
        RelationEvent.objects.filter(
            corp=corp,
            kind=RelationEvent.Kind.ADDED,
            staff_id__in=list(staff_ids),
            occurred_at__gte=start,
            occurred_at__lt=end,
        )
        .annotate(day=days.local_day("occurred_at", tz))
        .values("staff_id", "day")
        .annotate(n=Count("pk"))
        .order_by()  # the model's ordering would join the GROUP BY
    )
    return {(row["staff_id"], row["day"]): row["n"] for row in rows}


def wecom_new_contact_counts(
    client: WeComClient, *, userid: str, first: date, last: date
) -> dict[date, int]:
    """new_contact_cnt per day for one member (several userids would be summed by WeCom)."""
    rows = client.user_behavior_data(
        userids=[userid], start_time=wecom_day_start(first), end_time=wecom_day_start(last)
    )
    return {wecom_stat_day(row["stat_time"]): int(row.get("new_contact_cnt") or 0) for row in rows}


def _compare(
    run: CalibrationRun,
    client: WeComClient,
    staff: dict[str, Staff],
    windows: list[tuple[date, date]],
    meter: _Meter,
) -> int:
    """Store a CalibrationDeviation per member and day where the counts differ; how many.

    Days are WeCom's (CST) on both sides, so a corp outside China is compared like with like;
    a deviation's day is a CST day (for corps in China, their local day). A day WeCom leaves
    out counts as 0 for WeCom, so a silent gap shows up as a deviation.
    """
    if not windows:
        return 0
    ours = our_new_contact_counts(
        corp=run.corp, staff_ids=[s.pk for s in staff.values()],
        first=windows[0][0], last=windows[-1][1], tz=WECOM_DAY_TZ,
    )  # fmt: skip
    rows: list[CalibrationDeviation] = []
    for first, last in windows:
        for userid, member in staff.items():
            theirs = wecom_new_contact_counts(client, userid=userid, first=first, last=last)
            day = first
            while day <= last:
                mine, wecom = ours.get((member.pk, day), 0), theirs.get(day, 0)
                if mine != wecom:
                    deviation = CalibrationDeviation(
                        corp=run.corp, run=run, staff=member, day=day, ours=mine, wecom=wecom
                    )
                    rows.append(deviation)
                day += timedelta(days=1)
            meter.calls_done += 1
            meter.report()
    CalibrationDeviation.objects.bulk_create(rows, batch_size=1000)
    return len(rows)
