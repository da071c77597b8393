"""The channels API (/api/v1/): channels, costs, live codes, scans, referral codes,
attributions. Authenticated, filtered through FilterSets (bad values 400), no secrets, no N+1."""

from __future__ import annotations

import datetime as dt
import random
import re
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from channels_app.models import (
    Attribution,
    Channel,
    ChannelCost,
    LiveCode,
    ReferralCode,
    Scan,
    ScheduleRule,
)
from channels_app.services.publishing import live_code_publish
from contacts.models import Staff
from scrm import days
from scrm.wecom.models import ApiCall
from scrm.wecom.sandbox.models import SandboxContactWay, SandboxFault
from scrm.wecom.sandbox.simulate import random_aes_key, sandbox_customer_add
from scrm.wecom.services import corp_create
from tests.factories import ExternalContactFactory
from tests.tenancy import member

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) MicroMessenger/8.0.40"
QR_RE = re.compile(r"/wecom-sandbox/qr/([0-9a-f]+)\.png")
LISTS = ["channels", "channel-costs", "live-codes", "scans", "referral-codes", "attributions"]


@pytest.fixture
def user(django_user_model, corp):
    """An operator of the sandbox corp: may change channels, costs, codes and referral codes."""
    return member(django_user_model.objects.create_user(username="ops"), corp)


@pytest.fixture
def api(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def other_corp(db, user):
    """A second corp, where the operator works too (isolation: tests/test_access_matrix_api.py)."""
    other = corp_create(
        corp_id="wwother000000002",
        name="另一家企业",
        secret="other-secret-value-0123456789abcdef",
        callback_token="othertoken0123456789",
        encoding_aes_key=random_aes_key(),
    )
    member(user, other)
    return other


@pytest.fixture
def landing_add(make_code, sandbox_corp, client, post_event):
    """A published landing code, one scan through it that led to an add, one that did not."""
    code = live_code_publish(live_code=make_code(slug="poster-618"))
    response = client.get(f"/l/{code.slug}/", {"utm_campaign": "618"},
                          HTTP_USER_AGENT=PHONE, REMOTE_ADDR="10.0.0.1")  # fmt: skip
    way = SandboxContactWay.objects.get(config_id=QR_RE.search(response.content.decode())[1])
    customer, follow, _ = sandbox_customer_add(
        corp=sandbox_corp, userid=way.users[0], rng=random.Random(1), state=way.state
    )
    post_event("add_external_contact", follow.createtime, UserID=follow.userid,
               ExternalUserID=customer.external_userid, State=way.state)  # fmt: skip
    client.get(f"/l/{code.slug}/", HTTP_USER_AGENT="Mozilla/5.0 (Windows NT 10.0)",
               REMOTE_ADDR="10.0.0.2")  # fmt: skip
    return code, Scan.objects.get(attributions__isnull=False), Attribution.objects.get()


def _scan(code, at: dt.datetime | None = None, **fields) -> Scan:
    fields.setdefault("device", "mobile")
    scan = Scan.objects.create(
        corp=code.corp, live_code=code, ip_hash="f" * 32, device_key="d" * 32, **fields
    )
    if at is not None:
        Scan.objects.filter(pk=scan.pk).update(created_at=at)
    return scan


def _ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def _code_body(channel, **fields) -> dict:
    return {"corp": channel.corp.corp_id, "channel": channel.pk, "name": "618 海报",
            "slug": "poster", "mode": "native", **fields}  # fmt: skip


# -- authentication and secrets ----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        *(f"/api/v1/{path}/" for path in LISTS),
        "/api/v1/referral-codes/leaderboard/",
        "/api/v1/live-codes/1/qr.png",
    ],
)
def test_anonymous_is_refused(url, channel):
    response = APIClient().get(url)
    assert response.status_code in (401, 403)
    assert "results" not in response.json()


def test_anonymous_cannot_write(make_code):
    code = make_code()
    anonymous = APIClient()
    for url in ("/api/v1/channels/", "/api/v1/channel-costs/", "/api/v1/live-codes/",
                f"/api/v1/live-codes/{code.pk}/publish/", f"/api/v1/live-codes/{code.pk}/pause/",
                "/api/v1/referral-codes/"):  # fmt: skip
        assert anonymous.post(url, {}).status_code in (401, 403), url
    assert anonymous.delete(f"/api/v1/live-codes/{code.pk}/").status_code in (401, 403)
    assert LiveCode.objects.get().status == "draft"


