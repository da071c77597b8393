"""Landing codes end to end in-process: scan -> staff's slot QR -> add -> exact attribution."""

import random
import re

import pytest

from channels_app.models import Attribution, DailyCounter, LandingSlot, LiveCode, Scan
from channels_app.services.publishing import SLOTS_PER_STAFF, live_code_publish
from contacts.models import FirstSource
from scrm.wecom.sandbox.models import SandboxContactWay
from scrm.wecom.sandbox.simulate import sandbox_customer_add

QR_RE = re.compile(r"/wecom-sandbox/qr/([0-9a-f]+)\.png")
# Every test here runs on both landing paths: the database and Redis (see conftest).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("landing_path")]

PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) MicroMessenger/8.0.40"


def _scan(client, code, **params):
    response = client.get(f"/l/{code.slug}/", params, HTTP_USER_AGENT=PHONE,
                          REMOTE_ADDR=params.pop("ip", "10.1.2.3"))  # fmt: skip
    match = QR_RE.search(response.content.decode())
    return response, (SandboxContactWay.objects.get(config_id=match.group(1)) if match else None)


def test_publish_landing_code_creates_slots_per_staff(make_code, sandbox_corp):
    code = live_code_publish(live_code=make_code())
    assert code.status == LiveCode.Status.ACTIVE
    assert LandingSlot.objects.filter(live_code=code).count() == 3 * SLOTS_PER_STAFF
    states = set(LandingSlot.objects.values_list("state", flat=True))
    assert states == set(SandboxContactWay.objects.values_list("state", flat=True))


def test_scan_then_add_joins_the_exact_scan(make_code, sandbox_corp, client, post_event):
    code = live_code_publish(live_code=make_code())
    response, way = _scan(client, code, utm_campaign="618", ip="10.0.0.1")
    assert response.status_code == 200
    scan = Scan.objects.get()
    assert (scan.utm_source, scan.utm_campaign, scan.device, scan.in_wechat) == (
        "pyq", "618", "mobile", True,
    )  # fmt: skip
    assert "10.0.0.1" not in scan.ip_hash
    assert len(scan.ip_hash) == 32
    customer, follow, _ = sandbox_customer_add(
        corp=sandbox_corp, userid=way.users[0], rng=random.Random(1), state=way.state
    )
    post_event("add_external_contact", follow.createtime, UserID=follow.userid,
               ExternalUserID=customer.external_userid, State=way.state)  # fmt: skip
    attribution = Attribution.objects.get()
    assert attribution.scan == scan
    assert (attribution.live_code, attribution.channel) == (code, code.channel)
    assert attribution.is_first_touch
    assert attribution.state_kind == "landing"
    first = FirstSource.objects.get()
    assert first.add_event_id == attribution.add_event_id  # the first source is this add
    # The add is counted; the assignment is the scan (uncapped members take no capacity
    # from DailyCounter on the Redis store, see channels_app.landing_store).
    assert DailyCounter.objects.get(staff__userid=way.users[0]).added == 1


def test_same_device_within_the_window_keeps_its_staff_and_slot(make_code, sandbox_corp, client):
    code = live_code_publish(live_code=make_code(strategy="round_robin"))
    _, first_way = _scan(client, code, ip="10.0.0.9")
    _, again_way = _scan(client, code, ip="10.0.0.9")
    _, other_way = _scan(client, code, ip="10.0.0.10")
    assert again_way == first_way
    assert other_way.users != first_way.users  # round robin moved on
    assert Scan.objects.filter(reused=True).count() == 1
    assert Scan.objects.filter(staff__isnull=False, reused=False).count() == 2


def test_caps_hold_and_backup_takes_over(make_code, sandbox_corp, client, staff):
    code = make_code(caps=(1, 1))  # staff01 and staff02 capped at 1; staff03 is backup
    code.pool.filter(staff=staff[2]).update(is_backup=True)
    live_code_publish(live_code=code)
    got = [_scan(client, code, ip=f"10.9.0.{i}")[1].users[0] for i in range(4)]
    assert sorted(got[:2]) == ["staff01", "staff02"]
    assert got[2:] == ["staff03", "staff03"]


def test_everyone_capped_without_backup_shows_busy_page(make_code, sandbox_corp, client, caplog):
    code = live_code_publish(live_code=make_code(caps=(1, 0, 0)))
    assert _scan(client, code, ip="10.1.1.1")[0].status_code == 200
    response, way = _scan(client, code, ip="10.1.1.2")
    assert response.status_code == 503
    assert way is None
    assert Scan.objects.filter(staff__isnull=True).count() == 1
    # A full campaign is a warning for operators, not an ERROR per visitor.
    busy = [r for r in caplog.records if "busy page" in r.getMessage()]
    assert [r.levelname for r in busy] == ["WARNING"]
    assert not [r for r in caplog.records if r.name == "django.request"]


def test_paused_and_unknown_codes(make_code, client):
    code = make_code(status=LiveCode.Status.PAUSED)
    assert client.get(f"/l/{code.slug}/").status_code == 410
    assert client.get("/l/nope/").status_code == 404
    assert Scan.objects.count() == 0


