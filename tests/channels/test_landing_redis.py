"""The landing page's Redis path: what it buffers reaches the database exactly once, an add
joins a scan still in the buffer, the day's counts carry over between the two paths, and a
Redis failure falls back to the database."""

from __future__ import annotations

import random
import re

import pytest

from channels_app.models import Attribution, DailyCounter, LandingSlot, LiveCode, Scan
from channels_app.services import landing
from channels_app.services.publishing import live_code_publish
from scrm.wecom.sandbox.models import SandboxContactWay
from scrm.wecom.sandbox.simulate import sandbox_customer_add

pytestmark = pytest.mark.django_db

PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) MicroMessenger/8.0.40"
QR_RE = re.compile(r"/wecom-sandbox/qr/([0-9a-f]+)\.png")


def _visit(client, code, ip="10.0.0.1", **params):
    response = client.get(f"/l/{code.slug}/", params, HTTP_USER_AGENT=PHONE, REMOTE_ADDR=ip)
    match = QR_RE.search(response.content.decode())
    return response, (SandboxContactWay.objects.get(config_id=match.group(1)) if match else None)


@pytest.fixture
def buffered(monkeypatch):
    """Visits leave their scans in Redis (no flush queued), as between two flushes."""
    monkeypatch.setattr(landing, "_flush_soon", lambda: None)


def test_an_add_joins_a_scan_still_in_the_buffer(make_code, sandbox_corp, client, post_event,
                                                 redis_path, buffered):  # fmt: skip
    code = live_code_publish(live_code=make_code())
    response, way = _visit(client, code, utm_campaign="双11")
    assert response.status_code == 200
    assert not Scan.objects.exists()
    customer, follow, _ = sandbox_customer_add(
        corp=sandbox_corp, userid=way.users[0], rng=random.Random(4), state=way.state
    )
    post_event("add_external_contact", follow.createtime, UserID=follow.userid,
               ExternalUserID=customer.external_userid, State=way.state)  # fmt: skip
    scan = Scan.objects.get()
    assert (scan.utm_campaign, scan.staff.userid, scan.reused) == ("双11", way.users[0], False)
    assert scan.visit_id
    assert Attribution.objects.get().scan == scan
    counter = DailyCounter.objects.get(staff__userid=way.users[0])
    assert (counter.assigned, counter.added) == (1, 1)
    assert LandingSlot.objects.get(state=way.state).leased_until > scan.created_at


def test_a_batch_written_twice_adds_nothing(make_code, sandbox_corp, client, redis_path,
                                            buffered):  # fmt: skip
    code = live_code_publish(live_code=make_code())
    for index in range(5):
        _visit(client, code, ip=f"10.0.0.{index}")
    entries = redis_path.pending_scans(100)
    assert len(entries) == 5
    landing._scans_write(redis_path, entries)
    landing._scans_write(redis_path, entries)  # a second flush, or a retried one
    assert Scan.objects.count() == 5
    assert sum(DailyCounter.objects.values_list("assigned", flat=True)) == 5
    # Each scan keeps its visit's time, not the one time of the flush that wrote them all.
    assert len(set(Scan.objects.values_list("created_at", flat=True))) == 5


def test_a_scan_of_a_deleted_code_does_not_block_the_stream(make_code, sandbox_corp, client,
                                                            redis_path, buffered):  # fmt: skip
    gone = live_code_publish(live_code=make_code(slug="gone"))
    kept = live_code_publish(live_code=make_code(slug="kept"))
    _visit(client, gone, ip="10.0.0.1")
    _visit(client, kept, ip="10.0.0.2")
    LiveCode.objects.filter(pk=gone.pk).delete()
    landing._scans_write(redis_path, redis_path.pending_scans(100))
    assert list(Scan.objects.values_list("live_code__slug", flat=True)) == ["kept"]


def test_counts_of_the_database_path_carry_over_to_redis(make_code, sandbox_corp, client, staff,
                                                         settings):  # fmt: skip
    from tests.conftest import landing_redis_enable

    code = live_code_publish(live_code=make_code(caps=(1, 1, 1)))
    settings.LANDING_REDIS_URL = ""
    _visit(client, code, ip="10.0.0.1")  # the database path (Redis away) takes one visitor
    landing_redis_enable(settings)
    statuses = [_visit(client, code, ip=f"10.0.1.{i}")[0].status_code for i in range(3)]
    assert statuses == [200, 200, 503]  # the database's count was Redis's starting point
    assert dict(DailyCounter.objects.values_list("staff__userid", "assigned")) == {
        "staff01": 1, "staff02": 1, "staff03": 1,
    }  # fmt: skip


def test_a_redis_failure_falls_back_to_the_database(make_code, sandbox_corp, client, settings,
                                                    caplog):  # fmt: skip
    code = live_code_publish(live_code=make_code())
    settings.LANDING_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    response, way = _visit(client, code)
    assert response.status_code == 200
    scan = Scan.objects.get()
    assert (scan.visit_id, scan.staff.userid) == (None, way.users[0])
    assert "Redis failed, visit recorded in the database" in caplog.text


def test_a_returning_device_keeps_its_slot_until_another_visit_leases_it(
    make_code, sandbox_corp, client, staff, redis_path, monkeypatch
):
    monkeypatch.setattr(landing, "_top_up_queue", lambda *args: None)  # 3 slots, no more
    code = live_code_publish(live_code=make_code(caps=(None,)))
    code.pool.exclude(staff=staff[0]).update(is_enabled=False)  # one member
    _, first = _visit(client, code, ip="10.0.0.1")
    _, again = _visit(client, code, ip="10.0.0.1")
    assert again == first
    others = [_visit(client, code, ip=f"10.0.2.{index}")[1] for index in range(3)]
    assert others[2] == first  # the slot leased longest ago went to the third other visitor
    _, later = _visit(client, code, ip="10.0.0.1")  # so the device is a new visitor now
    assert later == others[0]
    reused = list(Scan.objects.order_by("created_at").values_list("reused", flat=True))
    assert reused == [False, True, False, False, False, False]
    assert DailyCounter.objects.get(staff=staff[0]).assigned == 5


def test_an_add_is_attributed_when_the_buffer_cannot_be_flushed(
    make_code, sandbox_corp, client, post_event, redis_path, buffered, monkeypatch, caplog
):
    from redis.exceptions import RedisError

    from channels_app.services import attribution

    code = live_code_publish(live_code=make_code())
    _, way = _visit(client, code)

    def redis_down():
        raise RedisError("connection refused")

    monkeypatch.setattr(attribution, "landing_scans_flush", redis_down)
    customer, follow, _ = sandbox_customer_add(
        corp=sandbox_corp, userid=way.users[0], rng=random.Random(5), state=way.state
    )
    post_event("add_external_contact", follow.createtime, UserID=follow.userid,
               ExternalUserID=customer.external_userid, State=way.state)  # fmt: skip
    recorded = Attribution.objects.get()
    assert (recorded.live_code, recorded.channel, recorded.scan) == (code, code.channel, None)
    assert "landing scans not flushed" in caplog.text
