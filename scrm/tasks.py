from datetime import UTC, datetime

from celery import shared_task

from scrm.wecom.client import WeComRateLimited, WeComTransientError
from scrm.wecom.services import TRANSIENT_ERRORS


@shared_task(
    acks_late=True,
    # A prefork child killed mid-task gives its message back at once. A whole worker killed
    # keeps it until the broker's visibility timeout: the welcome sweep covers that case.
    reject_on_worker_lost=True,
    # Busy WeCom, or a deadlock with another writer of the customer that rolled the step back
    # (OperationalError); every step is idempotent (the welcome is sent once per add).
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=1,  # the welcome code lives 20 s: retry fast, then give up
    retry_backoff_max=4,
    max_retries=3,
)
def after_add_task(
    attribution_id: int, welcome_code: str, received_ts: float, fetch_details: bool = True
) -> None:
    from scrm.pipeline import after_add

    after_add(
        attribution_id=attribution_id,
        welcome_code=welcome_code,
        received_at=datetime.fromtimestamp(received_ts, UTC),
        fetch_details=fetch_details,
    )


@shared_task(
    acks_late=True,
    autoretry_for=(WeComTransientError, WeComRateLimited),
    retry_backoff=60,
    retry_backoff_max=900,
    max_retries=5,
    expires=3000,
)
def staff_sync_task(corp_id: int) -> list[int]:
    """Align staff with WeCom's member list, then take everyone who left out of the live-code
    pools (their native codes are re-synced); the ids of the live codes changed. Every member
    marked left is passed on, so a run that died between the two steps is made good."""
    from channels_app.services.staff_changes import pools_remove_staff
    from contacts.staff_sync import staff_ids_left, staff_sync
    from scrm.wecom.models import Corp

    corp = Corp.objects.filter(pk=corp_id).first()
    if corp is None:
        return []
    staff_sync(corp=corp)
    return sorted(pools_remove_staff(staff_ids=staff_ids_left(corp=corp)))


@shared_task(acks_late=True, expires=3000)
def staff_sync_all_task() -> int:
    """Beat, hourly: one staff sync per active corp."""
    from scrm.wecom.models import Corp

    corp_ids = list(Corp.objects.filter(is_active=True).order_by("pk").values_list("pk", flat=True))
    for corp_id in corp_ids:
        staff_sync_task.delay(corp_id)
    return len(corp_ids)
