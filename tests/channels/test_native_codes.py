"""Native codes: one WeCom multi-user contact way whose staff list follows caps and shifts."""

import datetime as dt
import random

import pytest
import time_machine

from channels_app.models import Attribution, LiveCode, ScheduleRule
from channels_app.services.publishing import PublishError, live_code_publish, live_code_sync
from channels_app.state import parse_state
from contacts.models import Staff
from scrm.wecom.models import ApiCall
from scrm.wecom.sandbox.models import SandboxContactWay, SandboxMember
from scrm.wecom.sandbox.simulate import sandbox_customer_add

pytestmark = pytest.mark.django_db


def _add_through(sandbox_corp, post_event, way, userid, seed=1):
    customer, follow, _ = sandbox_customer_add(
        corp=sandbox_corp, userid=userid, rng=random.Random(seed), state=way.state
    )
    post_event("add_external_contact", follow.createtime, UserID=userid,
               ExternalUserID=customer.external_userid, State=way.state)  # fmt: skip
    return customer


def test_publish_native_code_creates_a_multi_user_contact_way(make_code, sandbox_corp):
    code = live_code_publish(live_code=make_code(mode="native", is_exclusive=True))
    way = SandboxContactWay.objects.get(config_id=code.config_id)
    assert (way.type, way.scene, way.is_exclusive) == (2, 2, True)
    assert sorted(way.users) == ["staff01", "staff02", "staff03"]
    assert parse_state(way.state).object_id == code.pk
    assert code.qr_code == way.qr_code


def test_editing_an_active_code_keeps_its_printed_qr(make_code, sandbox_corp):
    code = live_code_publish(live_code=make_code(mode="native"))
    config_id, qr = code.config_id, code.qr_code
    code.name = "改名后的海报"
    code.save()
    code = live_code_publish(live_code=code)
    assert (code.config_id, code.qr_code) == (config_id, qr)
    assert SandboxContactWay.objects.get().remark == "改名后的海报"


def test_native_code_rotates_staff_off_when_cap_is_hit(make_code, sandbox_corp, post_event):
    code = live_code_publish(live_code=make_code(mode="native", caps=(1, None, None)))
    way = SandboxContactWay.objects.get()
    _add_through(sandbox_corp, post_event, way, "staff01")
    way.refresh_from_db()
    assert sorted(way.users) == ["staff02", "staff03"]
    code.refresh_from_db()
    assert code.published_users == way.users
    attribution = Attribution.objects.get()
    assert (attribution.live_code, attribution.state_kind) == (code, "native")


def test_unchanged_eligible_set_costs_no_api_call(make_code, sandbox_corp, post_event):
    code = live_code_publish(live_code=make_code(mode="native"))
    calls = ApiCall.objects.filter(endpoint="externalcontact/update_contact_way").count()
    _add_through(sandbox_corp, post_event, SandboxContactWay.objects.get(), "staff02")
    assert not live_code_sync(live_code_id=code.pk)
    assert ApiCall.objects.filter(endpoint="externalcontact/update_contact_way").count() == calls


def test_shift_edge_changes_the_list(make_code, sandbox_corp, staff):
    code = make_code(mode="native")
    day, night = ScheduleRule.objects.create(live_code=code, start_time=dt.time(9),
                                             end_time=dt.time(18)), ScheduleRule.objects.create(
        live_code=code, start_time=dt.time(18), end_time=dt.time(9))  # fmt: skip
    day.members.set(code.pool.filter(staff__in=staff[:2]))
    night.members.set(code.pool.filter(staff=staff[2]))
    shanghai = dt.timezone(dt.timedelta(hours=8))
    with time_machine.travel(dt.datetime(2026, 11, 23, 10, 0, tzinfo=shanghai), tick=False):
        live_code_publish(live_code=code)
    assert sorted(SandboxContactWay.objects.get().users) == ["staff01", "staff02"]
    with time_machine.travel(dt.datetime(2026, 11, 23, 18, 0, 30, tzinfo=shanghai), tick=False):
        from channels_app.services.schedule_edges import live_codes_at_window_edge

        assert live_codes_at_window_edge() == {code.pk}
        assert live_code_sync(live_code_id=code.pk)
    assert SandboxContactWay.objects.get().users == ["staff03"]


def test_publish_names_the_member_who_cannot_receive_customers(make_code, sandbox_corp, staff):
    SandboxMember.objects.filter(corp=sandbox_corp, userid="staff02").update(
        customer_contact_enabled=False
    )
    Staff.objects.filter(pk=staff[2].pk).update(status=Staff.Status.LEFT)
    code = make_code(mode="native")
    with pytest.raises(PublishError) as error:
        live_code_publish(live_code=code)
    assert "staff02" in error.value.message
    assert "staff03" in error.value.message
    code.refresh_from_db()
    assert code.status == LiveCode.Status.DRAFT
    assert not SandboxContactWay.objects.exists()


def test_wecom_errors_are_translated_for_the_operator(make_code, sandbox_corp):
    from scrm.wecom.sandbox.models import SandboxFault

    SandboxFault.objects.create(endpoint="externalcontact/add_contact_way", errcode=41054)
    with pytest.raises(PublishError, match="成员尚未激活"):
        live_code_publish(live_code=make_code(mode="native"))


def test_a_native_codes_cap_use_today_counts_adds_not_scans(make_code, sandbox_corp, post_event):
    from channels_app.selectors import live_codes_with_today

    code = live_code_publish(live_code=make_code(mode="native", caps=(5, 5, 5)))
    way = SandboxContactWay.objects.get(config_id=code.config_id)
    for seed in (1, 2):
        _add_through(sandbox_corp, post_event, way, "staff01", seed=seed)
    row = live_codes_with_today().get(pk=code.pk)
    assert (row.adds_today, row.assigned_today, row.cap_used_today, row.cap_today) == (2, 0, 2, 15)
