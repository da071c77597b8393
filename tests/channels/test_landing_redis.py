"""The landing page's Redis store, what only it has: what it buffers reaches the database
exactly once, capacity comes from DailyCounter in grants, and a Redis failure falls back to
the database. (What both stores share is in test_landing_store_contract.py.)"""

from __future__ import annotations

import random
import re

import pytest

from channels_app import landing_redis
from channels_app.models import Attribution, DailyCounter, LiveCode, PoolMember, Scan
from channels_app.services import landing_scans
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
    monkeypatch.setattr(landing_redis, "_flush_soon", lambda: None)


def test_a_batch_written_twice_adds_nothing(make_code, sandbox_corp, client, redis_path,
                                            buffered):  # fmt: skip
    code = live_code_publish(live_code=make_code())
    for index in range(5):
        _visit(client, code, ip=f"10.0.0.{index}")
    entries = redis_path.pending_scans(100)
    assert len(entries) == 5
    landing_scans._scans_write(entries)
    landing_scans._scans_write(entries)  # a second flush, or a retried one
    assert Scan.objects.count() == 5
    # Each scan keeps its visit's time, not the one time of the flush that wrote them all.
    assert len(set(Scan.objects.values_list("created_at", flat=True))) == 5


def test_the_flush_writes_scans_and_leaves_the_counters_alone(make_code, sandbox_corp, client,
                                                              redis_path, buffered):  # fmt: skip
    code = live_code_publish(live_code=make_code(caps=(50, 50, 50)))  # grants of 5
    for index in range(4):
        _visit(client, code, ip=f"10.0.0.{index}")
    taken = dict(DailyCounter.objects.values_list("staff__userid", "assigned"))
    assert landing_scans.landing_scans_flush() == 4
    assert dict(DailyCounter.objects.values_list("staff__userid", "assigned")) == taken
    # DailyCounter.assigned is capacity taken (grants), never less than the scans it covers.
    scans = {userid: Scan.objects.filter(staff__userid=userid).count() for userid in taken}
    assert all(scans[userid] <= taken[userid] <= 50 for userid in taken)
    assert sum(scans.values()) == 4
    assert set(taken.values()) <= {0, landing_redis.grant_chunk(50)}


def test_a_scan_of_a_deleted_code_does_not_block_the_stream(make_code, sandbox_corp, client,
                                                            redis_path, buffered):  # fmt: skip
    gone = live_code_publish(live_code=make_code(slug="gone"))
    kept = live_code_publish(live_code=make_code(slug="kept"))
    _visit(client, gone, ip="10.0.0.1")
    _visit(client, kept, ip="10.0.0.2")
    LiveCode.objects.filter(pk=gone.pk).delete()
    landing_scans._scans_write(redis_path.pending_scans(100))
    assert list(Scan.objects.values_list("live_code__slug", flat=True)) == ["kept"]


def test_the_database_path_and_redis_take_from_one_cap(make_code, sandbox_corp, client, staff,
                                                       settings):  # fmt: skip
    from tests.conftest import landing_redis_enable

    code = live_code_publish(live_code=make_code(caps=(1, 1, 1)))
    settings.LANDING_REDIS_URL = ""
    _visit(client, code, ip="10.0.0.1")  # the database path (Redis away) takes one visitor
    landing_redis_enable(settings)
    statuses = [_visit(client, code, ip=f"10.0.1.{i}")[0].status_code for i in range(3)]
    assert statuses == [200, 200, 503]  # Redis could only be granted what was left
    assert dict(DailyCounter.objects.values_list("staff__userid", "assigned")) == {
        "staff01": 1, "staff02": 1, "staff03": 1,
    }  # fmt: skip


