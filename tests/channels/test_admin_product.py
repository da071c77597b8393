"""A live code's own page works as the product's: publish, pause and archive buttons for those
who may write in its corp, and no QR or poster to download while it is a draft."""

from __future__ import annotations

import pytest
from django.urls import reverse

from channels_app.models import LiveCode
from channels_app.services.publishing import live_code_publish
from scrm.wecom.models import Corp, Role
from tests.tenancy import member

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _change(code: LiveCode) -> str:
    return reverse("admin:channels_app_livecode_change", args=[code.pk])


def _button(code: LiveCode, button: str) -> str:
    return reverse("admin:channels_app_livecode_status", args=[code.pk, button])


def _user(django_user_model, corp: Corp, role: str):
    user = django_user_model.objects.create_user(f"u-{role}", password="pw", is_staff=True)
    return member(user, corp, role=role)


# -- publish, pause and archive on the code's page -----------------------------------------------


def test_a_draft_page_offers_publish_and_archive_not_pause(admin_client, make_code):
    code = make_code()
    html = admin_client.get(_change(code)).content.decode()
    assert f'action="{_button(code, "publish")}"' in html
    assert f'action="{_button(code, "archive")}"' in html
    assert _button(code, "pause") not in html
    assert 'name="csrfmiddlewaretoken"' in html


def test_publish_then_pause_then_archive_from_the_page(admin_client, make_code):
    code = make_code()
    response = admin_client.post(_button(code, "publish"))
    assert response.status_code == 302
    assert response["Location"] == _change(code)
    code.refresh_from_db()
    assert code.status == LiveCode.Status.ACTIVE
    assert code.published_at is not None
    assert code.slots.exists()
    assert _button(code, "pause") in admin_client.get(_change(code)).content.decode()

    admin_client.post(_button(code, "pause"))
    assert LiveCode.objects.get(pk=code.pk).status == LiveCode.Status.PAUSED
    admin_client.post(_button(code, "archive"))
    assert LiveCode.objects.get(pk=code.pk).status == LiveCode.Status.ARCHIVED
    html = admin_client.get(_change(code)).content.decode()
    assert _button(code, "archive") not in html
    assert _button(code, "publish") in html  # publishing again brings it back


def test_a_failed_publish_says_why_on_the_page(admin_client, make_code, sandbox_corp):
    from scrm.wecom.sandbox.models import SandboxMember

    SandboxMember.objects.filter(corp=sandbox_corp, userid="staff02").update(
        customer_contact_enabled=False
    )
    code = make_code(mode="native", name="收银台")
    response = admin_client.post(_button(code, "publish"), follow=True)
    errors = [str(m) for m in response.context["messages"] if m.level_tag == "error"]
    assert len(errors) == 1
    assert "staff02" in errors[0]
    assert LiveCode.objects.get(pk=code.pk).status == LiveCode.Status.DRAFT


def test_the_buttons_take_a_post_only(admin_client, make_code):
    code = make_code()
    assert admin_client.get(_button(code, "publish")).status_code == 405
    assert admin_client.post(_button(code, "delete")).status_code == 404
    assert LiveCode.objects.get(pk=code.pk).status == LiveCode.Status.DRAFT


def test_the_buttons_need_the_csrf_token(make_code, django_user_model, corp):
    from django.test import Client

    code = make_code()
    client = Client(enforce_csrf_checks=True)
    client.force_login(_user(django_user_model, corp, Role.OPERATOR))
    assert client.post(_button(code, "archive")).status_code == 403
    assert LiveCode.objects.get(pk=code.pk).status == LiveCode.Status.DRAFT


