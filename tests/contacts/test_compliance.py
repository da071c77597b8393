"""Personal data (PIPL): a customer's export holds every section and no IP hash; erasure empties
the personal fields everywhere while every count and report stays the same; raw callback
bodies are blanked after the retention period."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Count, Sum
from django.urls import reverse
from django.utils import timezone

from channels_app.models import (
    Attribution,
    Channel,
    GroupMemberJoin,
    LiveCode,
    Scan,
    WelcomeDelivery,
)
from contacts.compliance import (
    callback_bodies_prune,
    contact_erase,
    contact_export,
    erased_pseudonym,
)
from contacts.conversions import conversions_import
from contacts.models import (
    AuditLog,
    ConversionEvent,
    CustomerTag,
    ExternalContact,
    FirstSource,
    FollowRelation,
    Tag,
    TagGroup,
    TimelineEvent,
)
from contacts.tasks import callback_bodies_prune_task
from contacts.timeline import timeline_record
from scrm.pipeline import add_record
from scrm.wecom.models import CallbackEvent, CorpMembership, Role
from tests.factories import (
    CorpFactory,
    ExternalContactFactory,
    FirstSourceFactory,
    FollowRelationFactory,
    StaffFactory,
)

pytestmark = pytest.mark.django_db

ORIGINAL_ID = "wmPersonal0000000000000000001"
NAME, UNIONID, REMARK = "王小明", "oUnion-wang-001", "王小明 138 0000 0000"
IP_HASH, DEVICE_KEY = "iphash0123456789abcdef01234567", "devkey0123456789abcdef012345678"
PIPL_URL = "/admin/contacts/auditlog/pipl/"


@pytest.fixture(autouse=True)
def _fast_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _callback(corp, external_userid: str, change_type: str, *, days_ago: float = 0, **fields):
    event = CallbackEvent.objects.create(
        corp=corp,
        dedup_key=f"change_external_contact|{change_type}|staff01|{external_userid}|{days_ago}",
        event="change_external_contact",
        change_type=change_type,
        user_id="staff01",
        external_user_id=external_userid,
        event_time=timezone.now(),
        payload={"ExternalUserID": external_userid, "State": "pyq_0012"},
        raw_body=f"<xml><Encrypt>{external_userid}</Encrypt></xml>",
        status=fields.pop("status", CallbackEvent.Status.PROCESSED),
    )
    if days_ago:
        received = timezone.now() - dt.timedelta(days=days_ago)
        CallbackEvent.objects.filter(pk=event.pk).update(received_at=received)
    return event


@pytest.fixture
def world(admin_user):
    """One customer with data in every table that can hold some, and a bystander."""
    corp = CorpFactory(corp_id="wwpipl0000000001")
    contact = ExternalContactFactory(
        corp=corp, external_userid=ORIGINAL_ID, name=NAME, unionid=UNIONID,
        avatar="https://wework.qpic.cn/wang.png", corp_name="王氏贸易",
    )  # fmt: skip
    channel = Channel.objects.create(corp=corp, name="小红书 618", code="xhs_618")
    # A code adopted from WeCom keeps its foreign state: the adds below resolve to it.
    code = LiveCode.objects.create(corp=corp, channel=channel, name="618 海报", slug="pipl-618",
                                   state="pyq_0012")  # fmt: skip
    first = FirstSourceFactory(external_contact=contact, corp=corp, state="pyq_0012")
    relation = FollowRelation.objects.get(external_contact=contact)
    FollowRelation.objects.filter(pk=relation.pk).update(
        remark=REMARK, description="住在浦东, 孕期", oper_userid="staff-oper"
    )
    FollowRelationFactory(external_contact=contact, corp=corp, remark="老客户 王")
    scan = Scan.objects.create(
        corp=corp, live_code=code, device=Scan.Device.MOBILE, utm_source="xhs",
        ip_hash=IP_HASH, device_key=DEVICE_KEY, staff=first.staff,
    )  # fmt: skip
    Attribution.objects.filter(add_event=first.add_event).update(scan=scan)
    group = TagGroup.objects.create(corp=corp, group_id="g1", name="意向")
    tag = Tag.objects.create(corp=corp, group=group, tag_id="t1", name="高意向")
    CustomerTag.objects.create(
        corp=corp, follow_relation=relation, tag=tag, source=CustomerTag.Source.RULE
    )
    WelcomeDelivery.objects.create(
        corp=corp, follow_relation=relation, added_at=relation.created_at,
        outcome=WelcomeDelivery.Outcome.SENT, source="live_code",
    )  # fmt: skip
    GroupMemberJoin.objects.create(corp=corp, chat_id="wrchat1", member_id="member-1",
                                   external_contact=contact, joined_at=timezone.now())  # fmt: skip
    # The adds above wrote their timeline lines ("小红书 618 · 618 海报 · pyq_0012").
    timeline_record(
        contact=contact, kind=TimelineEvent.Kind.TAGGED, occurred_at=timezone.now(),
        dedup_key="tag:1", summary="高意向", data={"tags": ["t1"]},
    )  # fmt: skip
    conversions_import(rows=[
        {"corp_id": corp.corp_id, "external_id": "o-1", "kind": "order", "amount": "199.00",
         "occurred_at": "2024-06-18T20:30:00+08:00", "external_userid": ORIGINAL_ID},
        {"corp_id": corp.corp_id, "external_id": "o-2", "kind": "refund", "amount": "-50",
         "occurred_at": "2024-06-19T20:30:00+08:00", "unionid": UNIONID},
    ])  # fmt: skip
    own_events = [
        _callback(corp, ORIGINAL_ID, "add_external_contact"),
        _callback(corp, ORIGINAL_ID, "edit_external_contact", status=CallbackEvent.Status.PENDING),
    ]
    bystander = FirstSourceFactory(
        external_contact__corp=corp, external_contact__name="路人甲"
    ).external_contact
    other_event = _callback(corp, bystander.external_userid, "add_external_contact")
    return {
        "corp": corp, "contact": contact, "relation": relation, "channel": channel,
        "scan": scan, "own_events": own_events, "bystander": bystander,
        "other_event": other_event, "actor": admin_user,
    }  # fmt: skip


def _report() -> dict:
    """What a channel report counts: adds and first adds per channel, customers per first-add
    staff, revenue per first-source channel."""
    return {
        "customers": ExternalContact.objects.count(),
        "relations": FollowRelation.objects.count(),
        "first_sources": FirstSource.objects.count(),
        "attributions": Attribution.objects.count(),
        "adds_per_channel": list(
            Attribution.objects.values("channel_id", "is_first_touch")
            .annotate(n=Count("pk"))
            .order_by("channel_id", "is_first_touch")
        ),
        "customers_per_staff": list(
            FirstSource.objects.values("staff_id").annotate(n=Count("pk")).order_by("staff_id")
        ),
        "revenue_per_contact": list(
            ConversionEvent.objects.values("external_contact_id", "kind")
            .annotate(total=Sum("amount"), n=Count("pk"))
            .order_by("external_contact_id", "kind")
        ),
        "tags": CustomerTag.objects.count(),
        "welcomes": WelcomeDelivery.objects.count(),
        "callback_events": CallbackEvent.objects.count(),
    }


# -- export ------------------------------------------------------------------------------------


def test_export_holds_every_section_and_no_ip_hash(world):
    data = contact_export(contact=world["contact"], actor=world["actor"])
    text = json.dumps(data, ensure_ascii=False)  # serialisable as it is

    assert data["profile"]["name"] == NAME
    assert data["profile"]["unionid"] == UNIONID
    assert data["profile"]["external_userid"] == ORIGINAL_ID
    assert {r["remark"] for r in data["follow_relations"]} == {REMARK, "老客户 王"}
    assert data["first_source"]["state"] == "pyq_0012"
    assert {(a["channel__name"], a["live_code__name"]) for a in data["attributions"]} == {
        ("小红书 618", "618 海报")
    }
    assert [s["utm_source"] for s in data["scans"]] == ["xhs"]
    assert [(t["tag__group__name"], t["tag__name"]) for t in data["tags"]] == [("意向", "高意向")]
    assert {line["summary"] for line in data["timeline"]} >= {"高意向"}
    assert {(c["external_id"], c["amount"]) for c in data["conversions"]} == {
        ("o-1", "199.00"),
        ("o-2", "-50.00"),
    }
    assert [w["outcome"] for w in data["welcome_deliveries"]] == ["sent"]
    assert [g["chat_id"] for g in data["group_joins"]] == ["wrchat1"]
    assert {e["change_type"] for e in data["callback_events"]} == {
        "add_external_contact",
        "edit_external_contact",
    }
    assert all(ORIGINAL_ID in e["raw_body"] for e in data["callback_events"])
    assert "路人甲" not in text  # nobody else's data

    assert IP_HASH not in text
    assert DEVICE_KEY not in text
    assert "ip_hash" not in text
    assert "device_key" not in text

    audit = AuditLog.objects.get(action="export")
    assert audit.actor == world["actor"]
    assert audit.target == f"external_contact:{world['contact'].pk}"
    assert audit.corp == world["corp"]
    assert audit.detail["sections"]["conversions"] == 2
    assert ORIGINAL_ID not in json.dumps(audit.detail)


# -- erasure -----------------------------------------------------------------------------------


def _everything_serialised() -> str:
    models = [
        ExternalContact, FollowRelation, FirstSource, TimelineEvent, CustomerTag, ConversionEvent,
        CallbackEvent, Attribution, Scan, WelcomeDelivery, AuditLog,
    ]  # fmt: skip
    return "".join(
        json.dumps(list(model.objects.values()), cls=DjangoJSONEncoder, ensure_ascii=False)
        for model in models
    )


def test_erase_removes_personal_data_everywhere_and_keeps_every_count(world):
    contact = world["contact"]
    before = _report()
    contact_erase(contact=contact, actor=world["actor"])
    contact.refresh_from_db()

    pseudonym = erased_pseudonym(corp_id=world["corp"].corp_id, external_userid=ORIGINAL_ID)
    assert contact.external_userid == pseudonym
    assert pseudonym.startswith("erased-")
    assert len(pseudonym) == len("erased-") + 20
    assert (contact.name, contact.avatar, contact.unionid, contact.corp_name) == ("", "", "", "")
    assert contact.erased_at is not None
    for relation in FollowRelation.objects.filter(external_contact=contact):
        assert (relation.remark, relation.description, relation.oper_userid) == ("", "", "")
    for event in world["own_events"]:
        event.refresh_from_db()
        assert (event.raw_body, event.payload, event.external_user_id) == ("", {}, pseudonym)
        assert ORIGINAL_ID not in event.dedup_key
    world["own_events"][1].refresh_from_db()
    assert world["own_events"][1].status == CallbackEvent.Status.IGNORED  # never re-processed
    world["other_event"].refresh_from_db()
    assert world["other_event"].raw_body
    assert world["other_event"].payload
    conversions = ConversionEvent.objects.filter(external_contact=contact)
    assert {(c.external_userid, c.unionid) for c in conversions} == {("", "")}
    assert sorted(c.amount for c in conversions) == [Decimal("-50.00"), Decimal("199.00")]
    kept = contact.timeline.exclude(kind=TimelineEvent.Kind.ERASED)
    assert {line.kind for line in kept} == {
        TimelineEvent.Kind.ADDED, TimelineEvent.Kind.RE_ADDED, TimelineEvent.Kind.TAGGED,
        TimelineEvent.Kind.CONVERSION,
    }  # fmt: skip
    assert {(line.summary, json.dumps(line.data)) for line in kept} == {("", "{}")}

    everything = _everything_serialised()
    for personal in (ORIGINAL_ID, NAME, UNIONID, REMARK, "孕期", "王氏贸易", "wang.png"):
        assert personal not in everything, personal
    assert "路人甲" in everything  # the bystander is untouched

    assert _report() == before


def test_erase_writes_an_audit_row_and_a_timeline_line(world):
    contact = world["contact"]
    contact_erase(contact=contact, actor=world["actor"])
    audit = AuditLog.objects.get(action="erase")
    assert audit.actor == world["actor"]
    assert audit.actor_label == world["actor"].get_username()
    assert audit.target == f"external_contact:{contact.pk}"
    assert audit.created_at is not None
    assert audit.detail["callback_events"] == 2
    assert audit.detail["conversions"] == 2
    line = contact.timeline.get(kind=TimelineEvent.Kind.ERASED)
    assert line.summary == ""
    assert line.data == {"audit_log": audit.pk}


def test_erasing_twice_changes_nothing(world):
    contact = world["contact"]
    contact_erase(contact=contact, actor=world["actor"])
    erased = ExternalContact.objects.get(pk=contact.pk)
    contact_erase(contact=erased, actor=world["actor"])
    assert ExternalContact.objects.get(pk=contact.pk).erased_at == erased.erased_at
    assert AuditLog.objects.filter(action="erase").count() == 1
    assert contact.timeline.filter(kind=TimelineEvent.Kind.ERASED).count() == 1


def test_a_later_add_of_the_same_person_is_a_new_customer(world):
    contact = world["contact"]
    contact_erase(contact=contact, actor=world["actor"])
    staff = StaffFactory(corp=world["corp"])
    relation = add_record(
        corp=world["corp"], userid=staff.userid, external_userid=ORIGINAL_ID, state="",
        added_at=timezone.now(),
    ).relation  # fmt: skip
    assert relation.external_contact_id != contact.pk
    assert relation.external_contact.erased_at is None
    assert ExternalContact.objects.filter(corp=world["corp"]).count() == 3


def test_conversions_sent_again_after_erasure_stay_duplicates(world):
    contact_erase(contact=world["contact"], actor=world["actor"])
    corp_id = world["corp"].corp_id
    again = [
        {"corp_id": corp_id, "external_id": "o-1", "kind": "order", "amount": "199.00",
         "occurred_at": "2024-06-18T20:30:00+08:00", "external_userid": ORIGINAL_ID},
    ]  # fmt: skip
    result = conversions_import(rows=again)
    assert (result.created, result.duplicates) == (0, 1)
    assert not ConversionEvent.objects.filter(external_userid=ORIGINAL_ID).exists()


def test_unmatched_conversions_with_the_customers_ids_are_linked_then_blanked(world):
    corp = world["corp"]
    ConversionEvent.objects.filter(external_contact=world["contact"]).update(
        external_contact=None, matched_at=None
    )
    contact_erase(contact=world["contact"], actor=world["actor"])
    conversions = ConversionEvent.objects.filter(corp=corp)
    assert {c.external_contact_id for c in conversions} == {world["contact"].pk}
    assert {(c.external_userid, c.unionid) for c in conversions} == {("", "")}


# -- the admin page ----------------------------------------------------------------------------


def test_personal_data_page_exports_json_with_an_audit_row(admin_client, world):
    assert admin_client.get(PIPL_URL).status_code == 200
    changelist = admin_client.get(reverse("admin:contacts_auditlog_changelist"))
    assert PIPL_URL in changelist.content.decode()
    response = admin_client.post(
        PIPL_URL,
        {"corp": world["corp"].pk, "external_userid": ORIGINAL_ID, "action": "export"},
    )
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment;")
    assert ORIGINAL_ID not in response["Content-Disposition"]
    assert json.loads(response.content)["profile"]["name"] == NAME
    assert AuditLog.objects.filter(action="export").count() == 1


def test_personal_data_page_erases_after_confirmation(admin_client, world):
    form = {"corp": world["corp"].pk, "external_userid": ORIGINAL_ID}
    response = admin_client.post(PIPL_URL, {**form, "action": "erase"})
    assert response.status_code == 200
    assert "erase_confirmed" in response.content.decode()
    assert ExternalContact.objects.get(pk=world["contact"].pk).erased_at is None

    response = admin_client.post(PIPL_URL, {**form, "action": "erase_confirmed"}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("admin:contacts_auditlog_changelist")
    assert ExternalContact.objects.get(pk=world["contact"].pk).erased_at is not None

    # Asked again with the original id: the erased row is found, and nothing changes.
    response = admin_client.post(PIPL_URL, {**form, "action": "erase_confirmed"}, follow=True)
    messages = [str(m) for m in response.context["messages"]]
    assert any(f"#{world['contact'].pk}" in m for m in messages)
    assert AuditLog.objects.filter(action="erase").count() == 1


def test_personal_data_page_unknown_customer_and_permissions(
    admin_client, client, django_user_model, world
):
    response = admin_client.post(
        PIPL_URL, {"corp": world["corp"].pk, "external_userid": "wm-nobody", "action": "export"}
    )
    assert response.status_code == 200
    assert response.context["form"].non_field_errors()

    # An operator exports; erasing is for the corp's admins.
    operator = django_user_model.objects.create_user(username="operator", is_staff=True)
    CorpMembership.objects.create(user=operator, corp=world["corp"], role=Role.OPERATOR)
    client.force_login(operator)
    form = {"corp": world["corp"].pk, "external_userid": ORIGINAL_ID}
    assert client.post(PIPL_URL, {**form, "action": "erase_confirmed"}).status_code == 403
    assert client.post(PIPL_URL, {**form, "action": "export"}).status_code == 200
    assert ExternalContact.objects.get(pk=world["contact"].pk).erased_at is None

    # A manager sees no personal data; a staff account without membership nothing, even with
    # Django's model permissions.
    manager = django_user_model.objects.create_user(username="manager", is_staff=True)
    CorpMembership.objects.create(user=manager, corp=world["corp"], role=Role.MANAGER)
    client.force_login(manager)
    assert client.get(PIPL_URL).status_code == 403
    nobody = django_user_model.objects.create_user(username="nobody", is_staff=True)
    nobody.user_permissions.add(Permission.objects.get(codename="view_externalcontact"))
    client.force_login(nobody)
    assert client.get(PIPL_URL).status_code == 403


def test_audit_log_is_read_only(admin_client, world):
    contact_export(contact=world["contact"], actor=world["actor"])
    audit = AuditLog.objects.get()
    assert admin_client.get(reverse("admin:contacts_auditlog_changelist")).status_code == 200
    page = admin_client.get(reverse("admin:contacts_auditlog_change", args=[audit.pk]))
    assert page.status_code == 200
    assert admin_client.get(reverse("admin:contacts_auditlog_add")).status_code == 403
    delete = admin_client.post(reverse("admin:contacts_auditlog_delete", args=[audit.pk]))
    assert delete.status_code == 403
    assert AuditLog.objects.count() == 1


# -- retention ---------------------------------------------------------------------------------


def test_retention_blanks_only_old_raw_bodies(settings, monkeypatch):
    monkeypatch.setattr("contacts.compliance.PRUNE_BATCH", 2)  # several batches
    corp = CorpFactory()
    old = [_callback(corp, f"wm-old-{n}", "add_external_contact", days_ago=91) for n in range(5)]
    recent = _callback(corp, "wm-recent", "add_external_contact", days_ago=89)
    new = _callback(corp, "wm-new", "add_external_contact")

    assert callback_bodies_prune_task.delay().get() == 5
    for event in old:
        event.refresh_from_db()
        assert event.raw_body == ""
        assert event.payload  # the parsed fields stay
    for event in (recent, new):
        event.refresh_from_db()
        assert event.raw_body
    assert callback_bodies_prune() == 0

    settings.WECOM_RAW_BODY_RETENTION_DAYS = 30
    assert callback_bodies_prune() == 1
    recent.refresh_from_db()
    assert recent.raw_body == ""
    new.refresh_from_db()
    assert new.raw_body
