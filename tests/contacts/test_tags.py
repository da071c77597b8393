"""The tag library: edited in the admin, written to (sandbox) WeCom first, then mirrored; WeCom's
refusals shown with nothing saved; change_external_tag events resync the mirror."""

from __future__ import annotations

import time

import pytest
from django.urls import reverse
from django.utils import timezone, translation

from contacts.models import Tag, TagGroup
from contacts.tags import TAG_ERRORS, tag_group_create, tag_library_sync
from scrm import pipeline
from scrm.wecom.client import WeComClient
from scrm.wecom.models import ApiCall, CallbackEvent
from scrm.wecom.sandbox.models import SandboxFault, SandboxTag, SandboxTagGroup

pytestmark = pytest.mark.django_db

NO_INLINE_FORMS = {
    "tags-TOTAL_FORMS": "0",
    "tags-INITIAL_FORMS": "0",
    "tags-MIN_NUM_FORMS": "0",
    "tags-MAX_NUM_FORMS": "1000",
}


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def english():
    with translation.override("en"):
        yield


def _url(model: type, view: str, *args: object) -> str:
    return reverse(f"admin:contacts_{model._meta.model_name}_{view}", args=args)


def _sandbox_library(sandbox_corp) -> dict[str, set[str]]:
    return {
        group.name: {tag.name for tag in group.tags.all()}
        for group in SandboxTagGroup.objects.filter(corp=sandbox_corp).prefetch_related("tags")
    }


def _mirror(corp) -> dict[str, set[str]]:
    groups = TagGroup.objects.filter(corp=corp, deleted=False).prefetch_related("tags")
    return {g.name: {t.name for t in g.tags.all() if not t.deleted} for g in groups}


def _form_errors(response) -> list[str]:
    assert response.status_code == 200
    return list(response.context["adminform"].form.non_field_errors())


def _calls(endpoint: str) -> int:
    return ApiCall.objects.filter(endpoint=f"externalcontact/{endpoint}", errcode=0).count()


@pytest.fixture
def group(corp) -> TagGroup:
    return tag_group_create(corp=corp, name="来源", tag_names=["老带新", "朋友圈"])


# -- create, rename, delete through the admin --------------------------------------------------