def test_an_operator_uses_them_a_manager_neither_sees_nor_uses_them(
    client, make_code, django_user_model, corp
):
    code = make_code()
    user = _user(django_user_model, corp, Role.MANAGER)
    client.force_login(user)
    html = client.get(_change(code)).content.decode()
    assert client.get(_change(code)).status_code == 200
    assert _button(code, "publish") not in html
    assert client.post(_button(code, "archive")).status_code == 403
    assert LiveCode.objects.get(pk=code.pk).status == LiveCode.Status.DRAFT

    member(user, corp, role=Role.OPERATOR)
    assert _button(code, "archive") in client.get(_change(code)).content.decode()
    assert client.post(_button(code, "archive")).status_code == 302
    assert LiveCode.objects.get(pk=code.pk).status == LiveCode.Status.ARCHIVED


def test_another_corps_code_is_a_404(client, make_code, django_user_model):
    code = make_code()
    other = Corp.objects.create(corp_id="wwother", name="别家")
    client.force_login(_user(django_user_model, other, Role.ADMIN))
    assert client.post(_button(code, "archive")).status_code == 404
    assert client.post(_button(code, "publish")).status_code == 404
    assert LiveCode.objects.get(pk=code.pk).status == LiveCode.Status.DRAFT


def test_pause_leaves_a_draft_a_draft(admin_client, make_code):
    code = make_code()
    admin_client.post(_button(code, "pause"))
    assert LiveCode.objects.get(pk=code.pk).status == LiveCode.Status.DRAFT
    live_code_publish(live_code=code)
    admin_client.post(_button(code, "pause"))
    assert LiveCode.objects.get(pk=code.pk).status == LiveCode.Status.PAUSED


# -- a draft has no QR to print ----------------------------------------------------------------


def _image(code: LiveCode, kind: str) -> str:
    return reverse(f"admin:channels_app_livecode_{kind}", args=[code.pk])


def test_a_draft_page_offers_no_qr_nor_poster(admin_client, make_code):
    code = make_code()  # a landing code: its link exists before it is published
    html = admin_client.get(_change(code)).content.decode()
    assert _image(code, "png") not in html
    assert _image(code, "poster") not in html
    assert "发布后显示" in html or "Shown once the code is published." in html

    live_code_publish(live_code=code)
    html = admin_client.get(_change(code)).content.decode()
    assert f'src="{_image(code, "png")}?inline=1"' in html
    assert _image(code, "poster") in html


@pytest.mark.parametrize("kind", ["png", "poster"])
def test_a_drafts_image_urls_explain_instead_of_serving_it(admin_client, make_code, kind):
    code = make_code()
    response = admin_client.get(_image(code, kind), follow=True)
    assert response["Content-Type"].startswith("text/html")
    assert any(code.name in str(message) for message in response.context["messages"])
    assert admin_client.get(_image(code, kind), {"inline": 1}).status_code == 404


def test_the_zip_skips_drafts(admin_client, make_code):
    import io
    import zipfile

    published, draft = live_code_publish(live_code=make_code(name="已发布")), make_code(name="草稿")
    data = {"action": "download_png_zip", "_selected_action": [published.pk, draft.pk]}
    response = admin_client.post(reverse("admin:channels_app_livecode_changelist"), data)
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        names = archive.namelist()
        skipped = archive.read("skipped.txt").decode()
    assert len([name for name in names if name.endswith(".png")]) == 1
    assert "草稿" in skipped


def _in_each_language(text: str) -> set[str]:
    from django.utils import translation

    found = set()
    for language in ("zh-hans", "en"):
        with translation.override(language):
            found.add(translation.gettext(text))
    return found


def test_a_drafts_landing_link_says_not_yet_published(client, make_code):
    # Whatever language the landing page speaks (the visitor's or the corp's).
    code = make_code()
    response = client.get(f"/l/{code.slug}/")
    text = response.content.decode()
    assert response.status_code == 404
    assert response.context["reason"] == "draft"
    assert any(title in text for title in _in_each_language("This code is not yet published"))
    ended = "The campaign has ended or is paused. Thank you for your interest."
    for paused in ("This code is paused", ended):
        assert not any(title in text for title in _in_each_language(paused))

    paused = make_code(status=LiveCode.Status.PAUSED)
    text = client.get(f"/l/{paused.slug}/").content.decode()
    assert any(title in text for title in _in_each_language("This code is paused"))


