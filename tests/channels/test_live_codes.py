"""The live code services every interface writes through: create, update, and the pool, whose
change re-syncs an active published native code's WeCom user list once."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from channels_app.models import LiveCode, PoolMember, ScheduleRule
from channels_app.services.live_codes import (
    live_code_create,
    live_code_pool_set,
    live_code_update,
)
from channels_app.services.publishing import live_code_publish
from contacts.models import Staff
from scrm.wecom.models import ApiCall, Corp
from scrm.wecom.sandbox.models import SandboxContactWay

pytestmark = pytest.mark.django_db


def _updates() -> int:
    return ApiCall.objects.filter(endpoint="externalcontact/update_contact_way").count()


@pytest.fixture
def published(make_code, sandbox_corp) -> LiveCode:
    return live_code_publish(live_code=make_code(mode="native"))


def test_create_writes_the_code_and_its_pool(corp, channel, staff):
    pool = [{"staff": staff[0], "daily_cap": 9}, {"staff": staff[1], "is_backup": True}]
    code = live_code_create(corp=corp, channel=channel, name="门店", slug="store-1",
                            mode="landing", pool=pool)  # fmt: skip
    assert (code.status, code.mode) == ("draft", "landing")
    assert sorted(code.pool.values_list("staff__userid", "daily_cap", "is_backup", "weight")) == [
        ("staff01", 9, False, 1), ("staff02", None, True, 1),
    ]  # fmt: skip


def test_create_validates_before_writing(corp, channel, staff):
    with pytest.raises(ValidationError) as error:
        live_code_create(corp=corp, channel=channel, name="x", slug="two words",
                         auto_accept_from="09:00")  # fmt: skip
    assert {"slug", "__all__"} <= set(error.value.message_dict)
    with pytest.raises(ValidationError) as error:
        live_code_create(corp=corp, channel=channel, name="x", slug="ok",
                         pool=[{"staff": staff[0], "weight": 0}])  # fmt: skip
    assert "staff01" in error.value.message_dict["pool"][0]
    assert not LiveCode.objects.exists()


def test_pool_set_keeps_the_rows_of_staff_who_stay(make_code, staff):
    code = make_code(caps=(5, 6, 7))
    shift = ScheduleRule.objects.create(live_code=code, start_time="09:00", end_time="18:00")
    shift.members.set(code.pool.all())
    kept = code.pool.get(staff=staff[0])
    change = live_code_pool_set(live_code=code, rows=[
        {"staff": staff[0], "weight": 3}, {"staff": staff[1]},
    ])  # fmt: skip
    assert [(m.staff.userid, fields) for m, fields in change.updated] == [("staff01", ["weight"])]
    assert [m.staff.userid for m in change.deleted] == ["staff03"]
    assert change.created == []
    row = code.pool.get(staff=staff[0])
    assert (row.pk, row.weight, row.daily_cap) == (kept.pk, 3, 5)  # the cap left out is kept
    assert list(shift.members.values_list("staff__userid", flat=True).order_by("pk")) == [
        "staff01", "staff02",
    ]  # fmt: skip
    same = [{"staff": staff[0]}, {"staff": staff[1]}]
    assert not live_code_pool_set(live_code=code, rows=same).changed


def test_pool_set_refuses_staff_of_another_corp_and_staff_listed_twice(make_code, staff):
    code = make_code()
    other = Corp.objects.create(corp_id="wwother", name="别家", secret="s", callback_token="t",
                                encoding_aes_key="k" * 43)  # fmt: skip
    stranger = Staff.objects.create(corp=other, userid="stranger")
    for rows in ([{"staff": stranger}], [{"staff": staff[0]}, {"staff": staff[0]}]):
        with pytest.raises(ValidationError):
            live_code_pool_set(live_code=code, rows=rows)
    assert PoolMember.objects.filter(live_code=code).count() == 3


def test_a_pool_change_of_a_published_native_code_resyncs_it_once(
    published, staff, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        live_code_pool_set(live_code=published, rows=[{"staff": staff[0]}])
        live_code_pool_set(live_code=published, rows=[{"staff": staff[0]}, {"staff": staff[1]}])
    assert _updates() == 1  # debounced: the second change is in the same sync
    assert sorted(SandboxContactWay.objects.get().users) == ["staff01", "staff02"]


@pytest.mark.parametrize("code_state", ["draft", "landing", "paused", "unchanged"])
def test_no_resync_where_wecom_has_nothing_to_learn(
    make_code, sandbox_corp, staff, django_capture_on_commit_callbacks, code_state
):
    if code_state == "draft":
        code = make_code(mode="native")
    else:
        code = live_code_publish(
            live_code=make_code(mode="landing" if code_state == "landing" else "native")
        )
        if code_state == "paused":
            LiveCode.objects.filter(pk=code.pk).update(status=LiveCode.Status.PAUSED)
            code.refresh_from_db()
    rows = [{"staff": s} for s in staff] if code_state == "unchanged" else [{"staff": staff[0]}]
    with django_capture_on_commit_callbacks(execute=True):
        live_code_pool_set(live_code=code, rows=rows)
    assert _updates() == 0


def test_update_saves_the_edited_fields_only_and_never_republishes(published, staff):
    stale = LiveCode.objects.get(pk=published.pk)
    LiveCode.objects.filter(pk=published.pk).update(sync_error="meanwhile")  # e.g. a sync
    live_code_update(live_code=stale, changes={"name": "新名字", "welcome_text": "你好"})
    code = LiveCode.objects.get(pk=published.pk)
    assert (code.name, code.welcome_text, code.sync_error) == ("新名字", "你好", "meanwhile")
    assert SandboxContactWay.objects.get().remark == "618 海报"
    with pytest.raises(ValidationError) as error:
        live_code_update(live_code=code, changes={"mode": "landing"})
    assert list(error.value.message_dict) == ["mode"]
    with pytest.raises(ValueError, match="config_id"):
        live_code_update(live_code=code, changes={"config_id": "forged"})
