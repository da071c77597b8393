"""PIPL erasure leaves nothing: a customer who touched every feature is exported, then erased,
and every text, character and JSON column of every table is searched for their
external_userid, unionid, name and phone number. The export lists every row the erasure
rewrote.

Allowed to keep them, and only these:
- the sandbox's tables (app `wecom_sandbox`): they stand in for WeCom itself, which erasure
  here does not touch (contacts/compliance.py: "Erasure here does not delete anything inside
  WeCom"); they exist only in the demo and tests.
The pseudonym (`erased-` + 20 hex of a SHA-256 of corp and id) is kept on purpose and contains
none of the searched strings.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.db import models
from django.test import RequestFactory

from channels_app.models import Channel, GroupJoinWay, GroupMemberJoin, Scan, WelcomeDelivery
from channels_app.services.groups import group_join_way_publish
from channels_app.services.live_codes import live_code_create
from channels_app.services.publishing import live_code_publish
from contacts.batch_tagging import batch_tag_job_create, batch_tag_job_run
from contacts.compliance import contact_erase, contact_export
from contacts.conversions import conversions_import
from contacts.models import (
    BatchTagJob,
    ConversionEvent,
    CustomerTag,
    ExternalContact,
    FollowRelation,
    TimelineEvent,
)
from contacts.services import staff_get_or_create
from contacts.tags import tag_library_sync
from scrm.wecom.client import WeComClient
from scrm.wecom.models import ApiCall, CallbackEvent
from scrm.wecom.sandbox.models import (
    SandboxContactWay,
    SandboxCustomer,
    SandboxFault,
    SandboxFollow,
    SandboxGroupMember,
)
from scrm.wecom.sandbox.simulate import sandbox_customer_add, sandbox_group_chat_create

pytestmark = pytest.mark.django_db

NAME = "欧阳晓燕"
PHONE = "13912345678"
UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) MicroMessenger/8.0.40"
QR_RE = re.compile(r"/wecom-sandbox/qr/([0-9a-f]+)\.png")
ALLOWED_APPS = {"wecom_sandbox"}  # WeCom's side, see the module docstring
# Export section holding the rows of each model the erasure may rewrite, and their key.
EXPORT_SECTIONS = {
    "contacts.externalcontact": ("profile", "id"),
    "contacts.followrelation": ("follow_relations", "id"),
    "contacts.conversionevent": ("conversions", "id"),
    "contacts.timelineevent": ("timeline", "id"),
    "contacts.batchtagjob": ("batch_tag_errors", "job"),
    "wecom.callbackevent": ("callback_events", "id"),
    "wecom.apicall": ("api_calls", "id"),
    "admin.logentry": ("admin_log", "id"),
    "channels_app.scan": ("scans", "id"),
    "channels_app.groupmemberjoin": ("group_joins", "id"),
}


def _text_columns(model: type[models.Model]) -> list[models.Field]:
    kinds = (models.CharField, models.TextField, models.JSONField)
    return [f for f in model._meta.concrete_fields if isinstance(f, kinds)]


def _as_text(value: Any) -> str:
    """The value as searchable text: JSON kept as \\uXXXX escapes (SQLite's JSONField, Django's
    change_message) is decoded, so a name cannot hide behind its escapes."""
    if value is None:
        return ""
    if not isinstance(value, str):
        return json.dumps(value, ensure_ascii=False, default=str)
    if value[:1] in "[{":
        try:
            return value + json.dumps(json.loads(value), ensure_ascii=False)
        except ValueError:
            pass
    return value


def _models() -> Iterator[type[models.Model]]:
    for model in apps.get_models(include_auto_created=True):
        if model._meta.app_label not in ALLOWED_APPS:
            yield model


def personal_hits(needles: list[str]) -> list[str]:
    """'app.model.field #pk: needle' for every stored value holding a needle."""
    hits = []
    for model in _models():
        columns = _text_columns(model)
        if not columns:
            continue
        rows = model._base_manager.values_list("pk", *(f.attname for f in columns))
        for pk, *values in rows.iterator():
            for field, value in zip(columns, values, strict=True):
                text = _as_text(value)
                hits += [f"{model._meta.label_lower}.{field.name} #{pk}: {needle}"
                         for needle in needles if needle in text]  # fmt: skip
    return hits


def _snapshot() -> dict[tuple[str, Any], tuple]:
    rows = {}
    for model in _models():
        names = [f.attname for f in model._meta.concrete_fields]
        for values in model._base_manager.values_list(*names).iterator():
            rows[(model._meta.label_lower, values[names.index(model._meta.pk.attname)])] = values
    return rows


def _landing_scan(client, code) -> SandboxContactWay:
    response = client.get(
        f"/l/{code.slug}/", {"utm_campaign": "618"}, HTTP_USER_AGENT=UA, REMOTE_ADDR="10.9.8.7",
        HTTP_REFERER=f"https://m.example.com/share?from={NAME}&tel={PHONE}",
    )  # fmt: skip
    assert response.status_code == 200
    return SandboxContactWay.objects.get(config_id=QR_RE.search(response.content.decode())[1])


@pytest.fixture
def customer_everywhere(corp, sandbox_corp, post_event, client, admin_user):
    """A customer who scanned a landing code (with a referrer naming them), added staff (with
    a welcome and a tag), was edited in WeCom (remark with their phone), joined a group chat
    beside another member, converted (notes naming them), failed a batch tagging (WeCom's
    errmsg naming their id) and was edited in the admin."""
    staff = [staff_get_or_create(corp=corp, userid=f"staff0{i}") for i in (1, 2, 3)]
    channel = Channel.objects.create(corp=corp, name="朋友圈广告", code="pyq_0012",
                                     channel_type=2, utm_source="pyq")  # fmt: skip
    group = WeComClient(corp).post(
        "externalcontact/add_corp_tag",
        {"group_name": "意向", "tag": [{"name": "高意向"}, {"name": "复购"}]},
    )
    tag_library_sync(corp=corp)
    tag_ids = [t["id"] for t in group["tag_group"]["tag"]]
    code = live_code_publish(live_code=live_code_create(
        corp=corp, channel=channel, name="618 海报", slug="pipl-618", mode="landing",
        strategy="least_loaded", pool=[{"staff": s, "daily_cap": None} for s in staff],
        tag_ids=[tag_ids[0]], welcome_text="您好{customer_name}",
    ))  # fmt: skip
    way = _landing_scan(client, code)

    customer, follow, welcome_code = sandbox_customer_add(
        corp=sandbox_corp, userid=way.users[0], rng=random.Random(7), state=way.state
    )
    SandboxCustomer.objects.filter(pk=customer.pk).update(name=NAME)
    SandboxFollow.objects.filter(pk=follow.pk).update(
        remark=f"{NAME} {PHONE}", description=f"电话 {PHONE}, 住在浦东"
    )
    ext = customer.external_userid
    post_event("add_external_contact", follow.createtime, UserID=follow.userid,
               ExternalUserID=ext, State=way.state, WelcomeCode=welcome_code)  # fmt: skip
    post_event("edit_external_contact", follow.createtime + 5, UserID=follow.userid,
               ExternalUserID=ext)  # fmt: skip
    contact = ExternalContact.objects.get(corp=corp, external_userid=ext)
    relation = FollowRelation.objects.get(external_contact=contact)

    chat = sandbox_group_chat_create(corp=sandbox_corp, name="福利群1", owner="staff01")
    join_way = group_join_way_publish(join_way=GroupJoinWay.objects.create(
        corp=corp, channel=channel, name="福利群活码", chat_ids=[chat.chat_id]
    ))  # fmt: skip
    joined, other = int(time.time()), "wmOtherGroupMember000000000001"
    for member in (ext, other):
        SandboxGroupMember.objects.create(chat=chat, userid=member, type=2, join_time=joined,
                                          join_scene=3, state=join_way.state)  # fmt: skip
    post_event("update", joined, event="change_external_chat", ChatId=chat.chat_id,
               UpdateDetail="add_member", JoinScene="3", MemChangeCnt="2",
               MemChangeList=[ext, other])  # fmt: skip

    conversions_import(rows=[
        {"corp_id": corp.corp_id, "external_id": "o-1", "kind": "order", "amount": "199.00",
         "occurred_at": "2026-06-18T20:30:00+08:00", "external_userid": ext,
         "note": f"{NAME} 下单, 电话 {PHONE}"},
        {"corp_id": corp.corp_id, "external_id": "c-1", "kind": "consult",
         "occurred_at": "2026-06-18T20:00:00+08:00", "unionid": customer.unionid,
         "note": f"回访 {PHONE}"},
    ], actor=admin_user)  # fmt: skip

    SandboxFault.objects.create(endpoint="externalcontact/mark_tag", errcode=40003,
                                errmsg=f"invalid external_userid {ext}")  # fmt: skip
    job = batch_tag_job_create(corp=corp, contacts=ExternalContact.objects.filter(pk=contact.pk),
                               tag_ids=[tag_ids[1]], add=True, created_by="admin")  # fmt: skip
    batch_tag_job_run(job_id=job.pk)

    # The admin's own log writes, as a change with an inline row added makes them.
    request = RequestFactory().post("/admin/")
    request.user = admin_user
    tag_row = CustomerTag.objects.filter(follow_relation=relation).first()
    admin.site._registry[ExternalContact].log_change(request, contact, [
        {"changed": {"fields": ["name"]}},
        {"added": {"name": "customer tag", "object": str(tag_row)}},
    ])  # fmt: skip

    return {"contact": contact, "ext": ext, "unionid": customer.unionid, "other": other,
            "actor": admin_user}  # fmt: skip


def test_the_customer_touched_every_feature(customer_everywhere):
    """The setup is what the scan below relies on: each feature holds the customer's data."""
    w = customer_everywhere
    contact, ext = w["contact"], w["ext"]
    assert contact.name == NAME
    assert contact.unionid == w["unionid"]
    relation = FollowRelation.objects.get(external_contact=contact)
    assert PHONE in relation.remark
    assert PHONE in Scan.objects.get().referrer_url
    assert WelcomeDelivery.objects.get(follow_relation=relation).outcome == "sent"
    assert CustomerTag.objects.filter(follow_relation=relation).exists()
    assert GroupMemberJoin.objects.filter(member_id=ext, external_contact=contact).exists()
    chat_event = CallbackEvent.objects.get(event="change_external_chat")
    assert ext in chat_event.dedup_key
    assert ConversionEvent.objects.filter(external_contact=contact).count() == 2
    assert TimelineEvent.objects.filter(external_contact=contact).count() >= 3
    assert ext in str(BatchTagJob.objects.get().errors)
    assert ApiCall.objects.filter(errmsg__contains=ext).exists()
    assert LogEntry.objects.filter(object_repr=NAME).exists()
    needles = [ext, w["unionid"], NAME, PHONE]
    found = {needle for hit in personal_hits(needles) for needle in needles if hit.endswith(needle)}
    assert found == set(needles)  # the scan finds each of them before erasure


