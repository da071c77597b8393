"""The channels admin: every page opens, actions call the services (publishing through the
sandbox), CSV pages show row errors, downloads are images and ZIPs, lists stay at fixed
query counts."""

from __future__ import annotations

import io
import random
import re
import zipfile

import pytest
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from channels_app.models import (
    Attribution,
    Channel,
    ChannelCost,
    DailyCounter,
    LiveCode,
    ReferralCode,
    Scan,
)
from channels_app.services.publishing import live_code_publish
from channels_app.services.referrals import referral_code_get_or_create
from scrm.wecom.models import ApiCall
from scrm.wecom.sandbox.models import SandboxContactWay, SandboxMember
from scrm.wecom.sandbox.simulate import sandbox_customer_add

pytestmark = pytest.mark.django_db

PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) MicroMessenger/8.0.40"
QR_RE = re.compile(r"/wecom-sandbox/qr/([0-9a-f]+)\.png")
CHANNEL_MODELS = [m for m in admin.site._registry if m._meta.app_label == "channels_app"]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _url(model: type, view: str, *args: object) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def _action(admin_client, action: str, codes: list, **extra: str):
    data = {"action": action, "_selected_action": [c.pk for c in codes], **extra}
    return admin_client.post(_url(LiveCode, "changelist"), data, follow=bool(extra))


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def activity(make_code, sandbox_corp, client, post_event):
    """A published landing code scanned and added through, with a referral and a cost."""
    from tests.factories import ExternalContactFactory

    code = live_code_publish(live_code=make_code())
    response = client.get(f"/l/{code.slug}/", HTTP_USER_AGENT=PHONE, REMOTE_ADDR="10.0.0.1")
    way = SandboxContactWay.objects.get(config_id=QR_RE.search(response.content.decode())[1])
    customer, follow, _ = sandbox_customer_add(
        corp=sandbox_corp, userid=way.users[0], rng=random.Random(1), state=way.state
    )
    post_event("add_external_contact", follow.createtime, UserID=follow.userid,
               ExternalUserID=customer.external_userid, State=way.state)  # fmt: skip
    referral_code_get_or_create(live_code=code, referrer=ExternalContactFactory(corp=code.corp))
    ChannelCost.objects.create(corp=code.corp, channel=code.channel, start_date="2025-06-01",
                               end_date="2025-06-30", amount="1000")  # fmt: skip
    from django.utils import timezone

    from channels_app.models import GroupJoinWay, GroupMemberJoin, SourceRule, WelcomeDelivery

    SourceRule.objects.create(corp=code.corp, name="名片分享", add_way=3, welcome_text="618 hi")
    attribution = Attribution.objects.get()
    WelcomeDelivery.objects.create(
        corp=code.corp, follow_relation=attribution.follow_relation,
        added_at=attribution.added_at, outcome=WelcomeDelivery.Outcome.SENT, source="rule",
    )  # fmt: skip
    join_way = GroupJoinWay.objects.create(corp=code.corp, channel=code.channel, name="618 群",
                                           chat_ids=["wr1"])  # fmt: skip
    GroupMemberJoin.objects.create(corp=code.corp, chat_id="wr1", member_id="wm618",
                                   join_way=join_way, joined_at=timezone.now())  # fmt: skip
    for model in (Scan, Attribution, DailyCounter):
        assert model.objects.exists()
    return code


# -- every page opens --------------------------------------------------------------------------


@pytest.mark.parametrize("model", CHANNEL_MODELS, ids=lambda m: m._meta.model_name)
def test_changelist_search_add_and_change_pages_open(admin_client, admin_user, rf, activity, model):
    assert admin_client.get(_url(model, "changelist")).status_code == 200
    assert admin_client.get(_url(model, "changelist"), {"q": "618"}).status_code == 200
    request = rf.get("/")
    request.user = admin_user
    expected_add = 200 if admin.site._registry[model].has_add_permission(request) else 403
    assert admin_client.get(_url(model, "add")).status_code == expected_add
    obj = model._default_manager.order_by("pk").first()
    assert admin_client.get(_url(model, "change", obj.pk)).status_code == 200


@pytest.mark.parametrize(
    "name",
    [
        "channels_app_livecode_import_csv",
        "channels_app_livecode_import_wecom",
        "channels_app_channel_import_costs",
        "channels_app_referralcode_leaderboard",
    ],
)
def test_custom_pages_open(admin_client, activity, name):
    response = admin_client.get(reverse(f"admin:{name}"))
    assert response.status_code == 200
    assert b"csrfmiddlewaretoken" in response.content or b'method="get"' in response.content


