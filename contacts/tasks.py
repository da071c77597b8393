from celery import shared_task

from scrm.wecom.client import WeComTransientError


@shared_task(acks_late=True)
def external_contact_refresh_task(contact_id: int) -> None:
    """Fetch a customer's details. A failure is recorded on the customer and retried by the
    pending-details sweeper (a bounded number of times), not here: the add is already safe."""
    from contacts.services import external_contact_refresh

    try:
        external_contact_refresh(contact_id=contact_id)
    except WeComTransientError:
        return


@shared_task(acks_late=True, expires=300)
def external_contacts_refresh_pending_task() -> int:
    """Beat: fetch details that an earlier attempt could not (rate limit, 84061, network)."""
    from contacts.selectors import external_contact_ids_pending_details

    ids = external_contact_ids_pending_details()
    for contact_id in ids:
        external_contact_refresh_task.delay(contact_id)
    return len(ids)


# Beat runs calibrate_all_task hourly; each corp is calibrated in the hour its own clock reads
# CALIBRATION_LOCAL_HOUR, at night and away from the day's adds and WeCom rate limits.
CALIBRATION_LOCAL_HOUR = 3


@shared_task(
    acks_late=True,
    autoretry_for=(WeComTransientError,),
    retry_backoff=300,
    retry_backoff_max=3600,
    max_retries=3,
    expires=6 * 3600,
)
def calibrate_task(corp_id: int, since: str | None = None, triggered_by: str = "") -> int | None:
    """Calibrate one corp (backfill and compare with WeCom's statistics); the run's id."""
    from datetime import date

    from contacts.calibration import CalibrationAlreadyRunning, calibrate
    from scrm.wecom.models import Corp

    corp = Corp.objects.filter(pk=corp_id).first()
    if corp is None:
        return None
    try:
        run = calibrate(
            corp=corp,
            since=date.fromisoformat(since) if since else None,
            triggered_by=triggered_by,
        )
    except CalibrationAlreadyRunning:
        return None
    return run.pk


@shared_task(acks_late=True, expires=3000)
def calibrate_all_task() -> int:
    """Beat, hourly: queue the nightly calibration of every active corp whose local time is
    CALIBRATION_LOCAL_HOUR now; how many were queued."""
    from django.utils import timezone

    from scrm import days
    from scrm.wecom.models import Corp

    now = timezone.now()
    corp_ids = [
        corp.pk
        for corp in Corp.objects.filter(is_active=True).order_by("pk")
        if days.local_datetime(now, corp).hour == CALIBRATION_LOCAL_HOUR
    ]
    for corp_id in corp_ids:
        calibrate_task.delay(corp_id, None, "beat")
    return len(corp_ids)


@shared_task(
    acks_late=True,
    autoretry_for=(WeComTransientError,),
    retry_backoff=300,
    max_retries=3,
    expires=6 * 3600,
)
def staff_reply_times_refresh_task(corp_id: int) -> int:
    """Refresh the staff's average first-reply times from WeCom's statistics."""
    from contacts.staff_sync import staff_reply_times_refresh
    from scrm.wecom.models import Corp

    corp = Corp.objects.filter(pk=corp_id).first()
    if corp is None:
        return 0
    return staff_reply_times_refresh(corp=corp)


@shared_task(acks_late=True, expires=3600)
def staff_reply_times_refresh_all_task() -> int:
    """Beat, daily: one reply-time refresh per active corp."""
    from scrm.wecom.models import Corp

    corp_ids = list(Corp.objects.filter(is_active=True).order_by("pk").values_list("pk", flat=True))
    for corp_id in corp_ids:
        staff_reply_times_refresh_task.delay(corp_id)
    return len(corp_ids)


@shared_task(acks_late=True, expires=600)
def conversions_match_pending_task() -> int:
    """Beat (every 10 minutes): match conversions that arrived before their customer."""
    from contacts.conversions import conversions_match_pending

    return conversions_match_pending()


@shared_task(acks_late=True, expires=3600)
def callback_bodies_prune_task() -> int:
    """Beat (daily): blank raw callback bodies past WECOM_RAW_BODY_RETENTION_DAYS."""
    from contacts.compliance import callback_bodies_prune

    return callback_bodies_prune()


@shared_task(
    acks_late=True,
    autoretry_for=(WeComTransientError,),
    retry_backoff=30,
    retry_backoff_max=600,
    max_retries=5,
    expires=3600,
)
def tag_library_sync_task(corp_id: int) -> list[int] | None:
    """Mirror the corp's tag library from WeCom (queued by change_external_tag events)."""
    from contacts.tags import tag_library_resync

    seen = tag_library_resync(corp_id=corp_id)
    return list(seen) if seen is not None else None


@shared_task(
    bind=True,
    acks_late=True,
    autoretry_for=(WeComTransientError,),
    retry_backoff=30,
    retry_backoff_max=900,
    retry_jitter=True,
    max_retries=10,
)
def batch_tag_job_run_task(self, job_id: int) -> int:
    """Run the next chunk of a batch tagging job, then queue the following one. A rate limit
    retries from where the chunk stopped; an exhausted job is resumed from the admin."""
    from contacts.batch_tagging import batch_tag_job_run

    left = batch_tag_job_run(job_id=job_id)
    # Without a broker (tasks run eagerly) a task queued from a task nests a call: loop instead.
    while left and self.request.is_eager:
        left = batch_tag_job_run(job_id=job_id)
    if left:
        batch_tag_job_run_task.delay(job_id)
    return left