def test_reading_needs_a_login_writing_needs_permissions(django_user_model, make_code, corp):
    code = make_code(mode="native")
    reader = APIClient()
    manager = django_user_model.objects.create_user(username="manager")
    reader.force_login(member(manager, corp, role="manager"))
    assert _ids(reader.get("/api/v1/live-codes/")) == [code.pk]
    assert reader.get(f"/api/v1/live-codes/{code.pk}/qr.png").status_code == 404  # unpublished
    assert reader.patch(f"/api/v1/live-codes/{code.pk}/", {"name": "x"}).status_code == 403
    assert reader.post(f"/api/v1/live-codes/{code.pk}/publish/").status_code == 403
    assert reader.post(f"/api/v1/live-codes/{code.pk}/pause/").status_code == 403
    assert reader.delete(f"/api/v1/channels/{code.channel_id}/").status_code == 403
    assert reader.post("/api/v1/channel-costs/", [], format="json").status_code == 403
    assert reader.post("/api/v1/referral-codes/", {}).status_code == 403
    assert LiveCode.objects.get().name == "618 海报"


def test_token_auth(user, channel):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    assert _ids(client.get("/api/v1/channels/")) == [channel.pk]
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert client.get("/api/v1/channels/").status_code in (401, 403)


def test_no_secret_of_a_corp_is_ever_served(api, corp, landing_add):
    code, _scan_row, attribution = landing_add
    ChannelCost.objects.create(corp=corp, channel=code.channel, start_date=dt.date(2026, 11, 1),
                               end_date=dt.date(2026, 11, 30), amount=Decimal(1000))  # fmt: skip
    api.post("/api/v1/referral-codes/", {"live_code": code.pk,
             "referrer": attribution.external_contact.external_userid})  # fmt: skip
    pages = [api.get(f"/api/v1/{path}/") for path in LISTS]
    pages.append(api.get(f"/api/v1/live-codes/{code.pk}/"))
    for page in pages:
        assert page.status_code == 200
        data = page.json()
        assert data.get("results", data)  # every list has a row that could leak
        body = page.content.decode()
        for secret in (corp.secret, corp.callback_token, corp.encoding_aes_key):
            assert secret not in body
        assert "ip_hash" not in body
        assert "device_key" not in body


# -- channels ----------------------------------------------------------------------------------


def test_create_channel_by_corp_id(api, corp):
    response = api.post("/api/v1/channels/", {"corp": corp.corp_id, "name": "小红书 618",
                        "code": "xhs_618", "channel_type": 2, "utm_source": "xhs"})  # fmt: skip
    assert response.status_code == 201, response.content
    row = response.json()
    assert (row["corp"], row["code"], row["is_active"]) == (corp.corp_id, "xhs_618", True)
    assert (row["scans_today"], row["adds_today"], row["live_code_count"]) == (0, 0, 0)
    assert Channel.objects.get(code="xhs_618").corp == corp


def test_channel_create_errors(api, corp, channel, other_corp):
    body = {"corp": corp.corp_id, "name": "重复", "code": channel.code}
    response = api.post("/api/v1/channels/", body)
    assert response.status_code == 400
    assert "该企业已有使用此代码的渠道" in str(response.json())
    assert api.post("/api/v1/channels/", {**body, "corp": other_corp.corp_id}).status_code == 201
    response = api.post("/api/v1/channels/", {**body, "corp": "wwnobody", "code": "dy_1"})
    assert (response.status_code, list(response.json())) == (400, ["corp"])
    response = api.post("/api/v1/channels/", {**body, "code": "Bad Code"})
    assert (response.status_code, list(response.json())) == (400, ["code"])


def test_duplicate_code_created_concurrently_is_400_not_500(api, corp, channel, monkeypatch):
    from rest_framework.validators import UniqueTogetherValidator

    # As if another request created the same code between validation and INSERT.
    monkeypatch.setattr(UniqueTogetherValidator, "__call__", lambda *args: None)
    body = {"corp": corp.corp_id, "name": "重复", "code": channel.code}
    response = api.post("/api/v1/channels/", body)
    assert (response.status_code, list(response.json())) == (400, ["code"])
    assert Channel.objects.count() == 1


def test_channel_update_keeps_its_corp(api, channel, other_corp):
    url = f"/api/v1/channels/{channel.pk}/"
    response = api.patch(url, {"name": "朋友圈 11 月", "is_active": False})
    assert response.status_code == 200
    assert (response.json()["name"], response.json()["is_active"]) == ("朋友圈 11 月", False)
    response = api.patch(url, {"corp": other_corp.corp_id})
    assert (response.status_code, list(response.json())) == (400, ["corp"])
    response = api.patch(url, {"code": "pyq_0013"})
    assert response.json()["code"] == "pyq_0013"