def test_after_erasure_no_column_of_any_table_holds_their_personal_data(customer_everywhere):
    w = customer_everywhere
    contact_erase(contact=w["contact"], actor=w["actor"])
    assert personal_hits([w["ext"], w["unionid"], NAME, PHONE]) == []
    # The other member of the group chat keeps their id in the shared event and join.
    chat_event = CallbackEvent.objects.get(event="change_external_chat")
    assert w["other"] in chat_event.payload["MemChangeList"]
    assert w["other"] in chat_event.dedup_key
    assert GroupMemberJoin.objects.filter(member_id=w["other"]).exists()


def test_the_export_lists_every_row_the_erasure_rewrites(customer_everywhere):
    w = customer_everywhere
    export = contact_export(contact=w["contact"], actor=w["actor"])
    before = _snapshot()
    contact_erase(contact=w["contact"], actor=w["actor"])
    after = _snapshot()
    rewritten = {key for key, values in before.items() if after.get(key, values) != values}
    assert ("contacts.externalcontact", w["contact"].pk) in rewritten
    missing = []
    for label, pk in sorted(rewritten, key=str):
        section, key = EXPORT_SECTIONS.get(label, (label, "id"))
        rows = export.get(section)
        rows = [rows] if isinstance(rows, dict) else rows or []
        if not any(row.get(key) == pk for row in rows):
            missing.append(f"{label} #{pk} not in the export's {section!r}")
    assert missing == []
    # Each kind of trace was rewritten, so the check above covered it.
    assert {label for label, _ in rewritten} >= set(EXPORT_SECTIONS)
