from celery import shared_task

from scrm.wecom.client import WeComTransientError


@shared_task(
    acks_late=True,
    autoretry_for=(WeComTransientError,),
    retry_backoff=5,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=8,
)
def callback_event_process_task(event_id: int) -> None:
    from scrm.wecom.services import callback_event_process

    callback_event_process(event_id=event_id)


@shared_task(acks_late=True, expires=60)
def callback_events_requeue_task() -> int:
    """Beat: re-queue inbox rows left pending by a broker outage or a killed worker."""
    from scrm.wecom.services import callback_events_requeue

    return callback_events_requeue()
