"""Batch tagging of a filtered customer list: started from the admin, run in chunks with its
progress visible, resumable, never tagging twice; a removal batch takes the tags off."""

from __future__ import annotations

import random

import pytest
from django.urls import reverse
from django.utils import timezone, translation

from contacts.batch_tagging import batch_tag_job_create, batch_tag_job_run
from contacts.models import (
    BatchTagJob,
    CustomerTag,
    ExternalContact,
    FollowRelation,
    TimelineEvent,
)
from contacts.tags import tag_group_create
from contacts.tasks import batch_tag_job_run_task
from scrm.pipeline import add_record
from scrm.wecom.client import WeComRateLimited
from scrm.wecom.models import ApiCall
from scrm.wecom.sandbox.models import SandboxFault, SandboxFollow
from scrm.wecom.sandbox.simulate import sandbox_customer_add

pytestmark = pytest.mark.django_db

STAFF = ["staff01", "staff02", "staff03"]
CHANGELIST = "/admin/contacts/externalcontact/"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def tags(corp, sandbox_corp) -> dict[str, str]:
    group = tag_group_create(corp=corp, name="意向", tag_names=["高意向", "已成交"])
    return dict(group.tags.values_list("name", "tag_id"))


def _customers_add(corp, sandbox_corp, count: int, *, state: str = "pyq_0012", seed: int = 0):
    """`count` customers who added staff01..03 in WeCom (the sandbox) and are recorded here."""
    rng = random.Random(seed)
    now = timezone.now()
    for index in range(count):
        userid = STAFF[index % len(STAFF)]
        customer, _follow, _code = sandbox_customer_add(
            corp=sandbox_corp, userid=userid, rng=rng, state=state
        )
        add_record(
            corp=corp, userid=userid, external_userid=customer.external_userid, state=state,
            added_at=now,
        )  # fmt: skip


def _sandbox_tags(sandbox_corp, state: str = "pyq_0012") -> dict[int, list[str]]:
    follows = SandboxFollow.objects.filter(customer__corp=sandbox_corp, state=state)
    return {follow.pk: list(follow.tag_ids) for follow in follows}


def _mark_tag_calls() -> int:
    return ApiCall.objects.filter(endpoint="externalcontact/mark_tag").count()


def _job_page(admin_client, job: BatchTagJob):
    response = admin_client.get(reverse("admin:contacts_batchtagjob_change", args=[job.pk]))
    assert response.status_code == 200
    return response


def _job_create(corp, tag_ids: list[str], *, add: bool = True, state: str = "pyq_0012"):
    return batch_tag_job_create(
        corp=corp,
        contacts=ExternalContact.objects.filter(first_source__state=state),
        tag_ids=tag_ids,
        add=add,
    )


def test_250_filtered_customers_tagged_in_chunks_with_progress_then_never_twice(
    admin_client, corp, sandbox_corp, tags, django_capture_on_commit_callbacks
):
    _customers_add(corp, sandbox_corp, 250)
    _customers_add(corp, sandbox_corp, 5, state="xhs_618", seed=1)  # not in the filter
    tag = tags["高意向"]
    url = f"{CHANGELIST}?first_state=pyq_0012"
    one = ExternalContact.objects.filter(first_source__state="pyq_0012").first()
    # "Select all 250" on a list that shows 100 per page: the action gets the whole filter.
    selection = {"action": "batch_tag", "select_across": "1", "_selected_action": [one.pk]}

    page = admin_client.post(url, {**selection, "index": "0"})
    assert page.status_code == 200
    assert (page.context["customer_count"], page.context["relation_count"]) == (250, 250)
    assert "高意向" in page.content.decode()
    assert not BatchTagJob.objects.exists()

    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = admin_client.post(url, {**selection, "apply": "yes", "add": "1", "tags": [tag]})
    job = BatchTagJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:contacts_batchtagjob_change", args=[job.pk])
    assert (job.total, job.done, job.status, job.add) == (250, 0, "pending", True)
    assert len(queued) == 1  # the job's task, queued once the job is committed

    # The worker runs a chunk; the page shows where it is and keeps refreshing itself.
    assert batch_tag_job_run(job_id=job.pk, limit=100) == 150
    page = _job_page(admin_client, job)
    assert page.context["progress"]["done"] == 100
    html = page.content.decode()
    assert '<meta http-equiv="refresh" content="2">' in html
    assert 'value="100" max="250"' in html

    queued[0]()  # the queued task carries on, chunk after chunk, to the end
    job.refresh_from_db()
    assert (job.done, job.failed, job.total, job.status) == (250, 0, 250, "done")
    assert job.finished_at is not None
    html = _job_page(admin_client, job).content.decode()
    assert 'value="250" max="250"' in html
    assert "http-equiv" not in html
    assert set(map(tuple, _sandbox_tags(sandbox_corp).values())) == {(tag,)}
    assert set(map(tuple, _sandbox_tags(sandbox_corp, "xhs_618").values())) == {()}
    assert CustomerTag.objects.filter(tag__tag_id=tag, source="manual").count() == 250
    assert TimelineEvent.objects.filter(kind=TimelineEvent.Kind.TAGGED).count() == 250

    # Re-running the finished job, or the very same batch again, changes nothing.
    in_wecom, calls = _sandbox_tags(sandbox_corp), _mark_tag_calls()
    assert batch_tag_job_run_task.delay(job.pk).get() == 0
    with django_capture_on_commit_callbacks(execute=True):
        again = _job_create(corp, [tag])
    again.refresh_from_db()
    assert (again.done, again.failed, again.status) == (250, 0, "done")
    assert _sandbox_tags(sandbox_corp) == in_wecom
    assert _mark_tag_calls() == calls
    assert CustomerTag.objects.count() == 250
    assert TimelineEvent.objects.filter(kind=TimelineEvent.Kind.TAGGED).count() == 250


