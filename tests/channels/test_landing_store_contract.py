"""One landing semantics: the contract of channels_app.landing_store, run on both stores (the
`landing_path` fixture: the database always; Redis when LANDING_REDIS_URL is set and answers),
through the one visit function, services.landing.landing_visit."""

from __future__ import annotations

import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, time, timedelta

import pytest
from django.db import connection

from channels_app import landing_db
from channels_app import landing_redis as landing_redis_module
from channels_app.landing_db import database_store
from channels_app.landing_redis import landing_redis
from channels_app.models import Attribution, DailyCounter, PoolMember, Scan, ScheduleRule
from channels_app.selectors import landing_config
from channels_app.services import landing
from channels_app.services.landing import RETURN_WINDOW, LandingResult, landing_visit
from channels_app.services.landing_scans import landing_scans_flush
from channels_app.services.publishing import SLOT_LEASE, live_code_publish
from scrm.wecom.sandbox.models import SandboxContactWay
from scrm.wecom.sandbox.simulate import sandbox_customer_add
from tests.integration.conftest import requires_postgres

PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) MicroMessenger/8.0.40"
START = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai: no midnight in the tests


def _visit(code, device: str, **params: str) -> LandingResult:
    return landing_visit(config=landing_config(code.slug), params=params, user_agent=PHONE,
                         referrer_url="", ip=device)  # fmt: skip


def _store():
    return landing_redis() or database_store


@pytest.fixture
def no_top_ups(monkeypatch):
    """Each member keeps the slots it was published with (3)."""
    monkeypatch.setattr(landing, "_top_up_queue", lambda *args: None)


@pytest.fixture
def one_member(make_code, sandbox_corp, staff, no_top_ups):
    code = make_code()
    code.pool.exclude(staff=staff[0]).update(is_enabled=False)
    return live_code_publish(live_code=code)


