"""The way an add travels: callback -> inbox -> pipeline -> customer with a first source."""

import itertools
import random
import time

import pytest
from django.db import OperationalError

from contacts.models import ExternalContact, FirstSource, FollowRelation
from scrm import pipeline, tasks
from scrm.wecom.models import CallbackEvent
from scrm.wecom.sandbox.models import SandboxFault
from scrm.wecom.sandbox.simulate import sandbox_customer_add

pytestmark = pytest.mark.django_db


def _sandbox_add(sandbox_corp, userid="staff01", state="pyq_0012", create_time=None):
    customer, follow, _code = sandbox_customer_add(
        corp=sandbox_corp,
        userid=userid,
        rng=random.Random(1),
        state=state,
        create_time=create_time,
    )
    return customer, follow


def test_add_becomes_customer_with_first_source_and_details(sandbox_corp, post_event):
    customer, follow = _sandbox_add(sandbox_corp)
    response = post_event(
        "add_external_contact",
        follow.createtime,
        UserID="staff01",
        ExternalUserID=customer.external_userid,
        State="pyq_0012",
        WelcomeCode="w1",
    )
    assert response.status_code == 200
    assert response.content == b""
    contact = ExternalContact.objects.get(external_userid=customer.external_userid)
    assert contact.name == customer.name
    assert contact.details_fetched_at is not None
    first = contact.first_source
    assert (first.state, first.staff.userid, first.add_way) == ("pyq_0012", "staff01", 1)
    assert int(first.added_at.timestamp()) == follow.createtime
    assert CallbackEvent.objects.get().status == CallbackEvent.Status.PROCESSED


def test_each_event_three_times_in_shuffled_order_gives_one_customer(sandbox_corp, post_event):
    events = []
    for index in range(5):
        customer, follow = _sandbox_add(sandbox_corp, userid=f"staff0{index % 3 + 1}")
        events.append((follow.createtime, follow.userid, customer.external_userid))
    deliveries = events * 3
    random.Random(7).shuffle(deliveries)
    for create_time, userid, external_userid in deliveries:
        response = post_event(
            "add_external_contact",
            create_time,
            UserID=userid,
            ExternalUserID=external_userid,
            State="xhs_618",
        )
        assert response.status_code == 200
    assert ExternalContact.objects.count() == 5
    assert FirstSource.objects.count() == 5
    assert FollowRelation.objects.count() == 5
    assert CallbackEvent.objects.count() == 5
    assert sum(CallbackEvent.objects.values_list("duplicates", flat=True)) == 10


def test_two_customers_adding_the_same_staff_in_the_same_second_are_both_recorded(
    sandbox_corp, post_event
):
    now = int(time.time())
    first, _ = _sandbox_add(sandbox_corp, create_time=now)
    second, _ = _sandbox_add(sandbox_corp, create_time=now)
    for customer in (first, second):
        post_event(
            "add_external_contact", now, UserID="staff01", ExternalUserID=customer.external_userid
        )
    assert ExternalContact.objects.count() == 2
    assert FirstSource.objects.filter(staff__userid="staff01").count() == 2


def test_first_source_is_kept_when_customer_re_adds_another_staff(sandbox_corp, post_event):
    now = int(time.time())
    customer, _ = _sandbox_add(sandbox_corp, userid="staff01", state="pyq_0012", create_time=now)
    post_event(
        "add_external_contact",
        now,
        UserID="staff01",
        ExternalUserID=customer.external_userid,
        State="pyq_0012",
    )
    post_event(
        "add_external_contact",
        now + 60,
        UserID="staff02",
        ExternalUserID=customer.external_userid,
        State="dy_ad_07",
    )
    first = FirstSource.objects.get()
    assert (first.staff.userid, first.state) == ("staff01", "pyq_0012")
    assert FollowRelation.objects.count() == 2


def test_an_earlier_add_delivered_late_becomes_the_first_source(sandbox_corp, post_event):
    now = int(time.time())
    customer, _ = _sandbox_add(sandbox_corp, userid="staff01", state="early", create_time=now - 300)
    post_event(
        "add_external_contact",
        now,
        UserID="staff02",
        ExternalUserID=customer.external_userid,
        State="late",
    )
    post_event(
        "add_external_contact",
        now - 300,
        UserID="staff01",
        ExternalUserID=customer.external_userid,
        State="early",
    )
    first = FirstSource.objects.get()
    assert (first.staff.userid, first.state) == ("staff01", "early")


@pytest.mark.parametrize("order", list(itertools.permutations(["add", "del"])))
def test_delete_and_add_in_any_order_end_deleted(sandbox_corp, post_event, order):
    now = int(time.time())
    customer, _ = _sandbox_add(sandbox_corp, create_time=now)
    for kind in order:
        if kind == "add":
            post_event(
                "add_external_contact",
                now,
                UserID="staff01",
                ExternalUserID=customer.external_userid,
                State="s",
            )
        else:
            post_event(
                "del_follow_user",
                now + 5,
                UserID="staff01",
                ExternalUserID=customer.external_userid,
            )
    relation = FollowRelation.objects.get()
    assert relation.status == FollowRelation.Status.DELETED_BY_CUSTOMER
    assert relation.created_at is not None
    assert FirstSource.objects.get().state == "s"