def test_custom_pages_need_staff_login(client):
    response = client.get(reverse("admin:channels_app_livecode_import_csv"))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_live_code_change_page_shows_qr_preview_landing_link_and_downloads(admin_client, activity):
    html = admin_client.get(_url(LiveCode, "change", activity.pk)).content.decode()
    assert f'src="{_url(LiveCode, "png", activity.pk)}?inline=1"' in html
    assert f'href="/l/{activity.slug}/"' in html
    assert _url(LiveCode, "poster", activity.pk) in html
    # What WeCom owns is shown, not editable.
    for field in ("config_id", "qr_code", "state", "status"):
        assert f'name="{field}"' not in html


def _live_code_form(corp, channel, members: list) -> dict:
    data = {
        "corp": corp.pk, "channel": channel.pk, "name": "门店海报", "slug": "store-poster",
        "mode": "landing", "strategy": "least_loaded", "skip_verify": "on",
        "welcome_attachments": "[]",
    }  # fmt: skip
    for prefix in ("pool", "schedules", "overrides", "stores"):
        data |= {f"{prefix}-TOTAL_FORMS": 0, f"{prefix}-INITIAL_FORMS": 0}
    data["pool-TOTAL_FORMS"] = len(members)
    for index, member in enumerate(members):
        data |= {f"pool-{index}-staff": member.pk, f"pool-{index}-weight": 1,
                 f"pool-{index}-is_enabled": "on"}  # fmt: skip
    return data


def test_live_code_added_with_its_pool(admin_client, corp, channel, staff):
    response = admin_client.post(_url(LiveCode, "add"), _live_code_form(corp, channel, staff[:2]))
    assert response.status_code == 302
    code = LiveCode.objects.get(slug="store-poster")
    assert code.status == LiveCode.Status.DRAFT
    assert sorted(code.pool.values_list("staff__userid", flat=True)) == ["staff01", "staff02"]


def test_pool_member_of_another_corp_is_refused(admin_client, corp, channel, staff):
    from contacts.models import Staff
    from scrm.wecom.models import Corp

    other = Corp.objects.create(corp_id="wwother", name="别家", secret="s", callback_token="t",
                                encoding_aes_key="k" * 43)  # fmt: skip
    stranger = Staff.objects.create(corp=other, userid="stranger")
    data = _live_code_form(corp, channel, [staff[0], stranger])
    response = admin_client.post(_url(LiveCode, "add"), data)
    assert response.status_code == 200
    assert "staff" in response.context["inline_admin_formsets"][0].formset.forms[1].errors
    assert not LiveCode.objects.exists()


def _change_form(code, pool: list[dict]) -> dict:
    """The change form of a published code as the browser posts it: `pool` lists the rows
    shown (an existing row by its member's id), with delete ticked where asked."""
    data = {
        "channel": code.channel_id, "name": code.name, "slug": code.slug,
        "strategy": code.strategy, "skip_verify": "on",
        "welcome_attachments": "[]", "welcome_text": code.welcome_text,
    }  # fmt: skip
    for prefix in ("schedules", "overrides", "stores"):
        data |= {f"{prefix}-TOTAL_FORMS": 0, f"{prefix}-INITIAL_FORMS": 0}
    existing = [row for row in pool if row.get("id")]
    data |= {"pool-TOTAL_FORMS": len(pool), "pool-INITIAL_FORMS": len(existing)}
    for index, row in enumerate(pool):
        data |= {f"pool-{index}-{name}": value for name, value in row.items()
                 if value is not None}  # fmt: skip
        data[f"pool-{index}-live_code"] = code.pk
    return data


def _pool_rows(code, **changes: dict) -> list[dict]:
    """The code's pool rows as the inline shows them, with `changes` by userid."""
    rows = []
    for member in code.pool.select_related("staff").order_by("pk"):
        row = {
            "id": member.pk,
            "staff": member.staff_id,
            "weight": member.weight,
            "daily_cap": member.daily_cap,
            "is_enabled": "on" if member.is_enabled else None,
        }
        rows.append(row | changes.get(member.staff.userid, {}))  # fmt: skip
    return rows


