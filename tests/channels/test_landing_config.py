"""The landing page reads its code and pool from a per-process cache: saving what it is built
from takes effect on the next visit, and changes that bypass save() within the TTL."""

from __future__ import annotations

from datetime import time

import pytest

from channels_app import selectors
from channels_app.models import LiveCode, PoolMember, Scan, ScheduleRule
from channels_app.services.publishing import live_code_publish

pytestmark = pytest.mark.django_db

PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) MicroMessenger/8.0.40"


def _visit(client, code, ip):
    return client.get(f"/l/{code.slug}/", HTTP_USER_AGENT=PHONE, REMOTE_ADDR=ip)


def test_the_code_and_pool_are_read_once_per_ttl(make_code, sandbox_corp, client):
    code = live_code_publish(live_code=make_code())
    first = selectors.landing_config(code.slug)
    assert selectors.landing_config(code.slug) is first
    assert [m.staff_id for m in first.members] == list(
        code.pool.order_by("pk").values_list("staff_id", flat=True)
    )
    assert selectors.landing_config("no-such-code") is None


def test_pausing_a_code_takes_effect_on_the_next_visit(make_code, sandbox_corp, client):
    code = live_code_publish(live_code=make_code())
    assert _visit(client, code, "10.0.0.1").status_code == 200
    code.status = LiveCode.Status.PAUSED
    code.save()
    assert _visit(client, code, "10.0.0.2").status_code == 410


def test_disabling_the_corp_stops_its_codes_on_the_next_visit(make_code, sandbox_corp, client):
    code = live_code_publish(live_code=make_code())
    assert _visit(client, code, "10.0.0.1").status_code == 200
    corp = code.corp
    corp.is_active = False
    corp.save()
    response = _visit(client, code, "10.0.0.2")
    assert response.status_code == 410  # as a paused code: no one assigned, nothing counted
    assert Scan.objects.count() == 1
    corp.is_active = True
    corp.save()
    assert _visit(client, code, "10.0.0.3").status_code == 200


def test_a_disabled_pool_member_gets_no_more_visitors(make_code, sandbox_corp, client, staff):
    code = live_code_publish(live_code=make_code(strategy="round_robin"))
    assert _visit(client, code, "10.0.0.1").status_code == 200
    first_scan = Scan.objects.get()
    member = PoolMember.objects.get(live_code=code, staff=staff[0])
    member.is_enabled = False
    member.save()
    for index in range(6):
        assert _visit(client, code, f"10.0.1.{index}").status_code == 200
    later = Scan.objects.filter(pk__gt=first_scan.pk)
    assert later.count() == 6
    assert not later.filter(staff=staff[0]).exists()


def test_a_new_schedule_rule_and_its_members_clear_the_cache(make_code, sandbox_corp, client):
    code = live_code_publish(live_code=make_code())
    assert selectors.landing_config(code.slug).live_code.has_schedule is False
    rule = ScheduleRule.objects.create(
        live_code=code, weekdays="0123456", start_time=time(0), end_time=time(23, 59)
    )
    assert selectors.landing_config(code.slug).live_code.has_schedule is True
    cached = selectors.landing_config(code.slug)
    rule.members.set(code.pool.all()[:1])
    assert selectors.landing_config(code.slug) is not cached


def test_a_queryset_update_shows_once_the_ttl_is_over(make_code, sandbox_corp, monkeypatch):
    code = live_code_publish(live_code=make_code())
    clock = [100.0]
    monkeypatch.setattr(selectors, "monotonic", lambda: clock[0])
    selectors.landing_config_cache_clear()
    assert selectors.landing_config(code.slug).live_code.status == LiveCode.Status.ACTIVE
    LiveCode.objects.filter(pk=code.pk).update(status=LiveCode.Status.PAUSED)  # no signal
    assert selectors.landing_config(code.slug).live_code.status == LiveCode.Status.ACTIVE
    clock[0] += selectors.LANDING_CONFIG_SECONDS
    assert selectors.landing_config(code.slug).live_code.status == LiveCode.Status.PAUSED