# -- the corp preselected ------------------------------------------------------------------------


def test_a_new_codes_corp_is_preselected_when_the_user_may_write_in_one(
    client, django_user_model, corp
):
    other = Corp.objects.create(corp_id="wwother", name="别家")
    user = _user(django_user_model, corp, Role.OPERATOR)
    member(user, other, role=Role.MANAGER)  # reads another corp: still one to write in
    client.force_login(user)
    html = client.get(reverse("admin:channels_app_livecode_add")).content.decode()
    select = html.split('name="corp"', 1)[1].split("</select>", 1)[0]
    assert f'<option value="{corp.pk}" selected>' in select
    assert f'value="{other.pk}"' not in select

    member(user, other, role=Role.OPERATOR)  # two corps: the user chooses
    html = client.get(reverse("admin:channels_app_livecode_add")).content.decode()
    select = html.split('name="corp"', 1)[1].split("</select>", 1)[0]
    assert "selected" not in select.replace('value="" selected', "")


# -- tags picked from the library --------------------------------------------------------------


@pytest.fixture
def library(corp):
    from contacts.models import Tag, TagGroup

    source = TagGroup.objects.create(corp=corp, group_id="g1", name="来源", order=2)
    intent = TagGroup.objects.create(corp=corp, group_id="g2", name="意向", order=1)
    for group, tag_id, name in ((source, "t-xhs", "小红书"), (source, "t-dy", "抖音"),
                                (intent, "t-hot", "高意向")):  # fmt: skip
        Tag.objects.create(corp=corp, group=group, tag_id=tag_id, name=name)
    other = Corp.objects.create(corp_id="wwother", name="别家")
    elsewhere = TagGroup.objects.create(corp=other, group_id="g9", name="别家的组")
    Tag.objects.create(corp=other, group=elsewhere, tag_id="t-other", name="别家的标签")
    return other


def _form_data(code: LiveCode, **fields: object) -> dict:
    data = {"channel": code.channel_id, "name": code.name, "slug": code.slug, "corp": code.corp_id,
            "mode": code.mode, "strategy": code.strategy, "welcome_attachments": "[]",
            "welcome_text": ""}  # fmt: skip
    for prefix in ("pool", "schedules", "overrides", "stores"):
        data |= {f"{prefix}-TOTAL_FORMS": 0, f"{prefix}-INITIAL_FORMS": 0}
    return data | fields


def test_tags_are_picked_from_the_library_grouped(client, django_user_model, corp, library,
                                                  make_code):  # fmt: skip
    code = make_code()
    client.force_login(_user(django_user_model, corp, Role.OPERATOR))
    response = client.get(_change(code))
    field = response.context["adminform"].form.fields["tag_ids"]
    assert field.choices == [("来源", [("t-xhs", "小红书"), ("t-dy", "抖音")]),
                             ("意向", [("t-hot", "高意向")])]  # fmt: skip
    html = response.content.decode()
    assert 'type="checkbox" name="tag_ids" value="t-hot"' in html
    assert "t-other" not in html  # another corp's library

    response = client.post(_change(code), _form_data(code, tag_ids=["t-xhs", "t-hot"]))
    assert response.status_code == 302
    assert LiveCode.objects.get(pk=code.pk).tag_ids == ["t-xhs", "t-hot"]


def test_another_corps_tag_is_refused(admin_client, corp, library, make_code):
    code = make_code()
    html = admin_client.get(_change(code)).content.decode()
    assert "别家 · 别家的组" in html  # a superuser sees every corp's library, each named
    response = admin_client.post(_change(code), _form_data(code, tag_ids=["t-other"]))
    assert response.status_code == 200
    assert "tag_ids" in response.context["adminform"].form.errors
    assert LiveCode.objects.get(pk=code.pk).tag_ids == []


