"""Report exports too large to write inside a request: a job row, a Celery task that writes
the file in chunks with progress, a download, and a beat task that deletes files after a day.

A job stores the report's parameters, not its rows: the task computes the report again when it
runs (the same class the pages and the API call, so the same figures) in the language of the
request that asked. The file goes to the default storage (MEDIA_ROOT/exports/) under a random
name; it is downloaded only through export_job_file_response, after export_jobs_visible_to.
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import FileResponse
from django.utils import timezone, translation

from analytics.exports import (
    CONTENT_TYPES,
    ascii_filename,
    content_disposition,
    csv_write,
    report_export_parts,
    xlsx_write,
)
from analytics.models import ExportJob, Touch
from analytics.reports import ChannelReport, DailyReport, ReportParams, ReportResult, StaffReport
from scrm.wecom import tenancy
from scrm.wecom.models import Corp

logger = logging.getLogger("analytics.export_jobs")

REPORT_CLASSES = {"channels": ChannelReport, "daily": DailyReport, "staff": StaffReport}
FOLDER = "exports"
# A job still "running" after this long lost its worker (acks_late redelivers the task after
# a crash): a new run may claim it and start over.
STALE_RUN = timedelta(minutes=30)


def export_job_needed(result: ReportResult) -> bool:
    """Whether `result` is too large to export inside the request."""
    return len(result.rows) > settings.REPORT_EXPORT_SYNC_MAX_ROWS


def export_jobs_visible_to(user: Any) -> QuerySet[ExportJob]:
    """The export jobs `user` may see: their own (all, for a superuser) of the corps where they
    may still read reports (scrm.wecom.tenancy). Any other job is a 404, as if it did not exist.
    """
    jobs = tenancy.scope(ExportJob.objects.select_related("corp"), user, tenancy.READ)
    if getattr(user, "is_superuser", False):
        return jobs
    if not getattr(user, "is_authenticated", False):
        return jobs.none()
    return jobs.filter(created_by=user.pk)


def _params_to_json(params: ReportParams) -> dict[str, Any]:
    return {
        "first": params.first.isoformat(),
        "last": params.last.isoformat(),
        "window": params.window,
        "group_by": params.group_by,
        "channel_type": params.channel_type,
        "channel_group": params.channel_group,
        "touch": params.touch,
        "channel": params.channel,
        "live_code": params.live_code,
    }


def _params_from_json(corp: Corp, data: dict[str, Any]) -> ReportParams:
    return ReportParams(
        corp=corp,
        first=date.fromisoformat(data["first"]),
        last=date.fromisoformat(data["last"]),
        window=data["window"],
        group_by=data["group_by"],
        channel_type=data["channel_type"],
        channel_group=data["channel_group"],
        # Jobs stored before these were kept: the defaults they ran with.
        touch=data.get("touch", Touch.ANY),
        channel=data.get("channel"),
        live_code=data.get("live_code"),
    )


@transaction.atomic
def export_job_create(
    *, report: str, params: ReportParams, fmt: str, user: Any, rows: int = 0
) -> ExportJob:
    """A pending job for `report` ("channels" or "daily") with `params`, queued after commit.
    `rows`: the size the request saw, shown as the total until the task counts again."""
    job = ExportJob(
        corp=params.corp,
        created_by=user if getattr(user, "pk", None) else None,
        report=report,
        format=fmt,
        params=_params_to_json(params),
        language=translation.get_language() or settings.LANGUAGE_CODE,
        rows_total=rows,
    )
    job.full_clean()
    job.save()
    transaction.on_commit(lambda: export_job_queue(job_id=job.pk))
    return job


def export_job_queue(*, job_id: int) -> None:
    from analytics.tasks import export_job_run_task

    try:
        export_job_run_task.delay(job_id)
    except Exception as exc:  # broker down: say so on the job rather than leave it pending
        logger.warning("could not queue export job %s", job_id)
        ExportJob.objects.filter(pk=job_id, status=ExportJob.Status.PENDING).update(
            status=ExportJob.Status.FAILED, error=f"not queued: {exc}"[:1000],
            finished_at=timezone.now(),
        )  # fmt: skip


def _claim(job_id: int) -> datetime | None:
    """Pending -> running, once: a duplicate delivery finds it taken; a run that has been
    going for longer than STALE_RUN lost its worker and is taken over. Returns the claim's
    started_at, which later writes of this run match (a run taken over writes nothing)."""
    now = timezone.now()
    claimable = Q(status=ExportJob.Status.PENDING) | Q(
        status=ExportJob.Status.RUNNING, started_at__lt=now - STALE_RUN
    )
    claimed = ExportJob.objects.filter(claimable, pk=job_id).update(
        status=ExportJob.Status.RUNNING, started_at=now, rows_done=0
    )
    return now if claimed else None


def export_job_run(*, job_id: int) -> ExportJob | None:
    """Write the job's file, reporting progress every CHUNK_ROWS rows (an update per chunk,
    committed at once, so the job endpoint sees it). Returns the job, or None when it is gone
    or another run has it. A failure is recorded on the job (status failed, the error)."""
    claimed_at = _claim(job_id)
    if claimed_at is None:
        return None
    job = ExportJob.objects.select_related("corp", "created_by").get(pk=job_id)
    counter = ExportJob.objects.filter(pk=job_id, started_at=claimed_at)  # while still ours
    if job.created_by is not None and not tenancy.may(job.created_by, job.corp, tenancy.READ):
        # The user lost the corp (or the account) between asking and this run: no file.
        counter.update(status=ExportJob.Status.FAILED, error="not allowed: no role in the corp",
                       finished_at=timezone.now())  # fmt: skip
        return ExportJob.objects.get(pk=job_id)
    try:
        with translation.override(job.language or settings.LANGUAGE_CODE):
            params = _params_from_json(job.corp, job.params)
            result = REPORT_CLASSES[job.report](params).calculate()
            table, filename, _fallback = report_export_parts(result, job.format, job.report)
            total = len(result.rows) + (result.totals is not None)
            counter.update(rows_total=total)

            def progress(done: int) -> None:
                counter.update(rows_done=done)

            write = csv_write if job.format == ExportJob.Format.CSV else xlsx_write
            with tempfile.TemporaryFile() as spool:
                write(table, spool, progress=progress)
                spool.seek(0)
                name = f"{FOLDER}/{job.corp_id}/{uuid.uuid4().hex}.{job.format}"
                stored = default_storage.save(name, File(spool, name=name))
    except Exception as exc:
        logger.exception("export job %s failed", job_id)
        counter.update(status=ExportJob.Status.FAILED, error=str(exc)[:1000] or repr(exc),
                       finished_at=timezone.now())  # fmt: skip
        return ExportJob.objects.get(pk=job_id)
    recorded = counter.update(
        status=ExportJob.Status.DONE, file=stored, filename=filename, rows_done=total,
        rows_total=total, finished_at=timezone.now(),
    )  # fmt: skip
    if not recorded:  # taken over as stale meanwhile: the other run's file is the job's
        default_storage.delete(stored)
    return ExportJob.objects.get(pk=job_id)


def export_job_file_response(job: ExportJob) -> FileResponse:
    """The finished job's file as a download (the caller checked visibility and status)."""
    params = job.params
    fallback = ascii_filename(job.report, job.corp.corp_id, params["first"], params["last"],
                              job.format)  # fmt: skip
    response = FileResponse(job.file.open("rb"), content_type=CONTENT_TYPES[job.format])
    response["Content-Disposition"] = content_disposition(job.filename or fallback, fallback)
    response["Cache-Control"] = "private, no-store"
    return response