def test_a_pool_change_in_the_admin_resyncs_a_published_native_code_once(
    admin_client, make_code, sandbox_corp, django_capture_on_commit_callbacks
):
    code = live_code_publish(live_code=make_code(mode="native"))
    kept = code.pool.get(staff__userid="staff01").pk
    pool = _pool_rows(code, staff02={"is_enabled": None}, staff03={"DELETE": "on"})
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(_url(LiveCode, "change", code.pk), _change_form(code, pool))
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert SandboxContactWay.objects.get().users == ["staff01"]
    assert ApiCall.objects.filter(endpoint="externalcontact/update_contact_way").count() == 1
    assert code.pool.get(staff__userid="staff01").pk == kept  # shifts hang on this row
    assert sorted(code.pool.values_list("staff__userid", "is_enabled")) == [
        ("staff01", True), ("staff02", False),
    ]  # fmt: skip
    history = LogEntry.objects.get(object_id=str(code.pk)).get_change_message()
    assert "staff03" in history


def test_an_admin_save_that_leaves_the_pool_as_it_was_calls_no_wecom(
    admin_client, make_code, sandbox_corp, django_capture_on_commit_callbacks
):
    code = live_code_publish(live_code=make_code(mode="native"))
    form = _change_form(code, _pool_rows(code)) | {"name": "新名字"}
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(_url(LiveCode, "change", code.pk), form)
    assert response.status_code == 302
    assert LiveCode.objects.get(pk=code.pk).name == "新名字"
    assert not ApiCall.objects.filter(endpoint="externalcontact/update_contact_way").exists()
    assert SandboxContactWay.objects.get().remark == "618 海报"  # saved, not republished


def test_a_shift_added_in_the_admin_resyncs_who_is_on_duty(
    admin_client, make_code, sandbox_corp, django_capture_on_commit_callbacks
):
    code = live_code_publish(live_code=make_code(mode="native"))
    form = _change_form(code, _pool_rows(code)) | {
        "schedules-TOTAL_FORMS": 1, "schedules-0-name": "全天", "schedules-0-weekdays": "1234567",
        "schedules-0-start_time": "00:00", "schedules-0-end_time": "00:00",
        "schedules-0-members": [code.pool.get(staff__userid="staff02").pk],
    }  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(_url(LiveCode, "change", code.pk), form)
    assert response.status_code == 302, response.context["inline_admin_formsets"]
    assert SandboxContactWay.objects.get().users == ["staff02"]


# -- publishing and status actions -------------------------------------------------------------


def test_publish_asks_first_then_makes_a_draft_landing_code_active(admin_client, make_code):
    code = make_code()
    confirm = _action(admin_client, "publish", [code])
    assert confirm.status_code == 200
    assert code.name in confirm.content.decode()
    assert LiveCode.objects.get(pk=code.pk).status == LiveCode.Status.DRAFT
    response = _action(admin_client, "publish", [code], post="yes")
    assert response.status_code == 200
    code.refresh_from_db()
    assert code.status == LiveCode.Status.ACTIVE
    assert code.published_at is not None
    assert code.slots.count() > 0
    assert any("1" in message for message in _messages(response))


def test_publish_names_the_member_without_customer_contact(admin_client, make_code, sandbox_corp):
    SandboxMember.objects.filter(corp=sandbox_corp, userid="staff02").update(
        customer_contact_enabled=False
    )
    code = make_code(mode="native", name="收银台")
    response = _action(admin_client, "publish", [code], post="yes")
    errors = [m for m in response.context["messages"] if m.level_tag == "error"]
    assert len(errors) == 1
    text = str(errors[0])
    assert "收银台" in text
    assert "staff02" in text
    assert "staff01" not in text
    assert LiveCode.objects.get(pk=code.pk).status == LiveCode.Status.DRAFT


def test_pause_and_archive(admin_client, make_code):
    active = live_code_publish(live_code=make_code())
    draft = make_code()
    assert _action(admin_client, "pause", [active, draft]).status_code == 200  # confirmation
    _action(admin_client, "pause", [active, draft], post="yes")
    assert LiveCode.objects.get(pk=active.pk).status == LiveCode.Status.PAUSED
    assert LiveCode.objects.get(pk=draft.pk).status == LiveCode.Status.DRAFT
    _action(admin_client, "archive", [active, draft], post="yes")
    assert set(LiveCode.objects.values_list("status", flat=True)) == {LiveCode.Status.ARCHIVED}


# -- CSV pages ---------------------------------------------------------------------------------


CODES_CSV = "渠道代码,渠道名称,活码名称,成员\r\n"


def _upload(admin_client, name: str, corp, text: str, encoding: str = "utf-8"):
    file = io.BytesIO(text.encode(encoding))
    file.name = "upload.csv"
    return admin_client.post(reverse(f"admin:{name}"), {"corp": corp.pk, "file": file})