def test_a_tag_gone_from_the_library_is_kept_not_dropped(admin_client, corp, library, make_code):
    code = make_code(tag_ids=["t-gone", "t-dy"])
    form = admin_client.get(_change(code)).context["adminform"].form
    *_library, (_label, missing) = form.fields["tag_ids"].choices
    assert missing == [("t-gone", "t-gone")]
    response = admin_client.post(_change(code), _form_data(code, tag_ids=["t-gone", "t-dy"]))
    assert response.status_code == 302
    assert LiveCode.objects.get(pk=code.pk).tag_ids == ["t-gone", "t-dy"]


def test_an_auto_rules_tags_are_picked_too(admin_client, corp, library):
    from channels_app.models import SourceRule

    url = reverse("admin:channels_app_sourcerule_add")
    field = admin_client.get(url).context["adminform"].form.fields["tag_ids"]
    assert ("来源", [("t-xhs", "小红书"), ("t-dy", "抖音")]) in [
        (label.split(" · ")[-1], options) for label, options in field.choices
    ]
    data = {"corp": corp.pk, "name": "小红书来的", "is_active": "on", "priority": 1,
            "scope": SourceRule._meta.get_field("scope").get_default() or "first_add",
            "tag_ids": ["t-xhs"], "welcome_attachments": "[]", "weekdays": "1234567"}  # fmt: skip
    response = admin_client.post(url, data)
    errors = response.context["adminform"].form.errors if response.status_code == 200 else {}
    assert response.status_code == 302, errors
    assert SourceRule.objects.get(name="小红书来的").tag_ids == ["t-xhs"]


# -- welcome attachments as rows ---------------------------------------------------------------

LINK = {"msgtype": "link", "link": {"title": "新人券", "url": "https://shop.example/coupon"}}


def test_attachments_are_edited_as_rows(admin_client, make_code):
    code = make_code(welcome_attachments=[LINK])
    html = admin_client.get(_change(code)).content.decode()
    assert 'name="welcome_attachments-0-msgtype"' in html
    assert 'value="新人券"' in html
    assert 'value="https://shop.example/coupon"' in html
    assert 'name="welcome_attachments-2-msgtype"' in html  # blank rows to add more

    rows = {"welcome_attachments-0-msgtype": "link", "welcome_attachments-0-title": "新人券",
            "welcome_attachments-0-url": "https://shop.example/coupon",
            "welcome_attachments-1-msgtype": "image",
            "welcome_attachments-1-media_id": "MEDIA_1"}  # fmt: skip
    data = {k: v for k, v in _form_data(code).items() if k != "welcome_attachments"} | rows
    response = admin_client.post(_change(code), data)
    assert response.status_code == 302
    assert LiveCode.objects.get(pk=code.pk).welcome_attachments == [
        LINK,
        {"msgtype": "image", "image": {"media_id": "MEDIA_1"}},
    ]


def test_an_incomplete_row_is_refused_with_its_number(admin_client, make_code):
    code = make_code(welcome_attachments=[LINK])
    data = {k: v for k, v in _form_data(code).items() if k != "welcome_attachments"}
    data |= {"welcome_attachments-0-msgtype": "link", "welcome_attachments-0-title": "没有链接"}
    response = admin_client.post(_change(code), data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["welcome_attachments"]
    assert any("1" in error and "url" in error for error in errors)
    assert LiveCode.objects.get(pk=code.pk).welcome_attachments == [LINK]
    # The rows come back as typed, to correct.
    assert 'value="没有链接"' in response.content.decode()


def test_a_channel_edits_its_attachments_as_rows_too(admin_client, channel):
    url = reverse("admin:channels_app_channel_change", args=[channel.pk])
    assert 'name="welcome_attachments-0-msgtype"' in admin_client.get(url).content.decode()