def test_rendered_pages_are_reused_per_member(make_code, sandbox_corp, client, staff):
    code = live_code_publish(live_code=make_code(strategy="round_robin"))
    pages = [
        client.get(f"/l/{code.slug}/", HTTP_USER_AGENT=PHONE, REMOTE_ADDR=f"10.0.3.{index}",
                   HTTP_ACCEPT_LANGUAGE=language).content.decode()
        for index, language in enumerate(["zh-hans", "zh-hans", "zh-hans", "en", "zh-hans"])
    ]  # fmt: skip
    scans = list(Scan.objects.order_by("pk").select_related("staff", "slot"))
    for page, scan in zip(pages, scans, strict=True):
        assert scan.staff.userid in page  # the member's own name, never a cached neighbour's
        assert scan.slot.qr_code in page
    assert "长按" in pages[0]
    assert "长按" in pages[3]  # the code's language, whatever the visitor's browser asks for
    # A returning device gets the same page; the second time it comes from the cache (the
    # first may render it again: a slot top-up since then replaced the config).
    again = [
        client.get(f"/l/{code.slug}/", HTTP_USER_AGENT=PHONE, REMOTE_ADDR="10.0.3.0",
                   HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
        for _ in range(2)
    ]  # fmt: skip
    config = selectors.landing_config(code.slug)
    rendered = config.pages.items()
    assert client.get(f"/l/{code.slug}/", HTTP_USER_AGENT=PHONE, REMOTE_ADDR="10.0.3.0",
                      HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode() == pages[0]  # fmt: skip
    assert again == [pages[0], pages[0]]
    assert selectors.landing_config(code.slug).pages.items() == rendered  # nothing rendered anew


def test_a_change_saved_by_another_process_shows_at_its_next_check(
    make_code, sandbox_corp, monkeypatch
):
    from django.core.cache import cache

    code = live_code_publish(live_code=make_code())
    clock = [100.0]
    monkeypatch.setattr(selectors, "monotonic", lambda: clock[0])
    selectors.landing_config_cache_clear()
    assert selectors.landing_config(code.slug).live_code.status == LiveCode.Status.ACTIVE
    # Another process pauses the code: its save bumps the code's version in the shared cache
    # (this process's receivers never ran).
    LiveCode.objects.filter(pk=code.pk).update(status=LiveCode.Status.PAUSED)
    cache.set(f"{selectors.VERSION_KEY}:{code.pk}", "another process", timeout=None)
    assert selectors.landing_config(code.slug).live_code.status == LiveCode.Status.ACTIVE
    clock[0] += selectors.LANDING_CONFIG_CHECK_SECONDS
    assert selectors.landing_config(code.slug).live_code.status == LiveCode.Status.PAUSED


def test_saving_bumps_the_version_once_committed(
    make_code, sandbox_corp, staff, django_capture_on_commit_callbacks
):
    from django.core.cache import cache

    code = live_code_publish(live_code=make_code())
    key = f"{selectors.VERSION_KEY}:{code.pk}"
    before = cache.get(key)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        member = PoolMember.objects.get(live_code=code, staff=staff[0])
        member.daily_cap = 3
        member.save()
    assert cache.get(key) == before  # not before the commit: others would reload old rows
    for callback in callbacks:
        callback()
    assert cache.get(key) not in (None, before)
    with django_capture_on_commit_callbacks(execute=True):
        staff[0].save()  # a staff member may be in any code's pool: every code's version
    assert cache.get(selectors.VERSION_KEY) is not None


def test_the_process_keeps_a_bounded_number_of_configs(make_code, sandbox_corp, monkeypatch):
    monkeypatch.setattr(selectors, "_landing_configs", selectors.LRU(2))
    codes = [live_code_publish(live_code=make_code(slug=f"c{index}")) for index in range(3)]
    for code in codes:
        selectors.landing_config(code.slug)
    assert list(selectors._landing_configs) == ["c1", "c2"]
