"""Tagging or untagging a filtered list of customers in the background, with progress.

A job lists the follow relations to process (the active relations of the chosen customers,
in pk order: WeCom tags per relation) and walks them a chunk per task run. Its position is
done + failed: each relation processed bumps exactly one of them, with an F() update that
commits at once, so the progress page sees it while the job runs. A re-run, or a chunk cut
short by a crash or a rate limit, is safe: tags_apply and customer_tags_remove skip what is
already there or already gone, so WeCom is never asked twice for the same change.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from contacts.models import BatchTagJob, CustomerTag, ExternalContact, FollowRelation, Tag
from contacts.tags import customer_tags_remove, tags_apply
from scrm.wecom.client import WeComError, WeComTransientError
from scrm.wecom.models import Corp

logger = logging.getLogger("contacts.batch_tagging")

# Relations per task run: ~50 mark_tag calls, a few seconds; then the task queues the next
# chunk, so a big job neither holds a worker for long nor loses much to a crash.
CHUNK_SIZE = 50
# The relation ids live in a JSON column, re-read per chunk: 100,000 ids are about 1 MB.
MAX_RELATIONS = 100_000
# Error lines kept for the progress page; `failed` counts all of them.
MAX_ERRORS_KEPT = 200
# One runner per job. A crashed worker's lock frees itself after this long.
RUN_LOCK_SECONDS = 600


def _lock_key(job_id: int) -> str:
    return f"batch-tag-job:{job_id}"


@transaction.atomic
def batch_tag_job_create(
    *,
    corp: Corp,
    contacts: QuerySet[ExternalContact],
    tag_ids: Sequence[str],
    add: bool,
    created_by: str = "",
) -> BatchTagJob:
    """A job over the active follow relations of `contacts` (of `corp`), queued after commit.
    Raises ValidationError when there is nothing to do or too much."""
    tags = list(
        Tag.objects.filter(corp=corp, tag_id__in=list(tag_ids), deleted=False)
        .order_by("pk")
        .values_list("tag_id", flat=True)
    )
    if not tags:
        raise ValidationError(_("Choose at least one tag."))
    relation_ids = list(
        FollowRelation.objects.filter(
            corp=corp,
            external_contact__in=contacts.order_by().values("pk"),
            status=FollowRelation.Status.ACTIVE,
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if not relation_ids:
        raise ValidationError(
            _("None of the selected customers is still a customer of a staff member.")
        )
    if len(relation_ids) > MAX_RELATIONS:
        message = _("%(count)d follow relations are too many for one job (at most %(max)d).")
        raise ValidationError(message % {"count": len(relation_ids), "max": MAX_RELATIONS})
    job = BatchTagJob(
        corp=corp,
        created_by=created_by[:150],
        add=add,
        tag_ids=tags,
        relation_ids=relation_ids,
        total=len(relation_ids),
    )
    job.full_clean()
    job.save()
    transaction.on_commit(lambda: batch_tag_job_queue(job_id=job.pk))
    return job


def batch_tag_job_queue(*, job_id: int) -> None:
    from contacts.tasks import batch_tag_job_run_task

    try:
        batch_tag_job_run_task.delay(job_id)
    except Exception:  # broker down: the job stays pending; the admin's resume action queues it
        logger.warning("could not queue batch tagging job %s", job_id)


def _process(job: BatchTagJob, relation: FollowRelation | None) -> str:
    """Apply the job to one relation; an error text for the operator, "" when it went well."""
    if relation is None or relation.status != FollowRelation.Status.ACTIVE:
        return _("No longer a customer of this staff member.")
    try:
        if job.add:
            tags_apply(relation=relation, tag_ids=job.tag_ids, source=CustomerTag.Source.MANUAL)
        else:
            customer_tags_remove(relation=relation, tag_ids=job.tag_ids)
    except WeComTransientError:
        raise  # rate limit or network: the task retries later from this relation
    except WeComError as exc:
        return f"errcode {exc.errcode}: {exc.errmsg}"
    return ""


def batch_tag_job_run(*, job_id: int, limit: int = CHUNK_SIZE) -> int:
    """Process the job's next `limit` relations; returns how many are left (0 when the job is
    finished, gone, or being run by another worker, which carries on). Raises
    WeComTransientError with the position kept, so a retry resumes where this stopped."""
    if not cache.add(_lock_key(job_id), 1, RUN_LOCK_SECONDS):
        return 0
    try:
        job = BatchTagJob.objects.filter(pk=job_id).first()
        if job is None or job.status in (BatchTagJob.Status.DONE, BatchTagJob.Status.FAILED):
            return 0
        if job.status == BatchTagJob.Status.PENDING:
            BatchTagJob.objects.filter(pk=job.pk).update(status=BatchTagJob.Status.RUNNING)
        position = job.done + job.failed
        chunk = job.relation_ids[position : position + limit]
        relations = FollowRelation.objects.select_related(
            "corp", "staff", "external_contact"
        ).in_bulk(chunk)
        errors = list(job.errors)
        for relation_id in chunk:
            relation = relations.get(relation_id)
            error = _process(job, relation)
            counters = BatchTagJob.objects.filter(pk=job.pk)
            if not error:
                counters.update(done=F("done") + 1)
                continue
            if len(errors) < MAX_ERRORS_KEPT:
                errors.append({
                    "relation": relation_id,
                    "customer": str(relation.external_contact) if relation else "",
                    "staff": relation.staff.userid if relation else "",
                    "error": error,
                })  # fmt: skip
            counters.update(failed=F("failed") + 1, errors=errors)
        left = max(job.total - position - len(chunk), 0)
        if not left:
            BatchTagJob.objects.filter(pk=job.pk).update(
                status=BatchTagJob.Status.DONE, finished_at=timezone.now()
            )
        return left
    finally:
        cache.delete(_lock_key(job_id))


def batch_tag_jobs_resume(*, job_ids: Sequence[int]) -> int:
    """Queue again the unfinished jobs among `job_ids` (after a broker outage, or retries
    given up on a long rate limit); a job already running is left to its worker."""
    ids = list(
        BatchTagJob.objects.filter(
            pk__in=list(job_ids),
            status__in=[BatchTagJob.Status.PENDING, BatchTagJob.Status.RUNNING],
        ).values_list("pk", flat=True)
    )
    for job_id in ids:
        transaction.on_commit(lambda job_id=job_id: batch_tag_job_queue(job_id=job_id))
    return len(ids)
