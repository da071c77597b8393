from celery import shared_task

from scrm.wecom.client import WeComRateLimited, WeComTransientError


@shared_task(
    acks_late=True,
    autoretry_for=(WeComTransientError, WeComRateLimited),
    retry_backoff=15,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=6,
)
def live_code_sync_task(live_code_id: int) -> bool:
    """Update a native code's staff list when its eligible set changed (cap, shift, left)."""
    from channels_app.services.publishing import live_code_sync

    return live_code_sync(live_code_id=live_code_id)


@shared_task(
    acks_late=True,
    autoretry_for=(WeComTransientError, WeComRateLimited),
    retry_backoff=15,
    max_retries=5,
)
def landing_slots_top_up_task(live_code_id: int, staff_id: int) -> int:
    from channels_app.models import LiveCode
    from channels_app.services.publishing import landing_slots_top_up
    from contacts.models import Staff

    live_code = LiveCode.objects.select_related("corp").filter(pk=live_code_id).first()
    staff = Staff.objects.filter(pk=staff_id).first()
    if live_code is None or staff is None:
        return 0
    return landing_slots_top_up(live_code=live_code, staff=staff)


@shared_task(acks_late=True)
def landing_scans_flush_task() -> int:
    """Write the scans the landing page buffered in Redis to the database: queued by the page
    (debounced, LANDING_FLUSH_DELAY) and by the beat every minute as a safety net."""
    from channels_app.services.landing_scans import landing_scans_flush

    return landing_scans_flush()


@shared_task(acks_late=True, expires=55)
def live_codes_window_edge_task() -> int:
    """Beat, every minute: sync native codes whose shifts or auto-accept window start or end
    in the last minute, and all capped codes at local midnight. Codes without an edge are
    never touched."""
    from channels_app.services.publishing import live_code_request_sync
    from channels_app.services.schedule_edges import live_codes_at_window_edge

    ids = live_codes_at_window_edge()
    for live_code_id in ids:
        live_code_request_sync(live_code_id=live_code_id)
    return len(ids)


@shared_task(
    acks_late=True,
    autoretry_for=(WeComTransientError, WeComRateLimited),
    retry_backoff=10,
    max_retries=6,
)
def group_joins_record_task(corp_id: int, chat_id: str, member_ids: list, event_ts: int) -> int:
    from datetime import UTC, datetime

    from channels_app.services.groups import group_joins_record
    from scrm.wecom.models import Corp

    corp = Corp.objects.filter(pk=corp_id).first()
    if corp is None:
        return 0
    return group_joins_record(
        corp=corp, chat_id=chat_id, member_ids=list(member_ids),
        event_time=datetime.fromtimestamp(event_ts, UTC),
    )  # fmt: skip


@shared_task(acks_late=True, expires=10)
def welcome_sweep_task() -> int:
    """Beat, every 2 s, on its own queue that the welcome workers also consume (settings.
    CELERY_TASK_ROUTES): welcomes whose worker died go out while their code lives
    (channels_app.services.welcome)."""
    from channels_app.services.welcome import welcomes_recover

    return welcomes_recover()