def test_delete_channel_with_live_codes_is_refused(api, channel, make_code):
    make_code(slug="poster-1")
    response = api.delete(f"/api/v1/channels/{channel.pk}/")
    assert response.status_code == 400
    assert response.json()["live_codes"] == ["poster-1"]
    assert "detail" in response.json()
    assert Channel.objects.filter(pk=channel.pk).exists()
    empty = Channel.objects.create(corp=channel.corp, name="空渠道", code="empty")
    assert api.delete(f"/api/v1/channels/{empty.pk}/").status_code == 204


def test_channel_filters(api, corp, channel, other_corp):
    store = Channel.objects.create(corp=corp, name="南京路门店", code="store_nj", channel_type=1,
                                   category="门店", is_active=False)  # fmt: skip
    far = Channel.objects.create(corp=other_corp, name="抖音", code="dy_07", channel_type=2)
    url = "/api/v1/channels/"
    assert set(_ids(api.get(url, {"corp": corp.corp_id}))) == {channel.pk, store.pk}
    assert set(_ids(api.get(url, {"channel_type": 2}))) == {channel.pk, far.pk}
    assert _ids(api.get(url, {"category": "门店"})) == [store.pk]
    assert _ids(api.get(url, {"is_active": "false"})) == [store.pk]
    assert _ids(api.get(url, {"code": "dy_07"})) == [far.pk]
    assert _ids(api.get(url, {"search": "南京"})) == [store.pk]
    assert _ids(api.get(url, {"search": "PYQ_"})) == [channel.pk]
    for bad in ({"channel_type": 9}, {"channel_type": "x"}, {"is_active": "maybe"}):
        assert api.get(url, bad).status_code == 400, bad


def test_channel_list_has_today_figures_in_constant_queries(
    api, corp, channel, make_code, django_assert_max_num_queries
):
    code = make_code()
    _scan(code)
    _scan(code, at=dt.datetime.now(SHANGHAI) - dt.timedelta(days=2))
    (row,) = api.get("/api/v1/channels/").json()["results"]
    assert (row["scans_today"], row["adds_today"], row["live_code_count"]) == (1, 0, 1)
    for index in range(20):
        Channel.objects.create(corp=corp, name=f"渠道{index}", code=f"c_{index}")
    with django_assert_max_num_queries(5):  # session, user, memberships, count, page
        assert len(api.get("/api/v1/channels/").json()["results"]) == 21


# -- channel costs -----------------------------------------------------------------------------


def _cost(channel, start="2026-11-01", end="2026-11-30", amount="1000.00", **fields) -> dict:
    return {"corp": channel.corp.corp_id, "channel": channel.code, "start_date": start,
            "end_date": end, "amount": amount, **fields}  # fmt: skip


def test_create_one_cost_and_filter_by_overlap(api, channel, other_corp):
    response = api.post("/api/v1/channel-costs/", _cost(channel), format="json")
    assert response.status_code == 201, response.content
    assert (response.json()["channel"], response.json()["amount"]) == ("pyq_0012", "1000.00")
    october = api.post("/api/v1/channel-costs/", _cost(channel, "2026-10-01", "2026-10-31"),
                       format="json").json()["id"]  # fmt: skip
    november = response.json()["id"]
    url = "/api/v1/channel-costs/"
    assert _ids(api.get(url, {"from": "2026-10-31", "to": "2026-11-01"})) == [november, october]
    assert _ids(api.get(url, {"from": "2026-11-15"})) == [november]
    assert _ids(api.get(url, {"to": "2026-10-15"})) == [october]
    assert _ids(api.get(url, {"channel": "pyq_0012", "corp": channel.corp.corp_id})) == [
        november, october,
    ]  # fmt: skip
    assert _ids(api.get(url, {"corp": other_corp.corp_id})) == []
    assert api.get(url, {"from": "2026-11-31"}).status_code == 400