def test_create_codes_from_csv_page_lists_the_new_drafts(admin_client, corp, staff):
    text = CODES_CSV + "xhs_618,小红书,笔记A,staff01\r\nxhs_618,小红书,笔记B,staff02\r\n"
    response = _upload(admin_client, "channels_app_livecode_import_csv", corp, text, "gbk")
    assert response.status_code == 200
    html = response.content.decode()
    codes = list(LiveCode.objects.order_by("name"))
    assert [c.name for c in codes] == ["笔记A", "笔记B"]
    assert all(c.status == LiveCode.Status.DRAFT for c in codes)
    for code in codes:
        assert _url(LiveCode, "change", code.pk) in html
    assert "errornote" not in html


def test_create_codes_from_csv_page_shows_row_errors(admin_client, corp, staff):
    text = CODES_CSV + "xhs_618,小红书,笔记A,staff01\r\nxhs_618,小红书,笔记B,ghost\r\n"
    response = _upload(admin_client, "channels_app_livecode_import_csv", corp, text)
    assert response.status_code == 200
    assert [(e.row, e.column) for e in response.context["result"].errors] == [(3, "成员")]
    html = response.content.decode()
    assert "ghost" in html
    assert "errornote" in html
    assert LiveCode.objects.count() == 0


@pytest.mark.parametrize(
    "content", [b"", b"PK\x03\x04xlsx", b"\xff\xfe\x00\xd8broken", "只有表头\r\n".encode()]
)
def test_csv_page_never_fails_on_bad_files(admin_client, corp, content):
    file = io.BytesIO(content)
    file.name = "bad.csv"
    url = reverse("admin:channels_app_livecode_import_csv")
    response = admin_client.post(url, {"corp": corp.pk, "file": file})
    assert response.status_code == 200
    assert LiveCode.objects.count() == 0
    result, form = response.context["result"], response.context["form"]
    assert (result is not None and result.errors) or form.errors


def test_csv_page_offers_a_template(admin_client):
    response = admin_client.get(reverse("admin:channels_app_livecode_import_csv"), {"template": 1})
    assert response["Content-Type"].startswith("text/csv")
    assert response.content.decode("utf-8-sig").startswith("渠道代码,")


def test_cost_import_page(admin_client, corp, channel):
    good = "渠道代码,开始日期,结束日期,金额\r\npyq_0012,2025/6/1,2025/6/30,1500\r\n"
    response = _upload(admin_client, "channels_app_channel_import_costs", corp, good)
    assert response.status_code == 200
    assert ChannelCost.objects.get().amount == 1500
    bad = "渠道代码,开始日期,结束日期,金额\r\npyq_0012,2025/6/1,2025/6/30,-1\r\n"
    response = _upload(admin_client, "channels_app_channel_import_costs", corp, bad)
    assert [(e.row, e.column) for e in response.context["result"].errors] == [(2, "金额")]
    assert ChannelCost.objects.count() == 1


