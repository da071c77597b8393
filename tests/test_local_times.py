"""Every time the admin shows is the corp's local time: for a corp in New York, an instant shows
New York's clock on each list and change page (inlines, read-only fields and the history
included), never the UTC or the server's (Asia/Shanghai) clock next to it, and a row's page
names the zone once."""

from __future__ import annotations

import datetime as dt

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.urls import reverse

from channels_app.models import Channel, Scan, WelcomeDelivery
from contacts.models import AuditLog, CalibrationRun, ExternalContact, TimelineEvent
from scrm.wecom.models import ApiCall, CallbackEvent, CorpMembership, Role
from tests.flows import customer_flows_in
from tests.test_admin_smoke import _channel_and_lifecycle_rows

pytestmark = pytest.mark.django_db

INSTANT = dt.datetime(2026, 12, 6, 21, 47, tzinfo=dt.UTC)
NEW_YORK = "16:47"  # EST, UTC-5
ELSEWHERE = ("21:47", "05:47")  # UTC; Asia/Shanghai (settings.TIME_ZONE), the next day
OUR_APPS = ("wecom", "contacts", "channels_app", "analytics")
ADMINS = sorted(
    (model for model in admin.site._registry if model._meta.app_label in OUR_APPS),
    key=lambda model: model._meta.label,
)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def new_york_rows(sandbox_corp, corp, post_event, admin_user) -> None:
    """A row behind every admin, each of its times at INSTANT, in a corp in New York."""
    corp.time_zone = "America/New_York"
    corp.save()
    CorpMembership.objects.create(user=admin_user, corp=corp, role=Role.ADMIN)
    customer_flows_in(sandbox_corp, post_event)
    _channel_and_lifecycle_rows(corp)
    for model in apps.get_models():
        if model._meta.app_label not in OUR_APPS:
            continue
        times = [f.name for f in model._meta.concrete_fields if isinstance(f, models.DateTimeField)]
        if times:
            model._default_manager.update(**dict.fromkeys(times, INSTANT))
    LogEntry.objects.create(
        user=admin_user, content_type=ContentType.objects.get_for_model(ExternalContact),
        object_id=str(ExternalContact.objects.get().pk), object_repr="x", action_flag=CHANGE,
        action_time=INSTANT,
    )  # fmt: skip


def _url(model: type, view: str, *args: object) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def _local_only(html: str) -> None:
    for clock in ELSEWHERE:
        assert clock not in html


@pytest.mark.parametrize("model", ADMINS, ids=[model._meta.label for model in ADMINS])
def test_every_admin_page_shows_the_corps_local_time(admin_client, new_york_rows, model):
    changelist = admin_client.get(_url(model, "changelist"))
    assert changelist.status_code == 200
    _local_only(changelist.content.decode())
    obj = model._default_manager.order_by("pk").first()
    change = admin_client.get(_url(model, "change", obj.pk))
    assert change.status_code == 200
    _local_only(change.content.decode())


@pytest.mark.parametrize(
    "model",
    [CallbackEvent, ApiCall, AuditLog, CalibrationRun, Scan, WelcomeDelivery, ExternalContact],
)
def test_the_new_york_clock_shows_and_a_rows_page_names_its_zone_once(
    admin_client, new_york_rows, model
):
    assert NEW_YORK in admin_client.get(_url(model, "changelist")).content.decode()
    obj = model._default_manager.order_by("pk").first()
    page = admin_client.get(_url(model, "change", obj.pk)).content.decode()
    assert NEW_YORK in page
    assert page.count('id="corp-time-zone"') == 1
    assert "America/New_York" in page


def test_the_customers_timeline_and_history_are_in_new_york_time(admin_client, new_york_rows):
    customer = ExternalContact.objects.get()
    assert TimelineEvent.objects.filter(external_contact=customer).exists()
    page = admin_client.get(_url(ExternalContact, "change", customer.pk)).content.decode()
    assert page.count(NEW_YORK) >= 3  # read-only fields, first source, timeline rows
    _local_only(page)
    history = admin_client.get(_url(ExternalContact, "history", customer.pk)).content.decode()
    assert NEW_YORK in history
    _local_only(history)


def test_a_list_counts_days_in_the_zone_the_users_corps_keep(admin_client, new_york_rows):
    # 21:47 UTC on December 6th is December 6th in New York (December 7th in Shanghai).
    url = _url(ApiCall, "changelist")
    day = {"created_at__year": 2026, "created_at__month": 12}
    december = admin_client.get(url, day).content.decode()
    assert "created_at__day=6" in december
    assert "created_at__day=7" not in december
    assert NEW_YORK in admin_client.get(url, {**day, "created_at__day": 6}).content.decode()
    assert NEW_YORK not in admin_client.get(url, {**day, "created_at__day": 7}).content.decode()


def test_a_new_rows_page_names_the_zone_of_the_users_corps(admin_client, new_york_rows):
    page = admin_client.get(_url(Channel, "add")).content.decode()
    assert "America/New_York" in page