def test_bulk_costs_are_written_together(api, corp, channel):
    Channel.objects.create(corp=corp, name="小红书", code="xhs_618")
    rows = [
        _cost(channel),
        _cost(channel, "2026-12-01", "2026-12-31"),
        {**_cost(channel), "channel": "xhs_618", "amount": "88.5", "currency": "cny"},
    ]
    response = api.post("/api/v1/channel-costs/", rows, format="json")
    assert response.status_code == 201, response.content
    assert [row["channel"] for row in response.json()] == ["pyq_0012", "pyq_0012", "xhs_618"]
    assert [row["currency"] for row in response.json()] == ["CNY", "CNY", "CNY"]
    assert ChannelCost.objects.count() == 3


def test_bulk_costs_report_errors_per_row_and_write_nothing(api, channel):
    rows = [
        _cost(channel),
        _cost(channel, start="2026-11-30", end="2026-11-01"),
        {**_cost(channel), "channel": "nope"},
        "not a row",
        {**_cost(channel), "amount": "-1", "currency": "yuan"},
    ]
    response = api.post("/api/v1/channel-costs/", rows, format="json")
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert [(e["row"], e["field"]) for e in errors] == [
        (1, "end_date"), (2, "channel"), (3, "non_field_errors"), (4, "amount"), (4, "currency"),
    ]  # fmt: skip
    assert "nope" in errors[1]["message"]
    assert ChannelCost.objects.count() == 0


def test_bulk_cost_batch_limits(api, channel, django_assert_max_num_queries):
    response = api.post("/api/v1/channel-costs/", [], format="json")
    assert response.status_code == 400
    ((row, field),) = [(e["row"], e["field"]) for e in response.json()["errors"]]
    assert (row, field) == (None, "non_field_errors")
    too_many = [_cost(channel)] * 1001
    assert api.post("/api/v1/channel-costs/", too_many, format="json").status_code == 400
    with django_assert_max_num_queries(20):  # one lookup of channels and corps, batched INSERTs
        response = api.post("/api/v1/channel-costs/", too_many[:1000], format="json")
    assert response.status_code == 201
    assert ChannelCost.objects.count() == 1000


def test_cost_update_validates_the_range(api, channel):
    november = {"start_date": dt.date(2026, 11, 1), "end_date": dt.date(2026, 11, 30)}
    cost = ChannelCost.objects.create(corp=channel.corp, channel=channel, amount=1, **november)
    url = f"/api/v1/channel-costs/{cost.pk}/"
    response = api.patch(url, {"end_date": "2026-10-01"}, format="json")
    assert (response.status_code, list(response.json())) == (400, ["end_date"])
    assert api.patch(url, {"amount": "20.00"}, format="json").json()["amount"] == "20.00"


# -- live codes --------------------------------------------------------------------------------


def test_create_live_code_with_pool(api, channel, staff):
    pool = [{"staff": "staff01", "weight": 3, "daily_cap": 50},
            {"staff": "staff02", "is_backup": True}]  # fmt: skip
    response = api.post("/api/v1/live-codes/", _code_body(channel, pool=pool), format="json")
    assert response.status_code == 201, response.content
    row = response.json()
    assert row["status"] == "draft"
    assert row["landing_url"] == "http://testserver/l/poster/"
    assert [(m["staff"], m["weight"], m["daily_cap"], m["is_backup"]) for m in row["pool"]] == [
        ("staff01", 3, 50, False), ("staff02", 1, None, True),
    ]  # fmt: skip
    assert (row["config_id"], row["qr_code"]) == ("", "")
    # The backup has no cap, so neither has the code.
    assert (row["cap_today"], row["scans_today"]) == (None, 0)


