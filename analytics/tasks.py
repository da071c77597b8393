from datetime import UTC, datetime, tzinfo
from typing import Any

from celery import shared_task

from scrm.wecom.client import WeComTransientError

NIGHTLY_LOCAL_HOUR = 2  # after midnight's cohorts close, before calibration's 03:00


def _each_active_corp(task: Any) -> int:
    """The beat's fan-out: `task` queued once per active corp; returns how many."""
    from scrm.wecom.models import Corp

    corp_ids = list(Corp.objects.filter(is_active=True).order_by("pk").values_list("pk", flat=True))
    for corp_id in corp_ids:
        task.delay(corp_id)
    return len(corp_ids)


@shared_task(acks_late=True, expires=55)
def rollups_refresh_all_task() -> int:
    """Beat, every minute: one refresh per active corp (see analytics.refresh)."""
    return _each_active_corp(rollups_refresh_task)


@shared_task(acks_late=True, expires=55)
def rollups_refresh_task(corp_id: int) -> int:
    from analytics.refresh import rollups_refresh
    from scrm.wecom.models import Corp

    corp = Corp.objects.filter(pk=corp_id).first()
    return rollups_refresh(corp=corp) if corp is not None else 0


def nightly_hour(now: datetime, zone: tzinfo) -> bool:
    """Whether the hour `now` falls in is a corp's nightly one: 02:xx on its clock, or, the
    night its clock springs forward past 02:00 (02:xx never happens there), 03:xx."""
    local = now.astimezone(zone)
    if local.hour == NIGHTLY_LOCAL_HOUR:
        return True
    if local.hour != NIGHTLY_LOCAL_HOUR + 1:
        return False
    skipped = local.replace(hour=NIGHTLY_LOCAL_HOUR, minute=0, second=0, microsecond=0)
    return skipped.astimezone(UTC).astimezone(zone).hour != NIGHTLY_LOCAL_HOUR


@shared_task(acks_late=True, expires=3000)
def rollups_nightly_all_task() -> int:
    """Beat, hourly: the last 35 days of each corp whose own clock reads 02:xx (the 30-day
    windows and retention of last month's cohorts mature; late orders are folded in)."""
    from django.utils import timezone

    from scrm.wecom.models import Corp

    now = timezone.now()
    corp_ids = [
        corp.pk
        for corp in Corp.objects.filter(is_active=True).order_by("pk")
        if nightly_hour(now, corp.tzinfo)
    ]
    for corp_id in corp_ids:
        rollups_rebuild_recent_task.delay(corp_id)
    return len(corp_ids)


@shared_task(acks_late=True, expires=3000)
def rollups_rebuild_recent_task(corp_id: int) -> int:
    from analytics.refresh import rollups_rebuild_recent
    from scrm.wecom.models import Corp

    corp = Corp.objects.filter(pk=corp_id).first()
    return rollups_rebuild_recent(corp=corp) if corp is not None else 0


# Exports: a file for a user waiting on a progress page; a failure is recorded on the job
# (no retries: the user asks again). A worker lost mid-file is redelivered (acks_late) and the
# run taken over once it is stale (export_jobs.STALE_RUN).
@shared_task(acks_late=True, soft_time_limit=1500, time_limit=1800)
def export_job_run_task(job_id: int) -> str:
    from analytics.export_jobs import export_job_run

    job = export_job_run(job_id=job_id)
    return job.status if job is not None else "skipped"


@shared_task(acks_late=True, expires=3000)
def export_files_purge_task() -> int:
    """Beat, hourly: export files older than REPORT_EXPORT_KEEP_HOURS are deleted."""
    from analytics.export_jobs import export_files_purge

    return export_files_purge()


# Surges: checked every minute; a missed minute is covered by the next (expires).
@shared_task(acks_late=True, expires=55)
def surges_check_all_task() -> int:
    """Beat, every minute: one surge check per active corp (see analytics.surges)."""
    return _each_active_corp(surge_check_task)


# Set while a corp's surge_tag_task is queued: one in the queue at a time.
SURGE_TAG_QUEUED = "analytics:surge-tag-queued:{}"


@shared_task(acks_late=True, expires=55)
def surge_check_task(corp_id: int) -> int:
    """The minute's counts and alerts at once; the surges' customers are tagged by
    surge_tag_task, queued as every tag is, behind the inbox (priority 9): tagging a burst's
    thousands of customers (a mark_tag each) must not hold a worker that the inbox drains, and
    so the burst's welcomes, wait for. Returns the number of alerts opened."""
    from django.core.cache import cache
    from django.utils import timezone

    from analytics.surges import surge_check, surge_tagging_due
    from scrm.wecom.models import Corp

    corp = Corp.objects.filter(pk=corp_id).first()
    if corp is None:
        return 0
    now = timezone.now()
    check = surge_check(corp=corp, now=now, tag_customers=False)
    queued = SURGE_TAG_QUEUED.format(corp_id)
    if surge_tagging_due(corp=corp, now=now) and cache.add(queued, 1, 600):
        surge_tag_task.apply_async((corp_id,), priority=9)
    return check.opened


@shared_task(acks_late=True)
def surge_tag_task(corp_id: int) -> int:
    """Tag the surges' new customers (analytics.surges); the number tagged."""
    from django.core.cache import cache

    from analytics.surges import surge_customers_tag
    from scrm.wecom.models import Corp

    cache.delete(SURGE_TAG_QUEUED.format(corp_id))
    corp = Corp.objects.filter(pk=corp_id).first()
    return surge_customers_tag(corp=corp) if corp is not None else 0


# -- the channel quality ranking (analytics.quality) -----------------------------------------


@shared_task(acks_late=True, expires=3000)
def quality_scores_all_task() -> int:
    """Beat, hourly: one ranking per active corp."""
    return _each_active_corp(quality_scores_compute_task)


@shared_task(acks_late=True, expires=3000)
def quality_scores_compute_task(corp_id: int) -> int:
    """The corp's ranking of this hour, then its tag action (after commit, in chunks)."""
    from analytics.quality import quality_scores_compute
    from scrm.wecom.models import Corp

    corp = Corp.objects.filter(pk=corp_id).first()
    if corp is None:
        return 0
    rows = quality_scores_compute(corp=corp)
    quality_tags_apply_task.delay(corp_id)
    return len(rows)


# WeCom's transient errors (network, 5xx, rate limit) retry the chunk; the run's lock is freed
# first, so the retry starts a run of its own.
@shared_task(
    acks_late=True,
    expires=3000,
    autoretry_for=(WeComTransientError,),
    retry_backoff=30,
    max_retries=3,
)
def quality_tags_apply_task(corp_id: int, run: str = "", after: int = 0) -> int:
    from analytics.quality_tags import quality_tags_apply
    from scrm.wecom.models import Corp

    corp = Corp.objects.filter(pk=corp_id).first()
    if corp is None:
        return 0
    chunk = quality_tags_apply(corp=corp, run=run, after=after)
    if chunk.next_run:
        quality_tags_apply_task.delay(corp_id, chunk.next_run, chunk.last_customer)
    return chunk.tagged