def test_today_figures_are_counted_in_the_database(make_code, sandbox_corp, client, post_event):
    from channels_app.selectors import channels_with_today, live_codes_with_today

    code = live_code_publish(live_code=make_code(caps=(5, 5, None)))
    _, way = _scan(client, code, ip="10.2.0.1")
    _scan(client, code, ip="10.2.0.2")
    customer, follow, _ = sandbox_customer_add(
        corp=sandbox_corp, userid=way.users[0], rng=random.Random(3), state=way.state
    )
    post_event("add_external_contact", follow.createtime, UserID=follow.userid,
               ExternalUserID=customer.external_userid, State=way.state)  # fmt: skip
    row = live_codes_with_today().get(pk=code.pk)
    assert (row.scans_today, row.adds_today, row.assigned_today, row.cap_today) == (2, 1, 2, None)
    channel = channels_with_today().get(pk=code.channel_id)
    assert (channel.scans_today, channel.adds_today, channel.live_code_count) == (2, 1, 1)


def test_referral_link_records_the_referrer(make_code, sandbox_corp, client, post_event):
    from channels_app.selectors import referrer_leaderboard
    from channels_app.services.referrals import referral_code_get_or_create
    from tests.factories import ExternalContactFactory

    code = live_code_publish(live_code=make_code())
    referrer = ExternalContactFactory(corp=code.corp, name="老客户")
    referral = referral_code_get_or_create(live_code=code, referrer=referrer)
    assert referral_code_get_or_create(live_code=code, referrer=referrer) == referral
    for seed in (1, 2):
        _, way = _scan(client, code, r=referral.token, ip=f"10.3.0.{seed}")
        customer, follow, _ = sandbox_customer_add(
            corp=sandbox_corp, userid=way.users[0], rng=random.Random(seed), state=way.state
        )
        post_event("add_external_contact", follow.createtime, UserID=follow.userid,
                   ExternalUserID=customer.external_userid, State=way.state)  # fmt: skip
    assert Attribution.objects.filter(referrer=referrer).count() == 2
    board = referrer_leaderboard(corp=code.corp)
    assert board[0]["referrer_id"] == referrer.pk
    assert board[0]["new_customers"] == 2


def test_native_referral_gets_its_own_contact_way(make_code, sandbox_corp, post_event):
    from channels_app.services.referrals import referral_code_get_or_create
    from tests.factories import ExternalContactFactory

    code = live_code_publish(live_code=make_code(mode="native"))
    referrer = ExternalContactFactory(corp=code.corp)
    referral = referral_code_get_or_create(live_code=code, referrer=referrer)
    way = SandboxContactWay.objects.get(config_id=referral.config_id)
    customer, follow, _ = sandbox_customer_add(
        corp=sandbox_corp, userid=way.users[0], rng=random.Random(5), state=way.state
    )
    post_event("add_external_contact", follow.createtime, UserID=follow.userid,
               ExternalUserID=customer.external_userid, State=way.state)  # fmt: skip
    attribution = Attribution.objects.get()
    assert (attribution.referrer, attribution.live_code, attribution.state_kind) == (
        referrer, code, "referral",
    )  # fmt: skip


def test_store_code_uses_the_store_pool_and_picker(make_code, sandbox_corp, client, staff):
    from channels_app.models import Store

    code = make_code()
    nanjing = Store.objects.create(live_code=code, code="nj01", name="南京路店", region="上海")
    nanjing.members.set(code.pool.filter(staff=staff[1]))
    xujiahui = Store.objects.create(live_code=code, code="xjh", name="徐家汇店", region="上海")
    xujiahui.members.set(code.pool.filter(staff=staff[2]))
    live_code_publish(live_code=code)
    picker = client.get(f"/l/{code.slug}/", {"utm_source": "poster"})
    assert "南京路店" in picker.content.decode()
    assert 'href="?utm_source=poster&amp;store=nj01"' in picker.content.decode()
    assert Scan.objects.count() == 0
    for index in range(3):
        _, way = _scan(client, code, store="nj01", ip=f"10.4.0.{index}")
        assert way.users == ["staff02"]
    assert client.get(f"/l/{code.slug}/", {"store": "nope"}).status_code == 404
    assert Scan.objects.filter(store=nanjing).count() == 3


def test_native_referral_link_shows_the_referrers_own_code(make_code, sandbox_corp, client):
    from channels_app.services.referrals import referral_code_get_or_create
    from tests.factories import ExternalContactFactory

    code = live_code_publish(live_code=make_code(mode="native"))
    referral = referral_code_get_or_create(
        live_code=code, referrer=ExternalContactFactory(corp=code.corp)
    )
    _, way = _scan(client, code, r=referral.token, ip="10.5.0.1")
    assert way.config_id == referral.config_id
    _, plain = _scan(client, code, ip="10.5.0.2")
    assert plain.config_id == code.config_id