def test_re_add_after_delete_reactivates_relation_keeps_first_source(sandbox_corp, post_event):
    now = int(time.time())
    customer, _ = _sandbox_add(sandbox_corp, create_time=now)
    eid = customer.external_userid
    post_event("add_external_contact", now, UserID="staff01", ExternalUserID=eid, State="a")
    post_event("del_external_contact", now + 10, UserID="staff01", ExternalUserID=eid)
    assert FollowRelation.objects.get().status == FollowRelation.Status.DELETED_BY_STAFF
    post_event("add_external_contact", now + 20, UserID="staff01", ExternalUserID=eid, State="b")
    relation = FollowRelation.objects.get()
    assert relation.status == FollowRelation.Status.ACTIVE
    assert FirstSource.objects.get().state == "a"


def test_delete_by_transfer_marks_relation_transferred(sandbox_corp, post_event):
    now = int(time.time())
    customer, _ = _sandbox_add(sandbox_corp, create_time=now)
    eid = customer.external_userid
    post_event("add_external_contact", now, UserID="staff01", ExternalUserID=eid)
    post_event(
        "del_external_contact",
        now + 5,
        UserID="staff01",
        ExternalUserID=eid,
        Source="DELETE_BY_TRANSFER",
    )
    assert FollowRelation.objects.get().status == FollowRelation.Status.TRANSFERRED


def test_transfer_fail_is_recorded_on_the_takeover(sandbox_corp, post_event):
    now = int(time.time())
    customer, _ = _sandbox_add(sandbox_corp, create_time=now)
    eid = customer.external_userid
    post_event("add_external_contact", now, UserID="staff01", ExternalUserID=eid)
    post_event(
        "transfer_fail",
        now + 5,
        UserID="staff02",
        ExternalUserID=eid,
        FailReason="customer_refused",
    )
    takeover = FollowRelation.objects.get(staff__userid="staff02")
    assert takeover.status == FollowRelation.Status.TRANSFER_FAILED
    assert takeover.transfer_fail_reason == "customer_refused"
    assert FollowRelation.objects.get(staff__userid="staff01").status == "active"


@pytest.mark.parametrize("errcode", [45009, 84061, 503])
def test_add_is_recorded_when_details_cannot_be_fetched(sandbox_corp, post_event, errcode):
    SandboxFault.objects.create(endpoint="externalcontact/get", errcode=errcode, remaining=50)
    customer, follow = _sandbox_add(sandbox_corp)
    response = post_event(
        "add_external_contact",
        follow.createtime,
        UserID="staff01",
        ExternalUserID=customer.external_userid,
        State="pyq_0012",
    )
    assert response.status_code == 200
    contact = ExternalContact.objects.get()
    assert contact.details_fetched_at is None
    assert str(errcode) in contact.details_error or errcode == 503
    first = contact.first_source
    assert (first.state, first.staff.userid, first.add_way) == ("pyq_0012", "staff01", None)
    assert CallbackEvent.objects.get().status == CallbackEvent.Status.PROCESSED

    # Later, once WeCom answers again, the sweeper fills the details in.
    SandboxFault.objects.all().delete()
    from contacts.tasks import external_contacts_refresh_pending_task

    assert external_contacts_refresh_pending_task.delay().get() == 1
    contact.refresh_from_db()
    assert contact.details_fetched_at is not None
    assert contact.first_source.add_way == 1


def test_unknown_event_kinds_are_kept_as_ignored(post_event):
    assert (
        post_event("msg_audit_approved", UserID="staff01", ExternalUserID="wmx").status_code == 200
    )
    assert CallbackEvent.objects.get().status == CallbackEvent.Status.IGNORED


def test_timeline_records_each_lifecycle_event_once(sandbox_corp, post_event):
    from contacts.models import TimelineEvent

    now = int(time.time())
    customer, _ = _sandbox_add(sandbox_corp, create_time=now)
    eid = customer.external_userid
    for _ in range(2):  # a replay writes nothing new
        post_event("add_external_contact", now, UserID="staff01", ExternalUserID=eid, State="s1")
        post_event("add_external_contact", now + 5, UserID="staff02", ExternalUserID=eid)
        post_event("del_follow_user", now + 9, UserID="staff02", ExternalUserID=eid)
        post_event("del_external_contact", now + 10, UserID="staff01", ExternalUserID=eid,
                   Source="DELETE_BY_TRANSFER")  # fmt: skip
    kinds = list(TimelineEvent.objects.order_by("occurred_at").values_list("kind", flat=True))
    assert kinds == ["added", "re_added", "deleted_by_customer", "transferred"]
    added = TimelineEvent.objects.get(kind="added")
    assert added.data["state"] == "s1"
    assert added.staff.userid == "staff01"


def test_after_add_rolled_back_by_a_deadlock_is_redone_by_its_task(monkeypatch):
    calls: list[dict] = []

    def deadlocks_once(**kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            raise OperationalError("deadlock detected")

    monkeypatch.setattr(pipeline, "after_add", deadlocks_once)
    result = tasks.after_add_task.apply((7, "welcome-code", 1796000000.0))
    assert result.state == "SUCCESS"
    assert len(calls) == 2
    assert calls[0] == calls[1]
