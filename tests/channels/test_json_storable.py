"""JSON that PostgreSQL cannot store (NUL, a lone surrogate, NaN or an infinite number) is
refused with its place named, wherever it comes in: any API body, and every JSONField of ours
through the admin's forms and the services. On SQLite these were stored; on PostgreSQL they
were a 500 (the fuzz test's API writes find them there)."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.db import models
from django.urls import reverse
from django.utils import translation
from rest_framework.test import APIClient

from channels_app.models import GroupJoinWay, LiveCode
from channels_app.services.publishing import live_code_publish
from scrm.input_guard import StorableJSONField, json_problem
from tests.tenancy import member

OUR_APPS = ("wecom", "contacts", "channels_app", "analytics")


@pytest.mark.parametrize(
    ("value", "where", "reason"),
    [
        ({"rows": [{"note": "a\x00b"}]}, "rows[0].note", "NUL"),
        ([1, {"k": "\ud800"}], "[1].k", "lone surrogate"),
        ({"a": float("nan")}, "a", "finite"),
        ([float("inf")], "[0]", "finite"),
        ({"ok": 1, "a\x00": 2}, None, "NUL"),  # a key: the place is its parent (the root)
    ],
)
def test_json_problem_names_the_place_and_the_reason(value, where, reason):
    with translation.override("en"):
        problem = json_problem(value)
    assert reason in problem
    if where:
        assert problem.startswith(f"{where}: ")


def test_storable_json_has_no_problem():
    deep: list = []
    node = deep
    for _ in range(5_000):  # as deep as a parser may go: no recursion here
        node.append([])
        node = node[0]
    assert json_problem({"a": ["文字", 1, 2.5, None, True, {"b": "😀"}], "c": deep}) is None


@pytest.mark.parametrize(
    "field",
    [
        field
        for model in apps.get_models()
        if model._meta.app_label in OUR_APPS
        for field in model._meta.fields
        if isinstance(field, models.JSONField)
    ],
    ids=str,
)
def test_every_json_field_of_ours_refuses_what_postgresql_cannot_store(field):
    assert isinstance(field, StorableJSONField)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"welcome_attachments": [{"msgtype": "link", "link": {"title": "a\\u0000b", '
         b'"url": "https://a.example"}}]}', "welcome_attachments[0].link.title"),
        (b'{"welcome_attachments": [{"msgtype": "link", "link": {"title": "\\ud800", '
         b'"url": "https://a.example"}}]}', "welcome_attachments[0].link.title"),
        (b'{"welcome_attachments": [{"msgtype": "link", "link": {"title": 1e400, '
         b'"url": "https://a.example"}}]}', "finite"),
        (b'{"name": "x", "tag_ids": [NaN]}', "NaN"),
    ],
)  # fmt: skip
def test_the_api_answers_400_with_the_place(corp, make_code, django_user_model, body, reason):
    code = live_code_publish(live_code=make_code(mode="native"))
    before = list(LiveCode.objects.filter(pk=code.pk).values())
    api = APIClient()
    api.force_authenticate(member(django_user_model.objects.create_user(username="ops"), corp))
    response = api.patch(f"/api/v1/live-codes/{code.pk}/", data=body,
                         content_type="application/json", HTTP_ACCEPT_LANGUAGE="en")  # fmt: skip
    assert response.status_code == 400
    assert reason in response.json()["detail"]
    assert list(LiveCode.objects.filter(pk=code.pk).values()) == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("attachments", "message"),
    [
        ([{"x": "1"}], "a msgtype"),
        ([{"msgtype": ["link"], "link": {}}], "a msgtype"),
        ([{"msgtype": "link", "link": {"url": "https://a.example"}}], "title is needed."),
        ([{"msgtype": "image", "image": {"media_id": "M", "colour": "red"}}], "unknown fields"),
        ([{"msgtype": "image", "image": {"media_id": 7}}], "the fields are text"),
        ([{"msgtype": "image", "image": {"media_id": "M"}}] * 10, "At most 9"),
    ],
)
def test_the_api_checks_welcome_attachments_as_the_admin_rows_do(
    corp, make_code, django_user_model, attachments, message
):
    code = make_code(mode="native")
    api = APIClient()
    api.force_authenticate(member(django_user_model.objects.create_user(username="ops"), corp))
    response = api.patch(f"/api/v1/live-codes/{code.pk}/", {"welcome_attachments": attachments},
                         format="json", HTTP_ACCEPT_LANGUAGE="en")  # fmt: skip
    assert response.status_code == 400
    assert [message in error for error in response.json()["welcome_attachments"]] == [True]
    code.refresh_from_db()
    assert code.welcome_attachments == []


@pytest.mark.django_db
@pytest.mark.parametrize("chat_ids", ['["wr\\u0000"]', "[1e400]", '{"a": "\\ud800"}'])
def test_the_admin_refuses_unstorable_json_with_a_form_error(admin_client, corp, channel, chat_ids):
    response = admin_client.post(
        reverse("admin:channels_app_groupjoinway_add"),
        {"corp": corp.pk, "channel": channel.pk, "name": "进群码", "scene": 2,
         "chat_ids": chat_ids, "room_base_id": 1},
    )  # fmt: skip
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["chat_ids"]
    assert not GroupJoinWay.objects.exists()