def test_read_only_fields_are_ignored_on_write(api, channel):
    body = _code_body(channel, config_id="forged", qr_code="https://evil.example/qr.png",
                      status="active", state="scN1xx")  # fmt: skip
    row = api.post("/api/v1/live-codes/", body, format="json").json()
    assert (row["config_id"], row["qr_code"], row["status"], row["state"]) == ("", "", "draft", "")


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"pool": [{"staff": "staff01"}, {"staff": "ghost"}]}, "pool", "ghost"),
        ({"pool": [{"staff": "staff01"}, {"staff": "staff01"}]}, "pool", "staff01"),
        ({"pool": [{"staff": "staff01", "weight": 0}]}, "pool", ""),
        ({"welcome_attachments": [{"msgtype": "image"}] * 10}, "welcome_attachments", "9"),
        ({"slug": "two words"}, "slug", ""),
        ({"auto_accept_from": "09:00"}, "non_field_errors", ""),
        ({"mode": "hybrid"}, "mode", ""),
    ],
)
def test_live_code_validation(api, channel, staff, change, field, words):
    response = api.post("/api/v1/live-codes/", _code_body(channel, **change), format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert words in str(response.json()[field])
    assert LiveCode.objects.count() == 0


def test_channel_of_another_corp_is_refused(api, channel, other_corp):
    foreign = Channel.objects.create(corp=other_corp, name="抖音", code="dy_07")
    body = {**_code_body(channel), "channel": foreign.pk}
    response = api.post("/api/v1/live-codes/", body, format="json")
    assert (response.status_code, list(response.json())) == (400, ["channel"])
    assert api.post("/api/v1/live-codes/", {**body, "channel": 10**30}).status_code == 400


def test_editing_an_active_code_keeps_its_printed_qr_and_resyncs_its_pool(
    api, make_code, sandbox_corp, staff, django_capture_on_commit_callbacks
):
    code = make_code(mode="native", slug="counter")
    shift = ScheduleRule.objects.create(live_code=code, start_time=dt.time(0), end_time=dt.time(0))
    shift.members.set(code.pool.all())
    published = api.post(f"/api/v1/live-codes/{code.pk}/publish/").json()
    assert published["status"] == "active"
    assert published["config_id"]
    kept = code.pool.get(staff=staff[0]).pk
    pool = [{"staff": "staff01", "weight": 5}, {"staff": "staff02", "is_enabled": False}]
    with django_capture_on_commit_callbacks(execute=True):
        response = api.patch(f"/api/v1/live-codes/{code.pk}/",
                             {"name": "改名的海报", "pool": pool}, format="json")  # fmt: skip
    assert response.status_code == 200, response.content
    row = response.json()
    assert (row["config_id"], row["qr_code"]) == (published["config_id"], published["qr_code"])
    assert (row["name"], row["status"]) == ("改名的海报", "active")
    assert [(m["staff"], m["weight"], m["is_enabled"]) for m in row["pool"]] == [
        ("staff01", 5, True), ("staff02", 1, False),
    ]  # fmt: skip
    assert row["schedules"][0]["members"] == ["staff01", "staff02"]
    assert code.pool.get(staff=staff[0]).pk == kept  # its shifts hang on the same row
    # Saved, not republished (the remark is the old name), but the pool change re-synced
    # WeCom's user list once: staff02 is disabled and staff03 left the pool.
    way = SandboxContactWay.objects.get()
    assert (way.remark, way.users) == ("618 海报", ["staff01"])
    assert ApiCall.objects.filter(endpoint="externalcontact/update_contact_way").count() == 1
    assert LiveCode.objects.get(pk=code.pk).published_users == ["staff01"]
    assert api.patch(f"/api/v1/live-codes/{code.pk}/", {"mode": "landing"}).status_code == 400
    republished = api.post(f"/api/v1/live-codes/{code.pk}/publish/").json()
    assert republished["config_id"] == published["config_id"]
    way.refresh_from_db()
    assert (way.remark, way.users) == ("改名的海报", ["staff01"])


def test_publish_failures_are_400_with_errcode(api, make_code, sandbox_corp, staff):
    code = make_code(mode="native")
    SandboxFault.objects.create(endpoint="externalcontact/add_contact_way", errcode=41054)
    response = api.post(f"/api/v1/live-codes/{code.pk}/publish/")
    assert response.status_code == 400
    assert response.json()["errcode"] == 41054
    assert "41054" in response.json()["detail"]
    Staff.objects.filter(pk=staff[1].pk).update(status=Staff.Status.LEFT)
    response = api.post(f"/api/v1/live-codes/{code.pk}/publish/")
    assert (response.status_code, response.json()["errcode"]) == (400, None)
    assert "staff02" in response.json()["detail"]
    code.refresh_from_db()
    assert (code.status, code.config_id) == ("draft", "")
    SandboxFault.objects.create(endpoint="externalcontact/get_follow_user_list", errcode=48002)
    response = api.post(f"/api/v1/live-codes/{code.pk}/publish/")
    assert (response.status_code, response.json()["errcode"]) == (502, 48002)


def test_pause_stops_the_landing_page(api, make_code, sandbox_corp, client):
    code = make_code(slug="poster-1")
    assert api.post(f"/api/v1/live-codes/{code.pk}/pause/").status_code == 400  # a draft
    assert api.post(f"/api/v1/live-codes/{code.pk}/publish/").json()["status"] == "active"
    assert api.post(f"/api/v1/live-codes/{code.pk}/pause/").json()["status"] == "paused"
    assert client.get("/l/poster-1/").status_code == 410
    assert api.post(f"/api/v1/live-codes/{code.pk}/publish/").json()["status"] == "active"


def test_qr_png(api, make_code, sandbox_corp, monkeypatch):
    landing = make_code(slug="poster-1")
    draft = api.get(f"/api/v1/live-codes/{landing.pk}/qr.png")
    assert draft.status_code == 404  # a draft's QR would be printed before the code works
    assert "detail" in draft.json()
    landing = live_code_publish(live_code=landing)
    response = api.get(f"/api/v1/live-codes/{landing.pk}/qr.png")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response.content.startswith(b"\x89PNG\r\n\x1a\n")
    encoded = []
    monkeypatch.setattr("channels_app.qr.qr_png", lambda content: encoded.append(content) or b"")
    api.get(f"/api/v1/live-codes/{landing.pk}/qr.png", HTTP_HOST="localhost:8000")
    assert encoded == ["http://localhost:8000/l/poster-1/"]
    monkeypatch.undo()
    png_only = api.get(f"/api/v1/live-codes/{landing.pk}/qr.png", HTTP_ACCEPT="image/png")
    assert png_only.status_code == 200
    native = make_code(mode="native", slug="counter")
    response = api.get(f"/api/v1/live-codes/{native.pk}/qr.png")
    assert response.status_code == 404
    assert "detail" in response.json()
    live_code_publish(live_code=native)
    native.refresh_from_db()
    response = api.get(f"/api/v1/live-codes/{native.pk}/qr.png")
    assert (response.status_code, response["Location"]) == (302, native.qr_code)
    assert api.get("/api/v1/live-codes/999999/qr.png").status_code == 404


def test_delete_draft_but_not_published_codes(api, make_code, sandbox_corp):
    draft, published = make_code(slug="d"), live_code_publish(live_code=make_code(slug="p"))
    assert api.delete(f"/api/v1/live-codes/{draft.pk}/").status_code == 204
    response = api.delete(f"/api/v1/live-codes/{published.pk}/")
    assert (response.status_code, list(response.json())) == (400, ["detail"])
    assert LiveCode.objects.filter(pk=published.pk).exists()


def test_live_code_filters(api, corp, channel, make_code, other_corp):
    xhs = Channel.objects.create(corp=corp, name="小红书", code="xhs_618")
    native = make_code(mode="native", slug="counter", name="收银台", strategy="weighted")
    landing = make_code(slug="poster", status=LiveCode.Status.PAUSED)
    LiveCode.objects.filter(pk=native.pk).update(state="scN1ab")
    LiveCode.objects.filter(pk=landing.pk).update(channel=xhs)
    url = "/api/v1/live-codes/"
    assert set(_ids(api.get(url, {"corp": corp.corp_id}))) == {native.pk, landing.pk}
    assert _ids(api.get(url, {"corp": other_corp.corp_id})) == []
    assert _ids(api.get(url, {"channel": "xhs_618"})) == [landing.pk]
    assert _ids(api.get(url, {"mode": "native"})) == [native.pk]
    assert _ids(api.get(url, {"status": "paused"})) == [landing.pk]
    assert _ids(api.get(url, {"strategy": "weighted"})) == [native.pk]
    assert _ids(api.get(url, {"search": "收银"})) == [native.pk]
    assert _ids(api.get(url, {"search": "POSTER"})) == [landing.pk]
    assert _ids(api.get(url, {"search": "scn1a"})) == [native.pk]
    for bad in ({"mode": "x"}, {"status": "gone"}, {"strategy": "random"}):
        assert api.get(url, bad).status_code == 400, bad
    assert api.get(f"{url}abc/").status_code == 404
    assert api.get(f"{url}{'9' * 30}/").status_code == 404


def test_live_code_list_in_constant_queries(api, make_code, staff, django_assert_max_num_queries):
    for index in range(12):
        code = make_code(slug=f"code-{index}", caps=(10, 20))
        shift = ScheduleRule.objects.create(live_code=code, start_time=dt.time(9),
                                            end_time=dt.time(18))  # fmt: skip
        shift.members.set(code.pool.all())
        _scan(code)
    days.zones_in_use()  # the corps' time zones: read once per process, not per request
    # session, user, memberships, count, page, pool with staff, shifts, shift members with staff
    with django_assert_max_num_queries(8):
        rows = api.get("/api/v1/live-codes/").json()["results"]
    assert len(rows) == 12
    # staff03 has no cap: the code as a whole has none (None, not 30).
    assert {(r["scans_today"], r["cap_today"], len(r["pool"])) for r in rows} == {(1, None, 3)}


# -- scans -------------------------------------------------------------------------------------


def test_scans_list_and_filter(api, landing_add, make_code, channel, corp):
    code, added, _attribution = landing_add
    other = make_code(mode="landing", slug="123")  # an all-digit slug
    xhs = _scan(other, utm_source="xhs", device="desktop")
    url = "/api/v1/scans/"
    rows = api.get(url).json()["results"]
    assert len(rows) == 3
    assert {"ip_hash", "device_key"}.isdisjoint(rows[0])
    by_id = {row["id"]: row for row in rows}
    assert by_id[added.pk]["has_add"] is True
    assert (by_id[added.pk]["utm_campaign"], by_id[added.pk]["live_code_slug"]) == (
        "618", "poster-618",
    )  # fmt: skip
    lonely = next(pk for pk in by_id if pk not in (added.pk, xhs.pk))
    assert _ids(api.get(url, {"has_add": "true"})) == [added.pk]
    assert set(_ids(api.get(url, {"has_add": "false"}))) == {lonely, xhs.pk}
    assert set(_ids(api.get(url, {"live_code": code.pk}))) == {added.pk, lonely}
    assert set(_ids(api.get(url, {"live_code": "poster-618"}))) == {added.pk, lonely}
    assert _ids(api.get(url, {"live_code": "123"})) == [xhs.pk]
    assert set(_ids(api.get(url, {"channel": channel.code}))) == {added.pk, lonely, xhs.pk}
    assert set(_ids(api.get(url, {"device": "desktop"}))) == {lonely, xhs.pk}
    assert _ids(api.get(url, {"utm_source": "xhs"})) == [xhs.pk]  # the channel's pyq elsewhere
    assert _ids(api.get(url, {"utm_campaign": "618"})) == [added.pk]
    assert _ids(api.get(url, {"live_code": "9" * 40})) == []


def test_scan_dates_are_local_days(api, make_code):
    code = make_code()
    late = _scan(code, at=dt.datetime(2026, 11, 23, 23, 30, tzinfo=SHANGHAI))  # 15:30 UTC
    after_midnight = _scan(code, at=dt.datetime(2026, 11, 24, 0, 30, tzinfo=SHANGHAI))
    url = "/api/v1/scans/"
    assert _ids(api.get(url, {"from": "2026-11-23", "to": "2026-11-23"})) == [late.pk]
    assert _ids(api.get(url, {"from": "2026-11-24"})) == [after_midnight.pk]
    assert _ids(api.get(url, {"to": "2026-11-22"})) == []
    assert len(_ids(api.get(url, {"from": "0001-01-01", "to": "9999-12-31"}))) == 2


@pytest.mark.parametrize(
    "bad", [{"device": "fridge"}, {"has_add": "maybe"}, {"from": "2026-13-01"}, {"to": "x"}]
)
def test_bad_scan_filters_are_400(api, bad):
    assert api.get("/api/v1/scans/", bad).status_code == 400


def test_scan_list_in_constant_queries(api, make_code, django_assert_max_num_queries):
    for index in range(3):
        code = make_code(slug=f"code-{index}")
        for _ in range(5):
            _scan(code, staff=code.pool.first().staff)
    with django_assert_max_num_queries(5):  # session, user, memberships, count, page
        assert len(api.get("/api/v1/scans/").json()["results"]) == 15


# -- attributions ------------------------------------------------------------------------------


def test_attributions_list_and_filter(api, landing_add, sandbox_corp, post_event):
    code, scan, attribution = landing_add
    customer, follow, _ = sandbox_customer_add(
        corp=sandbox_corp, userid="staff02", rng=random.Random(7), state="other_tool_42"
    )
    post_event("add_external_contact", follow.createtime, UserID="staff02",
               ExternalUserID=customer.external_userid, State="other_tool_42")  # fmt: skip
    foreign = Attribution.objects.get(state="other_tool_42")
    url = "/api/v1/attributions/"
    rows = {row["id"]: row for row in api.get(url).json()["results"]}
    row = rows[attribution.pk]
    assert (row["customer"], row["staff"]) == (
        attribution.external_contact.external_userid, attribution.staff.userid,
    )  # fmt: skip
    assert (row["live_code"], row["channel"], row["scan"], row["state_kind"]) == (
        code.pk, "pyq_0012", scan.pk, "landing",
    )  # fmt: skip
    assert (row["is_first_touch"], row["referrer"]) == (True, None)
    assert (rows[foreign.pk]["live_code"], rows[foreign.pk]["channel"]) == (None, None)
    assert _ids(api.get(url, {"state_kind": "foreign"})) == [foreign.pk]
    assert _ids(api.get(url, {"channel": "pyq_0012"})) == [attribution.pk]
    assert _ids(api.get(url, {"live_code": "poster-618"})) == [attribution.pk]
    assert _ids(api.get(url, {"live_code": code.pk})) == [attribution.pk]
    assert len(_ids(api.get(url, {"is_first_touch": "true"}))) == 2
    today = dt.datetime.now(SHANGHAI).date()
    assert len(_ids(api.get(url, {"from": today.isoformat(), "to": today.isoformat()}))) == 2
    assert _ids(api.get(url, {"to": (today - dt.timedelta(days=1)).isoformat()})) == []
    for bad in ({"state_kind": "alien"}, {"is_first_touch": "yes please"}, {"from": "23/11"}):
        assert api.get(url, bad).status_code == 400, bad


# -- referral codes ----------------------------------------------------------------------------


def test_referral_code_for_a_landing_code(api, landing_add, client, post_event, sandbox_corp):
    code, _scan_row, attribution = landing_add
    referrer = attribution.external_contact
    body = {"live_code": code.pk, "referrer": referrer.external_userid}
    response = api.post("/api/v1/referral-codes/", body)
    assert response.status_code == 201, response.content
    row = response.json()
    assert row["link"] == f"http://testserver/l/poster-618/?r={row['token']}"
    assert (row["qr_code"], row["referrer"]) == ("", referrer.external_userid)
    assert api.post("/api/v1/referral-codes/", body).json()["token"] == row["token"]
    assert ReferralCode.objects.count() == 1
    assert _ids(api.get("/api/v1/referral-codes/", {"live_code": "poster-618"})) == [row["id"]]
    assert _ids(api.get("/api/v1/referral-codes/", {"referrer": "nobody"})) == []

    response = client.get(row["link"], HTTP_USER_AGENT=PHONE, REMOTE_ADDR="10.0.0.5")
    way = SandboxContactWay.objects.get(config_id=QR_RE.search(response.content.decode())[1])
    customer, follow, _ = sandbox_customer_add(
        corp=sandbox_corp, userid=way.users[0], rng=random.Random(9), state=way.state
    )
    post_event("add_external_contact", follow.createtime, UserID=follow.userid,
               ExternalUserID=customer.external_userid, State=way.state)  # fmt: skip
    url = "/api/v1/referral-codes/leaderboard/"
    board = api.get(url, {"corp": code.corp.corp_id, "since": "2026-01-01"})
    assert board.json()["results"] == [
        {"referrer": referrer.external_userid, "name": referrer.name, "new_customers": 1}
    ]
    corp_id = code.corp.corp_id
    assert api.get(url, {"corp": corp_id, "since": "9999-12-31"}).json()["results"] == []
    assert len(api.get(url, {"corp": corp_id, "since": "0001-01-01"}).json()["results"]) == 1
    for bad in ({}, {"corp": "wwnobody"}, {"corp": code.corp.corp_id, "since": "tomorrow"}):
        assert api.get(url, bad).status_code == 400, bad


def test_referral_code_for_a_native_code_has_its_own_qr(api, make_code, sandbox_corp):
    code = live_code_publish(live_code=make_code(mode="native"))
    referrer = ExternalContactFactory(corp=code.corp)
    body = {"live_code": code.pk, "referrer": referrer.external_userid}
    SandboxFault.objects.create(endpoint="externalcontact/add_contact_way", errcode=41045)
    response = api.post("/api/v1/referral-codes/", body)
    assert (response.status_code, response.json()["errcode"]) == (400, 41045)
    row = api.post("/api/v1/referral-codes/", body).json()
    assert row["qr_code"] == SandboxContactWay.objects.get(state__startswith="scR").qr_code


def test_referral_code_errors(api, make_code, other_corp):
    code = make_code()
    stranger = ExternalContactFactory(corp=other_corp)
    response = api.post("/api/v1/referral-codes/",
                        {"live_code": code.pk, "referrer": stranger.external_userid})  # fmt: skip
    assert response.status_code == 400
    assert stranger.external_userid in str(response.json()["referrer"])
    response = api.post("/api/v1/referral-codes/", {"live_code": 999999, "referrer": "x"})
    assert (response.status_code, list(response.json())) == (400, ["live_code"])