def test_job_resumes_after_a_rate_limit_without_tagging_twice(
    corp, sandbox_corp, tags, settings, django_capture_on_commit_callbacks
):
    _customers_add(corp, sandbox_corp, 30)
    tag = tags["高意向"]
    with django_capture_on_commit_callbacks(execute=False):
        job = _job_create(corp, [tag])
    assert batch_tag_job_run(job_id=job.pk, limit=10) == 20

    # 45009 outlasting the client's own retries: the chunk stops where it is.
    SandboxFault.objects.create(
        endpoint="externalcontact/mark_tag", errcode=45009, remaining=settings.WECOM_RETRY_ATTEMPTS
    )
    with pytest.raises(WeComRateLimited):
        batch_tag_job_run(job_id=job.pk, limit=10)
    job.refresh_from_db()
    assert (job.done, job.failed, job.status) == (10, 0, "running")

    batch_tag_job_run_task.delay(job.pk)  # Celery's retry, once the limit is lifted
    job.refresh_from_db()
    assert (job.done, job.failed, job.status) == (30, 0, "done")
    assert set(map(tuple, _sandbox_tags(sandbox_corp).values())) == {(tag,)}
    assert CustomerTag.objects.count() == 30


def test_refused_and_gone_relations_are_counted_and_listed(
    admin_client, corp, sandbox_corp, tags, django_capture_on_commit_callbacks
):
    _customers_add(corp, sandbox_corp, 6)
    with django_capture_on_commit_callbacks(execute=False):
        job = _job_create(corp, [tags["高意向"]])
    first, second = job.relation_ids[:2]
    FollowRelation.objects.filter(pk=second).update(
        status=FollowRelation.Status.DELETED_BY_CUSTOMER
    )
    SandboxFault.objects.create(endpoint="externalcontact/mark_tag", errcode=84061)

    batch_tag_job_run_task.delay(job.pk)
    job.refresh_from_db()
    assert (job.done, job.failed, job.status) == (4, 2, "done")
    assert [row["relation"] for row in job.errors] == [first, second]
    assert "84061" in job.errors[0]["error"]
    with translation.override("en"):
        html = _job_page(admin_client, job).content.decode()
    assert "errcode 84061" in html
    assert job.errors[0]["customer"] in html


def test_removal_batch_takes_only_the_chosen_tag_off(
    corp, sandbox_corp, tags, django_capture_on_commit_callbacks
):
    _customers_add(corp, sandbox_corp, 20)
    high, won = tags["高意向"], tags["已成交"]
    with django_capture_on_commit_callbacks(execute=True):
        _job_create(corp, [high, won])
    assert CustomerTag.objects.count() == 40

    with django_capture_on_commit_callbacks(execute=True):
        removal = _job_create(corp, [high], add=False)
    removal.refresh_from_db()
    assert (removal.done, removal.failed, removal.status) == (20, 0, "done")
    assert set(map(tuple, _sandbox_tags(sandbox_corp).values())) == {(won,)}
    assert set(CustomerTag.objects.values_list("tag__tag_id", flat=True)) == {won}
    assert CustomerTag.objects.count() == 20
    assert TimelineEvent.objects.filter(kind=TimelineEvent.Kind.UNTAGGED).count() == 20

    calls = _mark_tag_calls()
    with django_capture_on_commit_callbacks(execute=True):
        again = _job_create(corp, [high], add=False)
    again.refresh_from_db()
    assert (again.done, again.status) == (20, "done")
    assert _mark_tag_calls() == calls
    assert TimelineEvent.objects.filter(kind=TimelineEvent.Kind.UNTAGGED).count() == 20


def test_job_left_pending_by_a_broker_outage_is_resumed_from_the_admin(
    admin_client, corp, sandbox_corp, tags, django_capture_on_commit_callbacks
):
    _customers_add(corp, sandbox_corp, 3)
    with django_capture_on_commit_callbacks(execute=False):
        job = _job_create(corp, [tags["已成交"]])  # its task never reached a worker
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:contacts_batchtagjob_changelist"),
            {"action": "resume", "_selected_action": [job.pk]},
        )
    assert response.status_code == 302
    job.refresh_from_db()
    assert (job.done, job.status) == (3, "done")


def test_batch_needs_a_tag_and_a_live_relation(
    admin_client, corp, sandbox_corp, tags, django_capture_on_commit_callbacks
):
    _customers_add(corp, sandbox_corp, 2)
    pks = list(ExternalContact.objects.values_list("pk", flat=True))
    selection = {"action": "batch_tag", "_selected_action": pks, "apply": "yes", "add": "1"}
    page = admin_client.post(CHANGELIST, selection)
    assert page.status_code == 200
    assert "tags" in page.context["form"].errors

    FollowRelation.objects.update(status=FollowRelation.Status.DELETED_BY_STAFF)
    page = admin_client.post(CHANGELIST, {**selection, "tags": [tags["已成交"]]})
    assert page.status_code == 200
    assert page.context["form"].non_field_errors()
    assert not BatchTagJob.objects.exists()