def test_channel_added_with_a_cost_inline_gives_the_cost_its_corp(admin_client, corp):
    prefix = "costs"
    data = {
        "corp": corp.pk, "name": "小红书", "code": "xhs_618", "channel_type": 2,
        "is_active": "on", "welcome_attachments": "[]",
        f"{prefix}-TOTAL_FORMS": 1, f"{prefix}-INITIAL_FORMS": 0,
        f"{prefix}-0-start_date": "2025-06-01", f"{prefix}-0-end_date": "2025-06-30",
        f"{prefix}-0-amount": "300", f"{prefix}-0-currency": "CNY",
    }  # fmt: skip
    response = admin_client.post(_url(Channel, "add"), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    cost = ChannelCost.objects.get()
    assert (cost.corp, cost.channel.code, cost.amount) == (corp, "xhs_618", 300)


def test_import_costs_action_prefills_the_template(admin_client, channel):
    response = admin_client.post(
        _url(type(channel), "changelist"),
        {"action": "import_costs", "_selected_action": [channel.pk]},
    )
    assert response.status_code == 302
    template = admin_client.get(response["Location"] + "&template=1")
    assert "pyq_0012" in template.content.decode("utf-8-sig")


def test_import_from_wecom_page_lists_adopted_codes(admin_client, corp, sandbox_corp):
    from scrm.wecom.client import WeComClient

    WeComClient(corp).contact_way_add(
        {"type": 2, "scene": 2, "state": "old:1", "remark": "旧码", "user": ["staff01"]}
    )
    response = admin_client.post(reverse("admin:channels_app_livecode_import_wecom"),
                                 {"corp": corp.pk})  # fmt: skip
    assert response.status_code == 200
    adopted = LiveCode.objects.get(imported=True)
    assert adopted.name == "旧码"
    assert _url(LiveCode, "change", adopted.pk) in response.content.decode()


# -- referral codes ----------------------------------------------------------------------------


def test_referral_add_form_generates_through_the_service(admin_client, make_code):
    from tests.factories import ExternalContactFactory

    code = live_code_publish(live_code=make_code())
    referrer = ExternalContactFactory(corp=code.corp, name="老客户")
    assert admin_client.get(_url(ReferralCode, "add")).status_code == 200
    data = {"live_code": code.pk, "referrer": referrer.pk}
    response = admin_client.post(_url(ReferralCode, "add"), data)
    referral = ReferralCode.objects.get()
    assert response.status_code == 302
    assert response["Location"] == _url(ReferralCode, "change", referral.pk)
    admin_client.post(_url(ReferralCode, "add"), data)  # again: the same code
    assert ReferralCode.objects.count() == 1
    board = admin_client.get(reverse("admin:channels_app_referralcode_leaderboard"))
    assert board.status_code == 200


# -- images and ZIPs ---------------------------------------------------------------------------


@pytest.mark.parametrize("view", ["png", "poster"])
def test_per_code_downloads_are_png(admin_client, make_code, view):
    code = live_code_publish(live_code=make_code())
    response = admin_client.get(_url(LiveCode, view, code.pk))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response.content.startswith(b"\x89PNG")
    assert "attachment" in response["Content-Disposition"]
    inline = admin_client.get(_url(LiveCode, view, code.pk), {"inline": 1})
    assert "Content-Disposition" not in inline


def test_unpublished_native_code_download_explains_instead_of_failing(admin_client, make_code):
    code = make_code(mode="native")
    response = admin_client.get(_url(LiveCode, "png", code.pk), follow=True)
    assert response.status_code == 200
    assert any(code.name in message for message in _messages(response))
    assert admin_client.get(_url(LiveCode, "png", code.pk), {"inline": 1}).status_code == 404
    assert admin_client.get(_url(LiveCode, "png", 999999)).status_code == 404


@pytest.mark.parametrize("action", ["download_png_zip", "download_poster_zip"])
def test_zip_actions(admin_client, make_code, action):
    posters = [live_code_publish(live_code=make_code(name="海报")) for _ in range(2)]
    codes = [*posters, make_code(mode="native")]
    response = _action(admin_client, action, codes)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        names = archive.namelist()
    assert len([n for n in names if n.endswith(".png")]) == 2
    assert "skipped.txt" in names


# -- query counts ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [LiveCode, Channel], ids=["livecode", "channel"])
def test_changelist_queries_do_not_grow_with_codes(admin_client, make_code, model):
    url = _url(model, "changelist")

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(url).status_code == 200
        return len(captured)

    make_code()
    queries()  # warm up per-process caches (content types, sessions)
    few = queries()
    for index in range(12):
        make_code(mode="native" if index % 2 else "landing")
    assert queries() == few


# -- customers by first-add channel ------------------------------------------------------------


def test_customer_list_names_the_first_channel_and_code_and_filters_by_channel(
    admin_client, make_code, sandbox_corp, post_event
):
    from contacts.models import ExternalContact

    code = live_code_publish(live_code=make_code(mode="native", name="双十二海报"))
    way = SandboxContactWay.objects.get(config_id=code.config_id)
    url = reverse("admin:contacts_externalcontact_changelist")

    def add(seed: int) -> None:
        customer, follow, _ = sandbox_customer_add(
            corp=sandbox_corp, userid="staff01", rng=random.Random(seed), state=way.state
        )
        post_event("add_external_contact", follow.createtime, UserID="staff01",
                   ExternalUserID=customer.external_userid, State=way.state)  # fmt: skip

    add(1)
    admin_client.get(url)  # warm up per-process caches
    with CaptureQueriesContext(connection) as one:
        page = admin_client.get(url).content.decode()
    assert "朋友圈广告 (pyq_0012)" in page
    assert "双十二海报" in page
    for seed in range(2, 8):
        add(seed)
    with CaptureQueriesContext(connection) as seven:
        assert admin_client.get(url).status_code == 200
    assert len(seven) == len(one)  # names come from the list's own query, not one per row

    filtered = admin_client.get(url, {"first_channel": code.channel_id})
    assert filtered.context["cl"].result_count == ExternalContact.objects.count() == 7
    empty = admin_client.get(url, {"first_channel": code.channel_id + 1000})
    assert empty.context["cl"].result_count == 0

    detail = admin_client.get(
        reverse("admin:contacts_externalcontact_change", args=[ExternalContact.objects.first().pk])
    )
    assert "双十二海报" in detail.content.decode()  # the first source inline, by name
