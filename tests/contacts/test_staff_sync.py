"""Staff changes from WeCom: members who left are marked and leave every pool (their native
codes stop listing them), members who return are active again, reply times are stored."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.utils import timezone

from channels_app.models import Channel, LiveCode, PoolMember
from channels_app.services.live_codes import live_code_create
from channels_app.services.publishing import live_code_publish
from channels_app.services.staff_changes import pools_remove_staff
from contacts.models import AuditLog, Staff
from contacts.staff_sync import staff_reply_times_refresh, staff_sync
from scrm.tasks import staff_sync_all_task, staff_sync_task
from scrm.wecom.models import ApiCall
from scrm.wecom.sandbox import api as sandbox_api
from scrm.wecom.sandbox.models import SandboxContactWay, SandboxMember

pytestmark = pytest.mark.django_db


def _member(userid: str, *, enabled: bool) -> None:
    SandboxMember.objects.filter(userid=userid).update(customer_contact_enabled=enabled)


def _staff(corp, userid: str) -> Staff:
    return Staff.objects.get(corp=corp, userid=userid)


@pytest.fixture
def codes(corp, sandbox_corp):
    """A published native code and a landing code, both with staff01..03 in the pool."""
    channel = Channel.objects.create(corp=corp, name="电梯海报", code="dt_01")
    staff_sync(corp=corp)
    made = []
    for mode in (LiveCode.Mode.NATIVE, LiveCode.Mode.LANDING):
        pool = [{"staff": staff} for staff in Staff.objects.filter(corp=corp)]
        code = live_code_create(corp=corp, channel=channel, name=f"{mode} 码",
                                slug=f"dt-{mode}", mode=mode, pool=pool)  # fmt: skip
        made.append(live_code_publish(live_code=code))
    return made


def test_a_member_gone_from_wecom_is_marked_left_and_active_again_on_return(corp, sandbox_corp):
    first = staff_sync(corp=corp)
    assert len(first.created) == 3
    assert (first.left, first.returned) == ([], [])
    _member("staff03", enabled=False)
    result = staff_sync(corp=corp)
    staff03 = _staff(corp, "staff03")
    assert (result.created, result.left, result.returned) == ([], [staff03.pk], [])
    assert staff03.status == Staff.Status.LEFT
    assert staff03.left_at is not None
    assert _staff(corp, "staff01").status == Staff.Status.ACTIVE
    assert staff_sync(corp=corp).left == []  # already marked: nothing new

    _member("staff03", enabled=True)
    result = staff_sync(corp=corp)
    staff03.refresh_from_db()
    assert result.returned == [staff03.pk]
    assert (staff03.status, staff03.left_at) == (Staff.Status.ACTIVE, None)
    assert list(AuditLog.objects.order_by("pk").values_list("action", "target", "actor_label")) == [
        ("staff_left", "staff03", "WeCom"),
        ("staff_returned", "staff03", "WeCom"),
    ]


def test_a_disabled_member_who_leaves_wecom_is_marked_left(corp, sandbox_corp):
    staff_sync(corp=corp)
    Staff.objects.filter(userid="staff02").update(status=Staff.Status.DISABLED)
    _member("staff02", enabled=False)
    staff_sync(corp=corp)
    assert _staff(corp, "staff02").status == Staff.Status.LEFT


def test_an_empty_member_list_marks_nobody_left(corp, sandbox_corp):
    staff_sync(corp=corp)
    SandboxMember.objects.update(customer_contact_enabled=False)
    result = staff_sync(corp=corp)
    assert (result.left, result.created) == ([], [])
    assert not Staff.objects.exclude(status=Staff.Status.ACTIVE).exists()


def test_staff_sync_task_takes_a_member_who_left_out_of_every_pool(
    corp, sandbox_corp, codes, django_capture_on_commit_callbacks
):
    native, landing = codes
    way = SandboxContactWay.objects.get(config_id=native.config_id)
    assert sorted(way.users) == ["staff01", "staff02", "staff03"]
    _member("staff03", enabled=False)
    with django_capture_on_commit_callbacks(execute=True):
        changed = staff_sync_task(corp.pk)
    assert changed == sorted([native.pk, landing.pk])
    staff03 = _staff(corp, "staff03")
    assert not PoolMember.objects.filter(staff=staff03, is_enabled=True).exists()
    assert PoolMember.objects.filter(staff=staff03).count() == 2  # kept, disabled
    assert PoolMember.objects.filter(is_enabled=True).count() == 4
    way.refresh_from_db()
    assert sorted(way.users) == ["staff01", "staff02"]
    native.refresh_from_db()
    assert sorted(native.published_users) == ["staff01", "staff02"]

    # Nothing changed since: no pool is touched and WeCom is not called again.
    updates = ApiCall.objects.filter(endpoint="externalcontact/update_contact_way").count()
    with django_capture_on_commit_callbacks(execute=True):
        assert staff_sync_task(corp.pk) == []
    assert ApiCall.objects.filter(endpoint="externalcontact/update_contact_way").count() == updates


def test_pools_are_cleared_even_when_the_sync_that_marked_the_member_died_before(
    corp, sandbox_corp, codes, django_capture_on_commit_callbacks
):
    native, _landing = codes
    _member("staff02", enabled=False)
    staff_sync(corp=corp)  # marked left; the pool step never ran
    assert PoolMember.objects.filter(staff__userid="staff02", is_enabled=True).count() == 2
    with django_capture_on_commit_callbacks(execute=True):
        staff_sync_task(corp.pk)
    assert not PoolMember.objects.filter(staff__userid="staff02", is_enabled=True).exists()
    assert "staff02" not in SandboxContactWay.objects.get(config_id=native.config_id).users


def test_pools_remove_staff_without_memberships_changes_nothing(corp, sandbox_corp):
    staff_sync(corp=corp)
    assert pools_remove_staff(staff_ids=[_staff(corp, "staff01").pk]) == set()


def test_staff_sync_all_task_syncs_every_active_corp(corp, sandbox_corp):
    assert staff_sync_all_task() == 1
    assert Staff.objects.filter(corp=corp).count() == 3


def test_reply_times_are_the_mean_of_the_days_with_chats(corp, sandbox_corp, monkeypatch):
    """The sandbox has no chats; this wraps its statistics with WeCom's avg_reply_time."""
    staff_sync(corp=corp)
    _member("staff03", enabled=False)
    staff_sync(corp=corp)
    Staff.objects.filter(userid="staff03").update(avg_reply_minutes=99)
    asked: list[dict] = []
    key = ("POST", "externalcontact/get_user_behavior_data")
    original = sandbox_api.ENDPOINTS[key]
    minutes = {"staff01": [10, None, 20, None, None, None, 3], "staff02": [None] * 7}

    def with_chats(corp_, query, body):
        asked.append(body)
        answer = original(corp_, query, body)
        for row, value in zip(answer["behavior_data"], minutes[body["userid"][0]], strict=True):
            if value is not None:
                row.update(chat_cnt=4, avg_reply_time=value)
        return answer

    monkeypatch.setitem(sandbox_api.ENDPOINTS, key, with_chats)
    assert staff_reply_times_refresh(corp=corp, days=7) == 2
    assert _staff(corp, "staff01").avg_reply_minutes == 11.0
    assert _staff(corp, "staff02").avg_reply_minutes is None
    assert _staff(corp, "staff03").avg_reply_minutes == 99  # left: not asked
    assert [body["userid"] for body in asked] == [["staff01"], ["staff02"]]
    yesterday = timezone.localdate(timezone=sandbox_api.CST) - dt.timedelta(days=1)
    midnight = dt.datetime.combine(yesterday, dt.time.min, tzinfo=sandbox_api.CST)
    assert all(b["end_time"] - b["start_time"] == 6 * 86400 for b in asked)
    assert asked[0]["end_time"] == int(midnight.timestamp())


def test_beat_schedule_includes_calibration_staff_sync_and_reply_times(db):
    from django_celery_beat.models import PeriodicTask

    call_command("setup_periodic_tasks", stdout=io.StringIO())
    tasks = dict(PeriodicTask.objects.values_list("task", "interval__every"))
    assert tasks["contacts.tasks.calibrate_all_task"] == 3600
    assert tasks["scrm.tasks.staff_sync_all_task"] == 3600
    assert tasks["contacts.tasks.staff_reply_times_refresh_all_task"] == 86400