@pytest.mark.django_db
@pytest.mark.usefixtures("landing_path")
class TestContract:
    def test_a_returning_device_keeps_its_member_and_slot_and_is_not_counted_twice(
        self, make_code, sandbox_corp, staff
    ):
        code = live_code_publish(live_code=make_code(caps=(2, 0, 0)))
        first = _visit(code, "10.0.0.1")
        again = _visit(code, "10.0.0.1")
        assert (first.staff, again.staff, again.slot) == (staff[0], staff[0], first.slot)
        other = _visit(code, "10.0.0.2")  # the cap of 2 counted the first device once
        assert (other.staff, other.slot == first.slot) == (staff[0], False)
        assert _visit(code, "10.0.0.3").staff is None  # at the cap: busy
        back = _visit(code, "10.0.0.1")  # a returning device takes no capacity
        assert (back.staff, back.slot) == (staff[0], first.slot)
        scans = Scan.objects.order_by("created_at").values_list("reused", "staff_id")
        assert list(scans) == [(False, staff[0].pk), (True, staff[0].pk), (False, staff[0].pk),
                               (False, None), (True, staff[0].pk)]  # fmt: skip
        assert DailyCounter.objects.get(staff=staff[0]).assigned == 2

    def test_a_returning_device_loses_its_slot_once_another_visit_leases_it(
        self, one_member, staff
    ):
        first = _visit(one_member, "10.0.0.1")
        assert _visit(one_member, "10.0.0.1").slot == first.slot
        others = [_visit(one_member, f"10.0.2.{index}") for index in range(3)]
        assert others[2].slot == first.slot  # every slot leased: the one whose lease ends first
        later = _visit(one_member, "10.0.0.1")  # so the device is a new visitor now
        assert later.slot == others[0].slot
        reused = Scan.objects.order_by("created_at").values_list("reused", flat=True)
        assert list(reused) == [False, True, False, False, False, False]

    def test_a_device_back_after_the_return_window_is_a_new_visitor(self, one_member, time_machine):
        time_machine.move_to(START)
        first = _visit(one_member, "10.0.0.1")
        time_machine.shift(RETURN_WINDOW + timedelta(seconds=1))
        later = _visit(one_member, "10.0.0.1")
        assert later.slot != first.slot  # a never-leased slot comes before an ended lease
        assert not Scan.objects.filter(reused=True).exists()

    def test_a_returning_device_whose_member_left_the_pool_gets_another(
        self, make_code, sandbox_corp, staff
    ):
        code = live_code_publish(live_code=make_code())
        first = _visit(code, "10.0.0.1")
        member = PoolMember.objects.get(live_code=code, staff=first.staff)
        member.is_enabled = False
        member.save()
        again = _visit(code, "10.0.0.1")
        assert again.staff not in (None, first.staff)
        assert not Scan.objects.filter(reused=True).exists()

    def test_slot_leases_expire(self, one_member, staff, time_machine):
        time_machine.move_to(START)
        store, member = _store(), {"live_code_id": one_member.pk, "staff_id": staff[0].pk}
        leased = []
        for index in range(3):
            leased.append(_visit(one_member, f"10.0.0.{index}").slot)
            time_machine.shift(timedelta(minutes=10))
        assert len(set(leased)) == 3
        assert store.free_slots(**member, now=START + timedelta(minutes=29)) == 0
        time_machine.move_to(START + SLOT_LEASE + timedelta(seconds=1))
        assert store.free_slots(**member, now=START + SLOT_LEASE + timedelta(seconds=1)) == 1
        assert _visit(one_member, "10.0.1.1").slot == leased[0]  # its lease is over: free again

    def test_busy_when_every_member_is_capped(self, make_code, sandbox_corp, staff):
        code = live_code_publish(live_code=make_code(caps=(1, 1, 0)))
        results = [_visit(code, f"10.0.0.{index}") for index in range(4)]
        assert {r.staff for r in results[:2]} == {staff[0], staff[1]}
        assert [(r.staff, r.slot) for r in results[2:]] == [(None, None), (None, None)]
        assert Scan.objects.filter(staff__isnull=True).count() == 2
        assert dict(DailyCounter.objects.values_list("staff__userid", "assigned")) == {
            "staff01": 1, "staff02": 1, "staff03": 0,
        }  # fmt: skip

    def test_backups_only_when_the_primaries_are_capped(self, make_code, sandbox_corp, staff):
        code = make_code(caps=(1, 1, None))
        code.pool.filter(staff=staff[2]).update(is_backup=True)
        live_code_publish(live_code=code)
        got = [_visit(code, f"10.0.0.{index}").staff for index in range(4)]
        assert set(got[:2]) == {staff[0], staff[1]}
        assert got[2:] == [staff[2], staff[2]]

    def test_backups_only_when_the_primaries_are_off_shift(self, make_code, sandbox_corp, staff):
        code = make_code(caps=(None, 1, None))
        code.pool.filter(staff=staff[2]).update(is_backup=True)
        rule = ScheduleRule.objects.create(live_code=code, weekdays="1234567",
                                           start_time=time(0), end_time=time(0))  # fmt: skip
        rule.members.set(code.pool.filter(staff=staff[1]))  # staff01 is never on shift
        live_code_publish(live_code=code)
        got = [_visit(code, f"10.0.0.{index}").staff for index in range(3)]
        assert got == [staff[1], staff[2], staff[2]]

    def test_a_raised_cap_lets_the_member_take_more(self, make_code, sandbox_corp, staff):
        code = live_code_publish(live_code=make_code(caps=(1, 0, 0)))
        assert _visit(code, "10.0.0.1").staff == staff[0]
        assert _visit(code, "10.0.0.2").staff is None
        member = PoolMember.objects.get(live_code=code, staff=staff[0])
        member.daily_cap = 2
        member.save()
        assert [_visit(code, f"10.0.1.{i}").staff for i in range(2)] == [staff[0], None]
        assert Scan.objects.filter(staff=staff[0]).count() == 2

    def test_a_visit_overtaken_while_reading_the_counters_leaves_the_cap_whole(
        self, make_code, sandbox_corp, staff, monkeypatch
    ):
        """Two concurrent first visits of the day, interleaved by hand: the second's read of
        the day's counters runs only after the first visit took capacity (on Redis: was
        granted a chunk of 3 and spent 1 of it). Every unit of the cap is still assigned."""
        code = live_code_publish(live_code=make_code(caps=(30, 0, 0)))
        overtaken: list[LandingResult | None] = []

        def read_overtaken(real):
            def read(**kwargs):
                if not overtaken:
                    overtaken.append(None)  # the first visit reads the counters unhindered
                    overtaken[0] = _visit(code, "10.0.9.1")
                return real(**kwargs)

            return read

        for module in (landing_redis_module, landing_db):
            monkeypatch.setattr(module, "daily_counters_read",
                                read_overtaken(module.daily_counters_read))  # fmt: skip
        results = [_visit(code, f"10.0.0.{index}") for index in range(30)]
        assert overtaken[0].staff == staff[0]
        assert Counter(r.staff for r in results) == {staff[0]: 29, None: 1}
        assert Scan.objects.filter(staff=staff[0]).count() == 30
        assert DailyCounter.objects.get(staff=staff[0]).assigned == 30

    def test_an_add_joins_its_scan_while_it_is_only_in_the_buffer(
        self, make_code, sandbox_corp, post_event, landing_path, monkeypatch
    ):
        monkeypatch.setattr(landing_redis_module, "_flush_soon", lambda: None)  # no flush
        code = live_code_publish(live_code=make_code(strategy="round_robin"))
        first = _visit(code, "10.0.0.1", utm_campaign="双11")
        _visit(code, "10.0.0.2", utm_campaign="618")
        way = SandboxContactWay.objects.get(config_id=first.slot.config_id)
        customer, follow, _ = sandbox_customer_add(
            corp=sandbox_corp, userid=way.users[0], rng=random.Random(4), state=way.state
        )
        post_event("add_external_contact", follow.createtime, UserID=follow.userid,
                   ExternalUserID=customer.external_userid, State=way.state)  # fmt: skip
        scan = Attribution.objects.get().scan
        assert (scan.utm_campaign, scan.staff, scan.slot) == ("双11", first.staff, first.slot)
        if landing_path == "redis":  # that one scan was written, nothing else flushed
            assert list(Scan.objects.values_list("utm_campaign", flat=True)) == ["双11"]
            assert landing_redis().client.xlen(landing_redis().stream) == 2
        else:
            assert Scan.objects.count() == 2

    def test_an_add_joins_the_scan_before_it_when_its_slot_was_leased_again(
        self, one_member, post_event, sandbox_corp, time_machine, landing_path, monkeypatch
    ):
        monkeypatch.setattr(landing_redis_module, "_flush_soon", lambda: None)
        time_machine.move_to(START)
        first = _visit(one_member, "10.0.0.1", utm_campaign="first")
        way = SandboxContactWay.objects.get(config_id=first.slot.config_id)
        customer, follow, _ = sandbox_customer_add(
            corp=sandbox_corp, userid=way.users[0], rng=random.Random(6), state=way.state
        )
        time_machine.shift(timedelta(minutes=5))
        for index in range(3):  # the third leases the first visit's slot again
            _visit(one_member, f"10.0.1.{index}", utm_campaign="later")
        added_at = int((START + timedelta(seconds=30)).timestamp())
        post_event("add_external_contact", added_at, UserID=follow.userid,
                   ExternalUserID=customer.external_userid, State=way.state)  # fmt: skip
        assert Attribution.objects.get().scan.utm_campaign == "first"


