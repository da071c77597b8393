from celery import shared_task

from scrm.wecom.services import TRANSIENT_ERRORS


@shared_task(
    acks_late=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=5,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=8,
)
def callback_event_process_task(event_id: int) -> None:
    from scrm.wecom.services import callback_event_process

    callback_event_process(event_id=event_id)


@shared_task(acks_late=True)
def callback_events_drain_task() -> int:
    """Process the inbox's pending rows; queued by the callback at most once per process and
    WECOM_INBOX_DRAIN_DELAY (see callback_event_enqueue)."""
    from scrm.wecom.services import callback_events_drain

    return callback_events_drain()


@shared_task(acks_late=True, expires=60)
def callback_events_requeue_task() -> int:
    """Beat: re-queue inbox rows left pending by a broker outage or a killed worker."""
    from scrm.wecom.services import callback_events_requeue

    return callback_events_requeue()