def test_group_created_in_admin_reaches_wecom_then_the_mirror(admin_client, corp, sandbox_corp):
    response = admin_client.post(
        _url(TagGroup, "add"),
        {"corp": corp.pk, "name": "意向", "order": "10", "new_tags": "高\n 中 \n\n高\n低"},
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert _sandbox_library(sandbox_corp) == {"意向": {"高", "中", "低"}}
    group = TagGroup.objects.get(corp=corp, name="意向")
    sandbox_group = SandboxTagGroup.objects.get(name="意向")
    assert (group.group_id, group.order, group.deleted) == (sandbox_group.group_id, 10, False)
    assert set(group.tags.values_list("tag_id", flat=True)) == set(
        sandbox_group.tags.values_list("tag_id", flat=True)
    )
    assert response["Location"] == _url(TagGroup, "changelist")


def test_new_group_without_tags_is_refused_before_wecom(admin_client, corp, sandbox_corp):
    response = admin_client.post(_url(TagGroup, "add"), {"corp": corp.pk, "name": "空组"})
    assert response.status_code == 200
    assert "new_tags" in response.context["adminform"].form.errors
    assert not SandboxTagGroup.objects.exists()
    assert not TagGroup.objects.exists()


def test_group_renamed_and_extended_in_admin(admin_client, corp, sandbox_corp, group):
    response = admin_client.post(
        _url(TagGroup, "change", group.pk),
        {"name": "客户来源", "order": "5", "new_tags": "直播", **NO_INLINE_FORMS},
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert _sandbox_library(sandbox_corp) == {"客户来源": {"老带新", "朋友圈", "直播"}}
    assert _mirror(corp) == {"客户来源": {"老带新", "朋友圈", "直播"}}
    assert SandboxTagGroup.objects.get().order == 5


def test_unchanged_group_saves_without_calling_wecom(admin_client, corp, group):
    before = _calls("edit_corp_tag")
    response = admin_client.post(
        _url(TagGroup, "change", group.pk), {"name": "来源", "order": "0", **NO_INLINE_FORMS}
    )
    assert response.status_code == 302
    assert _calls("edit_corp_tag") == before


def test_tag_added_renamed_and_deleted_through_tag_admin(admin_client, corp, sandbox_corp, group):
    response = admin_client.post(
        _url(Tag, "add"), {"group": group.pk, "name": "抖音", "order": "0"}
    )
    assert response.status_code == 302
    tag = Tag.objects.get(corp=corp, name="抖音")
    assert SandboxTag.objects.get(tag_id=tag.tag_id).group.group_id == group.group_id

    response = admin_client.post(_url(Tag, "change", tag.pk), {"name": "抖音直播", "order": "3"})
    assert response.status_code == 302
    assert SandboxTag.objects.get(tag_id=tag.tag_id).name == "抖音直播"
    assert Tag.objects.get(pk=tag.pk).name == "抖音直播"

    response = admin_client.post(_url(Tag, "delete", tag.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not SandboxTag.objects.filter(tag_id=tag.tag_id).exists()
    assert Tag.objects.get(pk=tag.pk).deleted
    assert _mirror(corp) == {"来源": {"老带新", "朋友圈"}}


def test_deleting_the_last_tags_drops_the_group_as_wecom_does(
    admin_client, corp, sandbox_corp, group
):
    tags = list(group.tags.all())
    response = admin_client.post(
        _url(Tag, "changelist"),
        {"action": "delete_selected", "_selected_action": [t.pk for t in tags], "post": "yes"},
    )
    assert response.status_code == 302
    assert not SandboxTagGroup.objects.exists()
    group.refresh_from_db()
    assert group.deleted
    assert Tag.objects.filter(group=group, deleted=False).count() == 0


def test_group_deleted_in_admin(admin_client, corp, sandbox_corp, group):
    confirm = admin_client.get(_url(TagGroup, "delete", group.pk))
    assert confirm.status_code == 200
    response = admin_client.post(_url(TagGroup, "delete", group.pk), {"post": "yes"})
    assert response.status_code == 302
    assert _sandbox_library(sandbox_corp) == {}
    assert _mirror(corp) == {}
    # A deleted group is history: it can be looked at, not edited or deleted again.
    assert admin_client.get(_url(TagGroup, "change", group.pk)).status_code == 200
    assert admin_client.post(_url(TagGroup, "delete", group.pk), {"post": "yes"}).status_code == 403


# -- WeCom's refusals: shown, nothing saved ----------------------------------------------------


def test_name_taken_in_wecom_is_shown_and_nothing_saved(admin_client, corp, sandbox_corp, english):
    SandboxFault.objects.create(endpoint="externalcontact/add_corp_tag", errcode=40071)
    response = admin_client.post(
        _url(TagGroup, "add"),
        {"corp": corp.pk, "name": "意向", "order": "0", "new_tags": "高"},
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert _form_errors(response) == [str(TAG_ERRORS[40071])]
    assert response.context["adminform"].form.data["name"] == "意向"  # the input is kept
    assert not TagGroup.objects.exists()
    assert not Tag.objects.exists()
    assert not SandboxTagGroup.objects.exists()


def test_renaming_a_tag_deleted_in_wecom_is_refused(admin_client, corp, group, english):
    tag = group.tags.get(name="老带新")
    SandboxTag.objects.filter(tag_id=tag.tag_id).delete()  # an admin deleted it in WeCom
    response = admin_client.post(
        _url(Tag, "change", tag.pk), {"name": "转介绍", "order": "0"}, HTTP_ACCEPT_LANGUAGE="en"
    )
    assert _form_errors(response) == [str(TAG_ERRORS[40068])]
    assert Tag.objects.get(pk=tag.pk).name == "老带新"


def test_too_many_tags_refused_on_a_new_tag(admin_client, corp, group, english):
    SandboxFault.objects.create(endpoint="externalcontact/add_corp_tag", errcode=40126)
    response = admin_client.post(
        _url(Tag, "add"), {"group": group.pk, "name": "第3001个", "order": "0"},
        HTTP_ACCEPT_LANGUAGE="en",
    )  # fmt: skip
    assert _form_errors(response) == [str(TAG_ERRORS[40126])]
    assert not Tag.objects.filter(name="第3001个").exists()


def test_refused_delete_shows_the_reason_and_keeps_the_tag(
    admin_client, corp, sandbox_corp, group, english
):
    tag = group.tags.get(name="朋友圈")
    SandboxFault.objects.create(endpoint="externalcontact/del_corp_tag", errcode=40068, remaining=2)
    response = admin_client.post(
        _url(Tag, "delete", tag.pk), {"post": "yes"}, HTTP_ACCEPT_LANGUAGE="en", follow=True
    )
    assert str(TAG_ERRORS[40068]) in [str(m) for m in response.context["messages"]]
    assert not Tag.objects.get(pk=tag.pk).deleted

    response = admin_client.post(
        _url(Tag, "changelist"),
        {"action": "delete_selected", "_selected_action": [tag.pk], "post": "yes"},
        HTTP_ACCEPT_LANGUAGE="en",
        follow=True,
    )
    shown = [str(m) for m in response.context["messages"]]
    assert str(TAG_ERRORS[40068]) in shown
    assert not any("Successfully deleted" in m for m in shown)
    assert not Tag.objects.get(pk=tag.pk).deleted
    assert SandboxTag.objects.filter(tag_id=tag.tag_id).exists()


def test_too_long_name_is_a_form_error(admin_client, corp, group):
    response = admin_client.post(_url(Tag, "add"), {"group": group.pk, "name": "长" * 31})
    assert response.status_code == 200
    assert "name" in response.context["adminform"].form.errors
    assert _calls("add_corp_tag") == 1  # the fixture's, none more


# -- syncing from WeCom ------------------------------------------------------------------------


def test_sync_page_mirrors_the_library(admin_client, corp, sandbox_corp):
    WeComClient(corp).post(
        "externalcontact/add_corp_tag", {"group_name": "等级", "tag": [{"name": "VIP"}]}
    )
    assert admin_client.get(_url(TagGroup, "changelist")).status_code == 200
    assert admin_client.get(_url(TagGroup, "sync")).status_code == 200
    response = admin_client.post(_url(TagGroup, "sync"), {"corp": corp.pk}, follow=True)
    assert response.status_code == 200
    assert _mirror(corp) == {"等级": {"VIP"}}
    assert len(list(response.context["messages"])) == 1


def _tag_event(corp, change_type: str, **fields: str) -> CallbackEvent:
    """An inbox row as the gateway stores a change_external_tag event (no UserID)."""
    return CallbackEvent.objects.create(
        corp=corp,
        dedup_key=f"change_external_tag|{change_type}|{fields}|{time.monotonic_ns()}",
        event="change_external_tag",
        change_type=change_type,
        event_time=timezone.now(),
        payload={"Event": "change_external_tag", "ChangeType": change_type, **fields},
    )


def test_tag_event_resyncs_after_commit_only_and_once_per_burst(
    corp, sandbox_corp, django_capture_on_commit_callbacks
):
    client = WeComClient(corp)
    created = client.post(
        "externalcontact/add_corp_tag", {"group_name": "等级", "tag": [{"name": "VIP"}]}
    )
    tag_id = created["tag_group"]["tag"][0]["id"]
    before = _calls("get_corp_tag_list")
    with django_capture_on_commit_callbacks(execute=False) as queued:
        for change_type in ("create", "update", "shuffle"):
            pipeline.on_tag_library_change(_tag_event(corp, change_type, Id=tag_id))
    assert _calls("get_corp_tag_list") == before  # no WeCom call inside the transaction
    assert len(queued) == 1  # debounced: one resync for the burst
    queued[0]()
    assert _calls("get_corp_tag_list") == before + 1
    assert _mirror(corp) == {"等级": {"VIP"}}

    client.post("externalcontact/del_corp_tag", {"tag_id": [tag_id]})
    with django_capture_on_commit_callbacks(execute=True):
        pipeline.on_tag_library_change(_tag_event(corp, "delete", Id=tag_id, TagType="tag"))
    assert Tag.objects.get(tag_id=tag_id).deleted
    assert _mirror(corp) == {}


def test_change_external_tag_callback_resyncs_the_mirror(corp, sandbox_corp, post_event):
    created = WeComClient(corp).post(
        "externalcontact/add_corp_tag", {"group_name": "等级", "tag": [{"name": "VIP"}]}
    )
    tag_id = created["tag_group"]["tag"][0]["id"]
    create_time = int(time.time())
    for _delivery in range(2):  # WeCom retries: the same event twice is one resync
        response = post_event(
            "create", create_time, event="change_external_tag", Id=tag_id, TagType="tag"
        )
        assert response.status_code == 200
    assert _mirror(corp) == {"等级": {"VIP"}}
    assert CallbackEvent.objects.get().status == CallbackEvent.Status.PROCESSED


def test_sync_keeps_ids_stable_and_marks_what_wecom_dropped(corp, sandbox_corp, group):
    ids = dict(Tag.objects.values_list("name", "tag_id"))
    SandboxTag.objects.filter(name="朋友圈").delete()
    assert tag_library_sync(corp=corp) == (1, 1)
    assert dict(Tag.objects.values_list("name", "tag_id")) == ids
    assert Tag.objects.get(name="朋友圈").deleted


def test_an_empty_library_answer_does_not_wipe_the_mirror(corp, sandbox_corp, group, caplog):
    # An app without the 客户联系 permission gets errcode 0 and no groups: not a deletion.
    SandboxTagGroup.objects.filter(corp=sandbox_corp).delete()
    assert tag_library_sync(corp=corp) == (0, 0)
    assert _mirror(corp) == {"来源": {"老带新", "朋友圈"}}
    assert "kept" in caplog.text
