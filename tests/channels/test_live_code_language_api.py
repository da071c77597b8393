"""A live code's public title and customer language are written and read through the API; a
language outside settings.LANGUAGES is a 400 that names the field, nothing written."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from channels_app.models import LiveCode
from tests.tenancy import member

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(django_user_model, corp) -> APIClient:
    client = APIClient()
    client.force_login(member(django_user_model.objects.create_user(username="ops"), corp))
    return client


def _body(channel, **fields) -> dict:
    return {"corp": channel.corp.corp_id, "channel": channel.pk, "name": "内部 A组",
            "slug": "poster", "mode": "landing", **fields}  # fmt: skip


def test_a_code_takes_a_public_title_and_a_language(api, channel):
    body = _body(channel, public_title="618 会员专享", language="en")
    row = api.post("/api/v1/live-codes/", body, format="json").json()
    assert (row["public_title"], row["language"]) == ("618 会员专享", "en")
    code = LiveCode.objects.get()
    assert (code.title_for_customers, code.customer_language) == ("618 会员专享", "en")


def test_without_them_the_code_speaks_its_corps_language(api, channel):
    row = api.post("/api/v1/live-codes/", _body(channel), format="json").json()
    assert (row["public_title"], row["language"]) == ("", "")
    code = LiveCode.objects.get()
    assert (code.title_for_customers, code.customer_language) == ("内部 A组", "zh-hans")


def test_an_unknown_language_is_a_400(api, channel):
    response = api.post("/api/v1/live-codes/", _body(channel, language="fr"), format="json")
    assert (response.status_code, list(response.json())) == (400, ["language"])
    assert not LiveCode.objects.exists()
