"""The issue's test: a scenario built through the sandbox (encrypted callbacks) and the API
(channels, live codes, costs, conversions), the report rebuilt by its command, and the figures
of /api/v1/reports/channels/ equal those recomputed from the raw API data."""

from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from contacts.services import staff_get_or_create
from scrm.wecom.sandbox.simulate import sandbox_customer_add

pytestmark = pytest.mark.django_db

CST = ZoneInfo("Asia/Shanghai")
FIRST, LAST = dt.date(2026, 11, 1), dt.date(2026, 11, 30)


def _all(api: APIClient, url: str, **params) -> list[dict]:
    """Every row of a paginated list."""
    rows, offset = [], 0
    while True:
        page = api.get(url, {**params, "limit": 200, "offset": offset}).json()
        rows += page["results"]
        if not page.get("next"):
            return rows
        offset += 200


def _day(text: str) -> dt.date:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(CST).date()


def test_the_channel_report_equals_the_figures_recomputed_from_the_raw_api_data(
    corp, sandbox_corp, post_event, admin_user
):
    api = APIClient()
    api.force_authenticate(admin_user)
    for userid in ("staff01", "staff02"):  # the members the sandbox corp has, known here
        staff_get_or_create(corp=corp, userid=userid)
    codes = {}
    for code, name in (("pyq_0012", "朋友圈广告"), ("xhs_618", "小红书")):
        channel = api.post("/api/v1/channels/", {"corp": corp.corp_id, "name": name,
                                                 "code": code}, format="json").json()  # fmt: skip
        live_code = api.post("/api/v1/live-codes/", {
            "corp": corp.corp_id, "channel": channel["id"], "name": name, "slug": code,
            "mode": "native", "pool": [{"staff": "staff01"}, {"staff": "staff02"}],
        }, format="json").json()  # fmt: skip
        published = api.post(f"/api/v1/live-codes/{live_code['id']}/publish/").json()
        codes[code] = published
    for code, amount in (("pyq_0012", "3000.00"), ("xhs_618", "900.00")):
        response = api.post("/api/v1/channel-costs/", {
            "corp": corp.corp_id, "channel": code, "start_date": "2026-10-20",
            "end_date": "2026-11-19", "amount": amount,
        }, format="json")  # fmt: skip
        assert response.status_code == 201, response.content

    rng = random.Random(11)
    customers = []
    for index in range(14):
        code = codes["pyq_0012" if index % 3 else "xhs_618"]
        moment = dt.datetime(2026, 10, 28, 9, tzinfo=CST) + dt.timedelta(days=index * 2.5)
        userid = ("staff01", "staff02")[index % 2]
        customer, follow, welcome = sandbox_customer_add(
            corp=sandbox_corp, userid=userid, rng=rng, state=code["state"],
            create_time=int(moment.timestamp()),
        )  # fmt: skip
        post_event("add_external_contact", follow.createtime, UserID=userid,
                   ExternalUserID=customer.external_userid, State=code["state"],
                   WelcomeCode=welcome)  # fmt: skip
        customers.append((customer.external_userid, userid, moment))
    for external_userid, userid, moment in customers[1::4]:  # some leave after two days
        post_event("del_follow_user", int((moment + dt.timedelta(days=2)).timestamp()),
                   UserID=userid, ExternalUserID=external_userid)  # fmt: skip
    orders = [
        {"corp_id": corp.corp_id, "external_id": f"o-{i}", "kind": kind,
         "amount": amount, "occurred_at": (moment + dt.timedelta(days=days)).isoformat(),
         "external_userid": external_userid}
        for i, ((external_userid, _u, moment), kind, amount, days) in enumerate([
            (customers[2], "order", "299.00", 1), (customers[2], "order", "99.00", 6),
            (customers[2], "refund", "50.00", 6.5), (customers[5], "order", "1999.00", 3),
            (customers[6], "order", "88.00", 9), (customers[9], "consult", None, 0.5),
        ])
    ]  # fmt: skip
    assert api.post("/api/v1/conversions/", orders, format="json").status_code == 201

    call_command("analytics_rebuild", corp=corp.corp_id, since=dt.date(2026, 10, 1))
    report = api.get("/api/v1/reports/channels/", {
        "corp": corp.corp_id, "from": FIRST.isoformat(), "to": LAST.isoformat(), "window": 7,
    }).json()  # fmt: skip
    got = {row["key"]: row for row in report["rows"]}

    # The same figures from the raw API data, by the definitions.
    channels = {c["id"]: c for c in _all(api, "/api/v1/channels/")}
    expected: dict = defaultdict(lambda: defaultdict(Decimal))
    for attribution in _all(api, "/api/v1/attributions/"):
        if FIRST <= _day(attribution["added_at"]) <= LAST:
            channel_id = next(k for k, c in channels.items() if c["code"] == attribution["channel"])
            expected[channel_id]["adds"] += 1
    first_adds = {}
    for contact in _all(api, "/api/v1/contacts/"):
        first = contact["first_source"]
        first_adds[contact["external_userid"]] = first
        if FIRST <= _day(first["added_at"]) <= LAST:
            expected[first["channel_id"]]["new_customers"] += 1
    for conversion in _all(api, "/api/v1/conversions/"):
        first = first_adds[conversion["external_userid"]]
        added = dt.datetime.fromisoformat(first["added_at"].replace("Z", "+00:00"))
        at = dt.datetime.fromisoformat(conversion["occurred_at"].replace("Z", "+00:00"))
        in_window = added <= at < added + dt.timedelta(days=7)
        if FIRST <= _day(first["added_at"]) <= LAST and in_window:
            sign = {"order": 1, "refund": -1}.get(conversion["kind"], 0)
            amount = abs(Decimal(conversion["amount"] or 0))
            expected[first["channel_id"]]["revenue"] += sign * amount
    for cost in _all(api, "/api/v1/channel-costs/"):
        start, end = (
            dt.date.fromisoformat(cost["start_date"]),
            dt.date.fromisoformat(cost["end_date"]),
        )
        span = (end - start).days + 1
        inside = sum(1 for i in range(span) if FIRST <= start + dt.timedelta(days=i) <= LAST)
        channel_id = next(k for k, c in channels.items() if c["code"] == cost["channel"])
        expected[channel_id]["cost"] += Decimal(cost["amount"]) * inside / span

    assert set(got) == set(expected)
    for channel_id, figures in expected.items():
        row = got[channel_id]
        assert row["adds"] == figures["adds"]
        assert row["new_customers"] == figures["new_customers"]
        assert Decimal(row["revenue"]) == figures["revenue"].quantize(Decimal("0.01"))
        assert abs(Decimal(row["cost"]) - figures["cost"]) < Decimal("0.01")
    assert sum(row["lost"] for row in got.values()) == 3  # customers 1, 5 and 9 left in November
    assert report["totals"]["adds"] == sum(f["adds"] for f in expected.values())
