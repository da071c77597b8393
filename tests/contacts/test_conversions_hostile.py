"""Hostile input on POST /api/v1/conversions/: a 400 with a reason and nothing written, never
a 500. (NUL only failed on PostgreSQL; years 1 and 9999 only on SQLite.)"""

from __future__ import annotations

import json

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from contacts.models import ConversionEvent
from tests.factories import CorpFactory
from tests.tenancy import member

pytestmark = pytest.mark.django_db

URL = "/api/v1/conversions/"


@pytest.fixture
def corp():
    return CorpFactory(corp_id="wwconv0000000001", time_zone="Asia/Shanghai")


@pytest.fixture
def api(django_user_model, corp) -> APIClient:
    user = member(django_user_model.objects.create_user(username="shop-sync"), corp)
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def _row(corp, **fields) -> dict:
    return {"corp_id": corp.corp_id, "external_id": "order-1", "kind": "order",
            "amount": "199.00", "occurred_at": "2026-06-18T20:30:00+08:00",
            "external_userid": "wmCUSTOMER01", **fields}  # fmt: skip


def _errors(response) -> list[dict]:
    assert response.status_code == 400, response.content
    assert ConversionEvent.objects.count() == 0
    return response.json()["errors"]


@pytest.mark.parametrize(
    "field", ["corp_id", "external_id", "kind", "custom_name", "currency", "external_userid",
              "unionid", "note", "occurred_at"],
)  # fmt: skip
def test_a_nul_in_any_field_is_a_row_error(api, corp, field):
    row = _row(corp, kind="custom", custom_name="试驾", unionid="oUNION01", note="备注")
    row[field] = row.get(field, "x")[:3] + "\x00" + row.get(field, "x")[3:]
    errors = _errors(api.post(URL, [row], format="json"))
    assert any(e["field"] == field and "NUL" in e["message"] for e in errors), errors


def test_a_nul_in_a_field_name_is_an_unknown_field(api, corp):
    errors = _errors(api.post(URL, [{**_row(corp), "no\x00te": "x"}], format="json"))
    assert [e["field"] for e in errors] == ["no\x00te"]


def test_json_nested_10000_deep_is_a_400(api, corp):
    # json.loads recursed until RecursionError, which DRF's parser let through: a 500.
    for body in ("[" * 10_000 + "]" * 10_000, '{"a":' * 10_000 + "1" + "}" * 10_000):
        response = api.post(URL, body, content_type="application/json")
        errors = _errors(response)
        assert errors[0]["row"] is None
        assert "嵌套层级过深" in errors[0]["message"]  # "nested too deeply", zh-hans first


def test_rows_nested_a_few_hundred_deep_are_row_errors(api, corp):
    deep = json.loads("[" * 500 + "]" * 500)
    errors = _errors(api.post(URL, [_row(corp, note=deep), deep], format="json"))
    assert {(e["row"], e["field"]) for e in errors} == {(0, "note"), (1, "non_field_errors")}


@pytest.mark.parametrize(
    "occurred_at",
    ["0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00", "9999-12-31T23:59:59-14:00",
     "1999-12-31T23:59:59+08:00", "2100-01-01T00:00:00"],
)  # fmt: skip
def test_an_occurred_at_outside_2000_to_2099_is_a_row_error(api, corp, occurred_at):
    # Year 1 in Shanghai is before year 1 in UTC: OverflowError on SQLite; PostgreSQL stored it.
    errors = _errors(api.post(URL, [_row(corp, occurred_at=occurred_at)], format="json"))
    assert [(e["row"], e["field"]) for e in errors] == [(0, "occurred_at")]
    assert "2000" in errors[0]["message"]


@pytest.mark.parametrize(
    "amount", ["1e400", '"1e400"', '"NaN"', '"Infinity"', "9" * 4000, '"-0.001"', "true", "[1]"]
)
def test_absurd_amounts_are_row_errors(api, corp, amount):
    body = json.dumps([_row(corp)]).replace('"199.00"', amount)  # raw JSON: 1e400 is inf
    errors = _errors(api.post(URL, body, content_type="application/json"))
    assert [e["field"] for e in errors] == ["amount"]


def test_a_number_of_more_than_4300_digits_is_a_400(api, corp):
    body = json.dumps([_row(corp)]).replace('"199.00"', "9" * 5000)
    errors = _errors(api.post(URL, body, content_type="application/json"))
    assert errors[0]["row"] is None


def test_a_nul_in_a_filter_of_the_list_is_a_400(api, corp):
    response = api.get(URL, {"external_userid": "wm\x00"})
    assert response.status_code == 400