@requires_postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("strategy", ["least_loaded", "round_robin", "weighted"])
def test_64_concurrent_visits_never_exceed_the_caps(
    make_code, sandbox_corp, staff, landing_path, strategy, monkeypatch
):
    monkeypatch.setattr(landing_redis_module, "_flush_soon", lambda: None)  # flushed at the end
    caps = {staff[0]: 5, staff[1]: 7, staff[2]: 10}
    code = live_code_publish(live_code=make_code(caps=tuple(caps.values()), strategy=strategy))
    config = landing_config(code.slug)
    start = threading.Barrier(64)

    def visit(index: int):
        try:
            start.wait()
            return landing_visit(config=config, params={}, user_agent=f"{PHONE} device/{index}",
                                 referrer_url="", ip="10.0.0.1").staff  # fmt: skip
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=64) as pool:
        assigned = Counter(pool.map(visit, range(64)))
    landing_scans_flush()
    assert assigned == {**caps, None: 64 - sum(caps.values())}
    scans = Counter(Scan.objects.values_list("staff", flat=True))
    assert scans == {**{s.pk: cap for s, cap in caps.items()}, None: 64 - sum(caps.values())}
    counters = dict(DailyCounter.objects.values_list("staff", "assigned"))
    assert counters == {s.pk: cap for s, cap in caps.items()}


@pytest.mark.django_db
def test_an_outage_never_lets_the_two_paths_together_exceed_a_cap(
    make_code, sandbox_corp, staff, redis_path, settings, caplog
):
    """Redis is granted capacity, fails (visits take the database), comes back: the database
    path takes only what Redis was not granted, and Redis spends what it was granted."""
    code = live_code_publish(live_code=make_code(caps=(30, 30, 0)))  # grants of 3
    url = settings.LANDING_REDIS_URL
    visits = iter(range(1000))

    def burst(count: int) -> None:
        for _ in range(count):
            _visit(code, f"10.0.{next(visits)}.1")

    burst(10)
    assert sum(DailyCounter.objects.values_list("assigned", flat=True)) > 10  # grants unspent
    settings.LANDING_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    burst(40)
    assert "Redis failed" in caplog.text
    settings.LANDING_REDIS_URL = url  # Redis is back, with what it held
    burst(40)
    scans = Counter(Scan.objects.exclude(staff=None).values_list("staff", flat=True))
    counters = dict(DailyCounter.objects.values_list("staff", "assigned"))
    for member in staff[:2]:
        assert scans[member.pk] <= counters[member.pk] <= 30
    # Redis came back with its grants and spent them: the caps were filled, not exceeded.
    assert (scans[staff[0].pk], scans[staff[1].pk]) == (30, 30)
    assert Scan.objects.filter(staff=None).count() == 90 - 60