def export_files_purge(*, now: Any = None) -> int:
    """Beat: delete the files of jobs older than REPORT_EXPORT_KEEP_HOURS (the jobs stay, as
    expired: who exported what), then any file left in the folder that long without a job
    (a worker killed between writing and recording it). Returns the files deleted."""
    now = now or timezone.now()
    cutoff = now - timedelta(hours=settings.REPORT_EXPORT_KEEP_HOURS)
    deleted = 0
    old = ExportJob.objects.filter(created_at__lt=cutoff).exclude(status=ExportJob.Status.EXPIRED)
    for job in old.order_by("pk").iterator():
        if job.file and default_storage.exists(job.file.name):
            default_storage.delete(job.file.name)
            deleted += 1
        ExportJob.objects.filter(pk=job.pk).update(status=ExportJob.Status.EXPIRED, file="")
    kept = set(ExportJob.objects.exclude(file="").values_list("file", flat=True))
    for name in _stored_files(FOLDER):
        if name not in kept and default_storage.get_modified_time(name) < cutoff:
            default_storage.delete(name)
            deleted += 1
    return deleted


def _stored_files(folder: str) -> list[str]:
    try:
        folders, files = default_storage.listdir(folder)
    except FileNotFoundError:
        return []
    names = [f"{folder}/{name}" for name in files]
    for sub in folders:
        names += _stored_files(f"{folder}/{sub}")
    return names
