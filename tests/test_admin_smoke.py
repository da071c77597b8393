"""Every registered admin opens; the corp form keeps secrets write-only; customer filters,
the inbox retry action and the customers changelist's query count hold."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone, translation
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)
from rest_framework.authtoken.models import Token

from contacts.models import ExternalContact, FirstSource
from scrm.wecom.models import ApiCall, CallbackEvent, Corp, CorpMembership, Role
from tests.flows import customer_flows_in

pytestmark = pytest.mark.django_db

ADMINS = sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)
ADMIN_IDS = [model._meta.label for model, _ in ADMINS]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    # admin_client creates a superuser; the production hasher would cost ~0.4 s per test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _url(model: type, view: str, *args: object) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def every_model_row(sandbox_corp, corp, post_event, admin_user) -> None:
    """At least one row behind every registered admin, so each change page can be opened."""
    customer_flows_in(sandbox_corp, post_event)
    Group.objects.create(name="运营")
    Token.objects.create(user=admin_user)
    CorpMembership.objects.create(user=admin_user, corp=corp, role=Role.ADMIN)
    interval = IntervalSchedule.objects.create(every=60, period=IntervalSchedule.SECONDS)
    CrontabSchedule.objects.create(minute="0", hour="3")
    SolarSchedule.objects.create(event="sunrise", latitude=31.23, longitude=121.47)
    ClockedSchedule.objects.create(clocked_time=timezone.now() + dt.timedelta(days=1))
    PeriodicTask.objects.create(
        name="smoke", task="scrm.wecom.tasks.callback_events_requeue_task", interval=interval
    )
    assert ApiCall.objects.exists()  # the details fetch went through the logged client
    _channel_and_lifecycle_rows(corp)


def _channel_and_lifecycle_rows(corp: Corp) -> None:
    """One row of every channels and lifecycle model, built directly (their flows have their
    own tests); enough for each admin change page to open."""
    from analytics.models import AnomalyAck, DecisionSettings, SurgeAlert
    from channels_app import models as ch
    from channels_app.services.live_codes import live_code_create
    from contacts import models as co

    customer = ExternalContact.objects.first()
    relation = customer.follow_relations.first()
    staff = relation.staff
    channel = ch.Channel.objects.create(corp=corp, name="朋友圈广告", code="pyq_0012")
    ch.ChannelCost.objects.create(corp=corp, channel=channel, start_date=dt.date(2026, 6, 1),
                                  end_date=dt.date(2026, 6, 30), amount=1000)  # fmt: skip
    code = live_code_create(corp=corp, channel=channel, name="618 海报", slug="smoke",
                            pool=[{"staff": staff, "daily_cap": 10}])  # fmt: skip
    scan = ch.Scan.objects.create(corp=corp, live_code=code, device="mobile", staff=staff)
    ch.DailyCounter.objects.create(corp=corp, live_code=code, staff=staff,
                                   day=dt.date(2026, 6, 1), assigned=1, added=1)  # fmt: skip
    ch.Attribution.objects.filter(follow_relation=relation).update(live_code=code, scan=scan)
    ch.ReferralCode.objects.create(corp=corp, live_code=code, referrer=customer, token="smoke")
    ch.SourceRule.objects.create(corp=corp, name="名片分享", add_way=3)
    ch.WelcomeDelivery.objects.get_or_create(
        follow_relation=relation, added_at=relation.created_at,
        defaults={"corp": corp, "outcome": "sent"},
    )  # fmt: skip
    way = ch.GroupJoinWay.objects.create(corp=corp, channel=channel, name="福利群", chat_ids=["wr"])
    ch.GroupMemberJoin.objects.create(corp=corp, chat_id="wr", member_id="wm1", join_way=way,
                                      joined_at=timezone.now())  # fmt: skip
    group = co.TagGroup.objects.create(corp=corp, group_id="etg1", name="来源")
    co.Tag.objects.create(corp=corp, group=group, tag_id="et1", name="老带新")
    co.BatchTagJob.objects.create(corp=corp, tag_ids=["et1"], relation_ids=[relation.pk], total=1)
    co.ConversionEvent.objects.create(
        corp=corp, external_id="o1", kind="order", amount=199, occurred_at=timezone.now(),
        external_contact=customer,
    )  # fmt: skip
    co.AuditLog.objects.create(corp=corp, actor_label="smoke", action="export",
                               target=customer.external_userid)  # fmt: skip
    run = co.CalibrationRun.objects.create(corp=corp, since=dt.date(2026, 6, 1), status="done")
    co.CalibrationDeviation.objects.create(corp=corp, run=run, staff=staff,
                                           day=dt.date(2026, 6, 1), ours=1, wecom=2)  # fmt: skip
    DecisionSettings.objects.create(corp=corp)
    SurgeAlert.objects.create(corp=corp, live_code=code, metric="both", started_at=timezone.now(),
                              scans=30, scans_usual=2, adds=25, adds_usual=2, peak_scans=30,
                              peak_adds=25)  # fmt: skip
    AnomalyAck.objects.create(corp=corp, kind="callback_failed", key="failed:1", note="smoke")


@pytest.mark.parametrize(("model", "model_admin"), ADMINS, ids=ADMIN_IDS)
def test_changelist_search_and_add_pages_open(admin_client, rf, admin_user, model, model_admin):
    assert admin_client.get(_url(model, "changelist")).status_code == 200
    assert admin_client.get(_url(model, "changelist"), {"q": "x"}).status_code == 200
    request = rf.get("/")
    request.user = admin_user
    expected = 200 if model_admin.has_add_permission(request) else 403
    assert admin_client.get(_url(model, "add")).status_code == expected


@pytest.mark.parametrize(("model", "model_admin"), ADMINS, ids=ADMIN_IDS)
def test_change_page_opens(admin_client, every_model_row, model, model_admin):
    obj = model._default_manager.order_by("pk").first()
    assert obj is not None, f"add a {model._meta.label} row to the every_model_row fixture"
    assert admin_client.get(_url(model, "change", obj.pk)).status_code == 200


# -- corp secrets ------------------------------------------------------------------------------


def _corp_form(corp: Corp, **overrides: str) -> dict[str, str]:
    data = {
        "corp_id": corp.corp_id,
        "name": corp.name,
        "secret": "",
        "agent_id": corp.agent_id,
        "callback_token": "",
        "encoding_aes_key": "",
        "time_zone": corp.time_zone,
        "is_active": "on",
    }
    return {**data, **overrides}


def _assert_no_secret(corp: Corp, html: str) -> None:
    for value in (corp.secret, corp.callback_token, corp.encoding_aes_key):
        assert value
        assert value not in html


def test_corp_pages_never_render_secrets(admin_client, corp):
    for url in (
        _url(Corp, "change", corp.pk),
        _url(Corp, "changelist"),
        _url(Corp, "history", corp.pk),
    ):
        response = admin_client.get(url)
        assert response.status_code == 200
        _assert_no_secret(corp, response.content.decode())


def test_corp_saved_with_blank_secrets_keeps_the_stored_ones(admin_client, corp):
    before = Corp.objects.get(pk=corp.pk)
    response = admin_client.post(_url(Corp, "change", corp.pk), _corp_form(corp, name="新名字"))
    assert response.status_code == 302
    after = Corp.objects.get(pk=corp.pk)
    assert after.name == "新名字"
    assert (after.secret, after.callback_token, after.encoding_aes_key) == (
        before.secret,
        before.callback_token,
        before.encoding_aes_key,
    )


def test_corp_new_secret_replaces_only_the_secret(admin_client, corp):
    before = Corp.objects.get(pk=corp.pk)
    response = admin_client.post(
        _url(Corp, "change", corp.pk), _corp_form(corp, secret="a-brand-new-secret")
    )
    assert response.status_code == 302
    after = Corp.objects.get(pk=corp.pk)
    assert after.secret == "a-brand-new-secret"
    assert (after.callback_token, after.encoding_aes_key) == (
        before.callback_token,
        before.encoding_aes_key,
    )


def test_corp_invalid_aes_key_is_a_form_error_not_a_500(admin_client, corp):
    before = Corp.objects.get(pk=corp.pk)
    response = admin_client.post(
        _url(Corp, "change", corp.pk), _corp_form(corp, encoding_aes_key="A" * 42)
    )
    assert response.status_code == 200
    assert "encoding_aes_key" in response.context["adminform"].form.errors
    _assert_no_secret(before, response.content.decode())
    assert Corp.objects.get(pk=corp.pk).encoding_aes_key == before.encoding_aes_key


def test_corp_add_with_invalid_aes_key_is_a_form_error(admin_client):
    response = admin_client.post(
        _url(Corp, "add"),
        {
            "corp_id": "wwnew0000000001",
            "name": "新企业",
            "secret": "s" * 32,
            "callback_token": "t" * 16,
            "encoding_aes_key": "A" * 42,
            "time_zone": "Asia/Shanghai",
            "is_active": "on",
        },
    )
    assert response.status_code == 200
    assert "encoding_aes_key" in response.context["adminform"].form.errors
    assert not Corp.objects.filter(corp_id="wwnew0000000001").exists()


# -- customers changelist ----------------------------------------------------------------------


def _listed(admin_client, **params: object) -> set[int]:
    response = admin_client.get(_url(ExternalContact, "changelist"), params)
    assert response.status_code == 200
    return {obj.pk for obj in response.context["cl"].result_list}


def test_customer_filters_by_first_source(admin_client, sandbox_corp, post_event):
    yesterday = int(time.time()) - 86400
    scan = customer_flows_in(sandbox_corp, post_event, userid="staff01", state="pyq_0012")
    card = customer_flows_in(
        sandbox_corp,
        post_event,
        userid="staff02",
        state="xhs_618",
        add_way=3,
        create_time=yesterday,
        seed=2,
    )
    assert _listed(admin_client) == {scan.pk, card.pk}

    assert _listed(admin_client, first_add_way=1) == {scan.pk}
    assert _listed(admin_client, first_add_way=3) == {card.pk}
    assert _listed(admin_client, first_add_way="not-a-number") == {scan.pk, card.pk}

    staff02 = FirstSource.objects.get(external_contact=card).staff
    assert _listed(admin_client, first_source__staff__id__exact=staff02.pk) == {card.pk}
    assert _listed(admin_client, first_state="pyq_0012") == {scan.pk}

    # The date filter's own "Today" link, as an operator would click it.
    response = admin_client.get(_url(ExternalContact, "changelist"))
    changelist = response.context["cl"]
    (date_filter,) = [
        spec
        for spec in changelist.filter_specs
        if getattr(spec, "field_path", "") == "first_source__added_at"
    ]
    with translation.override("en"):
        today = next(c for c in date_filter.choices(changelist) if str(c["display"]) == "Today")
    response = admin_client.get(_url(ExternalContact, "changelist") + today["query_string"])
    assert {obj.pk for obj in response.context["cl"].result_list} == {scan.pk}


def test_customer_filter_add_way_hides_other_ways(admin_client, sandbox_corp, post_event):
    customer = customer_flows_in(sandbox_corp, post_event, add_way=1)
    assert _listed(admin_client, first_add_way=1) == {customer.pk}
    assert _listed(admin_client, first_add_way=3) == set()


def test_customer_change_page_shows_first_source_and_relations(
    admin_client, sandbox_corp, post_event
):
    customer = customer_flows_in(sandbox_corp, post_event, state="pyq_0012")
    response = admin_client.get(_url(ExternalContact, "change", customer.pk))
    assert response.status_code == 200
    html = response.content.decode()
    assert customer.external_userid in html
    assert "pyq_0012" in html


def test_customers_changelist_queries_do_not_grow_with_customers(
    admin_client, sandbox_corp, post_event
):
    def changelist_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(_url(ExternalContact, "changelist"))
        assert response.status_code == 200
        return len(queries)

    staff = ["staff01", "staff02", "staff03"]
    for index in range(3):
        customer_flows_in(
            sandbox_corp, post_event, userid=staff[index], state=f"s{index}", seed=index
        )
    changelist_queries()  # warm up per-process caches (content types, sessions)
    few = changelist_queries()
    for index in range(3, 30):
        customer_flows_in(
            sandbox_corp, post_event, userid=staff[index % 3], state=f"s{index}", seed=index
        )
    assert ExternalContact.objects.count() == 30
    assert changelist_queries() == few


# -- callback inbox ----------------------------------------------------------------------------


def test_retry_action_requeues_a_failed_event(
    admin_client, sandbox_corp, post_event, django_capture_on_commit_callbacks
):
    customer = customer_flows_in(sandbox_corp, post_event)
    event = CallbackEvent.objects.get()
    # As if the pipeline had crashed: the event failed and left no customer behind.
    CallbackEvent.objects.filter(pk=event.pk).update(
        status=CallbackEvent.Status.FAILED, last_error="RuntimeError: boom"
    )
    ExternalContact.objects.filter(pk=customer.pk).delete()

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            _url(CallbackEvent, "changelist"),
            {"action": "retry", "_selected_action": [event.pk]},
            follow=True,
        )
    assert response.status_code == 200
    event.refresh_from_db()
    assert event.status in (CallbackEvent.Status.PROCESSED, CallbackEvent.Status.IGNORED)
    assert event.last_error == ""
    assert ExternalContact.objects.filter(external_userid=customer.external_userid).exists()
    assert [str(m) for m in response.context["messages"]]