def test_a_raised_cap_is_granted_again_and_a_lowered_one_holds(make_code, sandbox_corp, client,
                                                               staff, redis_path):  # fmt: skip
    code = live_code_publish(live_code=make_code(caps=(30,)))  # grants of 3
    code.pool.exclude(staff=staff[0]).update(is_enabled=False)
    member = PoolMember.objects.get(live_code=code, staff=staff[0])
    assert _visit(client, code, ip="10.0.0.1")[0].status_code == 200  # 2 granted, unspent
    member.daily_cap = 2
    member.save()  # the database has given 3: the rest of the grant is dropped, not spent
    assert _visit(client, code, ip="10.0.0.2")[0].status_code == 503
    member.daily_cap = 5
    member.save()
    statuses = [_visit(client, code, ip=f"10.0.1.{i}")[0].status_code for i in range(4)]
    assert statuses == [200, 200, 503, 503]  # 5 - 3 granted before: two more
    assert Scan.objects.filter(staff=staff[0]).count() == 3
    assert DailyCounter.objects.get(staff=staff[0]).assigned == 5


def test_a_redis_failure_falls_back_to_the_database(make_code, sandbox_corp, client, settings,
                                                    caplog):  # fmt: skip
    code = live_code_publish(live_code=make_code())
    settings.LANDING_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    response, way = _visit(client, code)
    assert response.status_code == 200
    scan = Scan.objects.get()
    assert (scan.visit_id, scan.staff.userid) == (None, way.users[0])
    assert "Redis failed, visit recorded in the database" in caplog.text


def test_an_add_is_attributed_when_redis_cannot_be_read(
    make_code, sandbox_corp, client, post_event, redis_path, buffered, monkeypatch, caplog
):
    from redis.exceptions import RedisError

    code = live_code_publish(live_code=make_code())
    _, way = _visit(client, code)

    def redis_down(*args, **kwargs):
        raise RedisError("connection refused")

    monkeypatch.setattr(type(redis_path), "slot_scans", redis_down)
    customer, follow, _ = sandbox_customer_add(
        corp=sandbox_corp, userid=way.users[0], rng=random.Random(5), state=way.state
    )
    post_event("add_external_contact", follow.createtime, UserID=follow.userid,
               ExternalUserID=customer.external_userid, State=way.state)  # fmt: skip
    recorded = Attribution.objects.get()
    assert (recorded.live_code, recorded.channel, recorded.scan) == (code, code.channel, None)
    assert "not read from Redis" in caplog.text


def test_a_grant_that_lands_after_a_refusal_is_still_spent(make_code, sandbox_corp, staff,
                                                           redis_path):  # fmt: skip
    from channels_app.lock_objects import daily_counter_grant
    from channels_app.selectors import landing_config
    from channels_app.services.landing import landing_visit

    code = live_code_publish(live_code=make_code(caps=(2, None, 0), strategy="weighted"))

    def visit(ip: str):
        return landing_visit(config=landing_config(code.slug), params={}, user_agent=PHONE,
                             referrer_url="", ip=ip).staff  # fmt: skip

    assert visit("10.0.0.1") == staff[0]  # granted 1 of its cap of 2, and spent it
    day = Scan.objects.get().created_at.astimezone(code.corp.tzinfo).date()
    grants = redis_path.grants_key(code.pk, day)
    # Another process takes the last unit from the database; before its grant reaches Redis,
    # this one is refused and marks staff01 full; its next visit sees staff01 at its cap.
    key = {"corp_id": code.corp_id, "live_code_id": code.pk, "staff_id": staff[0].pk}
    assert daily_counter_grant(**key, day=day, cap=2, chunk=1) == 1
    redis_path._grant(keys=[grants], args=[staff[0].pk, 0, 2, 60])
    assert visit("10.0.0.2") == staff[1]
    redis_path._grant(keys=[grants], args=[staff[0].pk, 1, 2, 60])  # the other's grant lands
    assert staff[0] in [visit(f"10.0.1.{index}") for index in range(3)]
    assert Scan.objects.filter(staff=staff[0]).count() == 2
    assert DailyCounter.objects.get(staff=staff[0]).assigned == 2
