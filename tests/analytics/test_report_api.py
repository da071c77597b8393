"""GET /api/v1/reports/channels/ and /daily/: the report classes' figures as JSON, money as
decimal strings, rates as numbers in 0..1 or null; bad parameters are a 400 with a reason."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from analytics.rollups import rollups_rebuild
from channels_app.models import Channel, ChannelCost
from scrm.wecom.models import Corp
from tests.analytics.test_reports import FIRST, LAST, NOW, _add, _at, _codes, _convert

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(admin_user) -> APIClient:
    client = APIClient()
    client.force_authenticate(admin_user)
    return client


@pytest.fixture
def month(corp):
    codes = _codes(corp)
    ChannelCost.objects.create(corp=corp, channel=codes["pyq"].channel, start_date=FIRST,
                               end_date=LAST, amount=Decimal("3100"))  # fmt: skip
    _add(corp, "wm-a", "staff01", codes["pyq"].state, _at(2))
    _add(corp, "wm-b", "staff02", codes["pyq"].state, _at(3))
    _convert(corp, "wm-a", "order", _at(4), "620.50")
    rollups_rebuild(corp=corp, first=FIRST, last=LAST, now=NOW)
    return codes


def _query(of_corp, **extra) -> dict:
    return {"corp": of_corp.corp_id, "from": "2026-10-01", "to": "2026-10-31", **extra}


def test_the_channel_report_as_json(api, corp, month):
    response = api.get("/api/v1/reports/channels/", _query(corp, window=7))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["window"] == 7
    assert body["computed_at"] is not None
    assert body["days_not_computed"] == []
    (row,) = body["rows"]
    assert (row["key"], row["name"]) == (month["pyq"].channel_id, "pyq")
    assert (row["adds"], row["new_customers"], row["buyers"]) == (2, 2, 1)
    assert (row["revenue"], row["cost"], row["cost_per_new_customer"]) == (
        "620.50", "3100.00", "1550.00",
    )  # fmt: skip
    assert row["roi"] == 0.2002  # a number, not a string
    assert row["scan_to_add"] is None  # a native code: no scans, no rate
    assert body["totals"]["adds"] == 2
    assert "key" not in body["totals"]


def test_group_by_staff_and_the_daily_trend(api, corp, month):
    by_staff = api.get("/api/v1/reports/channels/", _query(corp, group_by="staff")).json()
    assert sorted((r["name"], r["adds"], r["cost"]) for r in by_staff["rows"]) == [
        ("staff01", 1, None), ("staff02", 1, None),  # staff have no cost of their own
    ]  # fmt: skip
    daily = api.get("/api/v1/reports/daily/", _query(corp)).json()
    assert len(daily["rows"]) == 31
    assert [(r["key"], r["adds"]) for r in daily["rows"][:4]] == [
        ("2026-10-01", 0), ("2026-10-02", 1), ("2026-10-03", 1), ("2026-10-04", 0),
    ]  # fmt: skip
    assert daily["rows"][0]["cost"] == "100.00"  # 3,100 over the 31 days of October


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"window": 10}, "window"),
        ({"group_by": "moon"}, "group_by"),
        ({"from": "2026-10-31", "to": "2026-10-01"}, "detail"),
        ({"from": "2026-13-01"}, "from"),
        ({"corp": "wwnobody"}, "corp"),
    ],
)
def test_bad_parameters_are_a_400_with_the_reason(api, corp, month, extra, field):
    response = api.get("/api/v1/reports/channels/", _query(corp, **extra))
    assert response.status_code == 400
    assert field in response.json()


def test_reports_need_a_login(corp):
    response = APIClient().get("/api/v1/reports/daily/", _query(corp))
    assert response.status_code in (401, 403)


def test_a_long_period_is_answered_in_a_fixed_number_of_queries(
    api, corp, month, django_assert_max_num_queries
):
    rollups_rebuild(corp=corp, first=dt.date(2026, 1, 1), last=LAST, now=NOW)
    # session, user, corp, then the report's own queries (see test_reports)
    with django_assert_max_num_queries(14):
        response = api.get("/api/v1/reports/channels/", _query(corp, **{"from": "2026-01-01"}))
    assert response.status_code == 200


def test_drill_down_to_one_channel_or_live_code(api, corp, month):
    _add(corp, "wm-x", "staff03", month["xhs"].state, _at(5))
    rollups_rebuild(corp=corp, first=FIRST, last=LAST, now=NOW)
    everything = api.get("/api/v1/reports/channels/", _query(corp)).json()
    assert {row["name"] for row in everything["rows"]} == {"pyq", "xhs"}
    query = _query(corp, channel=month["pyq"].channel_id, group_by="staff")
    one = api.get("/api/v1/reports/channels/", query).json()
    assert sorted((row["name"], row["adds"]) for row in one["rows"]) == [
        ("staff01", 1), ("staff02", 1),
    ]  # fmt: skip
    code = api.get("/api/v1/reports/daily/", _query(corp, live_code=month["xhs"].pk)).json()
    assert code["totals"]["adds"] == 1
    assert code["totals"]["cost"] is None  # a live code has no cost of its own


def test_a_drill_down_outside_the_corp_is_a_400(api, corp, month):
    other_corp = Corp.objects.create(corp_id="wwother", name="其他", secret="s",
                                      callback_token="t", encoding_aes_key="k" * 43)  # fmt: skip
    stranger = Channel.objects.create(corp=other_corp, name="theirs", code="theirs_1")
    response = api.get("/api/v1/reports/channels/", _query(corp, channel=stranger.pk))
    assert response.status_code == 400
    assert response.json()["channel"] == ["所选企业中没有这个渠道。"]  # zh-hans first
    response = api.get(
        "/api/v1/reports/channels/",
        _query(corp, channel=month["pyq"].channel_id, live_code=month["xhs"].pk),
    )
    assert response.status_code == 400
    assert "live_code" in response.json()
