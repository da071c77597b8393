import json

from django.core.management.base import BaseCommand
from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask

# (name, task, every N seconds). Upserted by name, so schedules edited in the admin keep their
# enabled flag; run after every deploy.
PERIODIC_TASKS = [
    # A welcome_code lives 20 s: welcomes held by a worker that died are queued again within
    # seconds, not after the broker's one-hour visibility timeout.
    (
        "channels: send welcomes lost with a worker",
        "channels_app.tasks.welcome_sweep_task",
        2,
    ),
    ("wecom: re-queue stuck callback events", "scrm.wecom.tasks.callback_events_requeue_task", 60),
    (
        "contacts: fetch pending customer details",
        "contacts.tasks.external_contacts_refresh_pending_task",
        300,
    ),
    (
        "channels: write landing scans buffered in Redis",
        "channels_app.tasks.landing_scans_flush_task",
        60,
    ),
    (
        "channels: sync native codes at shift and cap edges",
        "channels_app.tasks.live_codes_window_edge_task",
        60,
    ),
    (
        "contacts: match pending conversions",
        "contacts.tasks.conversions_match_pending_task",
        600,
    ),
    (
        "contacts: prune raw callback bodies past retention",
        "contacts.tasks.callback_bodies_prune_task",
        86400,
    ),
    # Hourly: each corp is calibrated once a night, in the hour its own clock reads 03:00.
    ("contacts: nightly calibration against WeCom", "contacts.tasks.calibrate_all_task", 3600),
    (
        "contacts: staff first-reply times from WeCom statistics",
        "contacts.tasks.staff_reply_times_refresh_all_task",
        86400,
    ),
    (
        "staff: mark members who left, take them out of pools",
        "scrm.tasks.staff_sync_all_task",
        3600,
    ),
    # Report rollups: changed days within a minute, today and yesterday every 5 minutes.
    ("analytics: rebuild changed and recent days", "analytics.tasks.rollups_refresh_all_task", 60),
    # Hourly: each corp's last 35 days once a night, in the hour its own clock reads 02:00.
    (
        "analytics: nightly rebuild of the last 35 days",
        "analytics.tasks.rollups_nightly_all_task",
        3600,
    ),
    # Surges compare the last hour with the same hour of past weeks: a minute late at most.
    ("analytics: detect surges on live codes", "analytics.tasks.surges_check_all_task", 60),
    # Hourly: each corp's channel quality ranking, then its tag action (analytics.quality).
    ("analytics: hourly channel quality ranking", "analytics.tasks.quality_scores_all_task", 3600),
    # Report export files are kept a day (REPORT_EXPORT_KEEP_HOURS): hourly is late by an hour.
    ("analytics: delete old report export files", "analytics.tasks.export_files_purge_task", 3600),
]


class Command(BaseCommand):
    help = "Create or update the Celery beat schedule (django-celery-beat rows, by name)."

    @transaction.atomic
    def handle(self, *args: object, **options: object) -> None:
        for name, task, seconds in PERIODIC_TASKS:
            interval, _ = IntervalSchedule.objects.get_or_create(
                every=seconds, period=IntervalSchedule.SECONDS
            )
            _, created = PeriodicTask.objects.update_or_create(
                name=name, defaults={"task": task, "interval": interval, "args": json.dumps([])}
            )
            self.stdout.write(f"{'created' if created else 'updated'}: {name} every {seconds}s")
