"""The issue's test: a month built through the sandbox (visitors scanning a landing code on a
live server, customers adding, deleting and being removed, every event an encrypted callback
sent when WeCom would send it) and the API (channels, live codes, costs, conversions), rebuilt
by the command; then every figure of every row and of the totals of /api/v1/reports/channels/,
by channel, live code, staff member and channel type, any touch and first touch, window 7 and
30, equals the one recomputed here from the raw API answers by the written definitions
(analytics/definitions.py)."""

from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import pytest
import requests
import time_machine
from django.core.management import call_command
from rest_framework.test import APIClient

from contacts.services import staff_get_or_create
from scrm.wecom.sandbox.models import SandboxCorp, SandboxCustomer, SandboxFollow
from scrm.wecom.sandbox.simulate import (
    MOBILE_UA,
    callback_url_for,
    deliver,
    event_xml,
    sandbox_customer_add,
    sandbox_follow_add,
    sandbox_follow_delete,
    simulate_scans,
)

# The landing page and the callbacks are served by the live server, in its own connections.
pytestmark = pytest.mark.django_db(transaction=True)

CST = ZoneInfo("Asia/Shanghai")
FIRST, LAST = dt.date(2026, 11, 1), dt.date(2026, 11, 30)
AS_OF = dt.datetime(2026, 12, 5, 10, tzinfo=CST)  # when the rollups are rebuilt
RATE, CENT = Decimal("0.0001"), Decimal("0.01")
ENDED = ("deleted_by_customer", "deleted_by_staff")


def _cst(month: int, day: int, hour: int = 10, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=CST)


# -- the sandbox's side: what customers and staff do in WeCom, told as WeCom tells it ----------


class _WeCom:
    """The sandbox corp's customers and members; each change is made on WeCom's side and its
    callback delivered, encrypted, to the live server at the change's own time."""

    def __init__(self, sandbox_corp: SandboxCorp, url: str) -> None:
        self.corp, self.url = sandbox_corp, callback_url_for(sandbox_corp, url)
        self.rng = random.Random(11)

    def _deliver(self, change_type: str, at: dt.datetime, **fields: str) -> None:
        create_time = int(at.timestamp())
        xml = event_xml(self.corp.corp_id, change_type, create_time, **fields)
        customer = fields["ExternalUserID"]
        status = deliver(self.corp, xml, self.url, change_type=change_type,
                         external_userid=customer, create_time=create_time)  # fmt: skip
        assert status == 200, (change_type, fields)

    def add(self, userid: str, state: str, at: dt.datetime, customer: str = "") -> str:
        """A new customer (or `customer` again) adds member `userid` through `state`."""
        with time_machine.travel(at, tick=True):
            if customer:
                known = SandboxCustomer.objects.get(corp=self.corp, external_userid=customer)
                sandbox_follow_add(customer=known, userid=userid, state=state,
                                   createtime=int(at.timestamp()))  # fmt: skip
                welcome = {}
            else:
                added, _follow, code = sandbox_customer_add(
                    corp=self.corp, userid=userid, rng=self.rng, state=state,
                    create_time=int(at.timestamp()),
                )  # fmt: skip
                customer, welcome = added.external_userid, {"WelcomeCode": code}
            self._deliver("add_external_contact", at, UserID=userid, ExternalUserID=customer,
                          State=state, **welcome)  # fmt: skip
        return customer

    def end(
        self, customer: str, at: dt.datetime, *, by_staff: bool = False, userid: str = ""
    ) -> None:
        """The customer deletes its member (del_follow_user), or the member removes the
        customer (del_external_contact); the member is `userid`, else the customer's only one."""
        if not userid:
            userid = SandboxFollow.objects.get(customer__external_userid=customer).userid
        with time_machine.travel(at, tick=True):
            assert sandbox_follow_delete(corp=self.corp, external_userid=customer, userid=userid)
            change = "del_external_contact" if by_staff else "del_follow_user"
            self._deliver(change, at, UserID=userid, ExternalUserID=customer)

    def scans(self, slug: str, at: dt.datetime, scans: int, seed: int) -> list[str]:
        """Visitors, each with a phone of its own, scan the landing code; most add."""
        with time_machine.travel(at, tick=True):
            report = simulate_scans(corp_id=self.corp.corp_id, slug=slug, scans=scans,
                                    no_add=0.3, url=self.url, seed=seed)  # fmt: skip
        assert report.scans == scans
        assert report.answered_200 == report.deliveries == len(report.customers)
        return report.customers

    def phone_visit(self, slug: str, at: dt.datetime, phone: str) -> None:
        """One known phone opens the landing link and leaves without adding; its scans say
        which phone it is (utm_content), so its visits can be told apart in the API."""
        base = self.url.split("/wecom/callback/", 1)[0]
        with time_machine.travel(at, tick=True):
            page = requests.get(f"{base}/l/{slug}/", timeout=10,
                                params={"utm_source": "sandbox", "utm_content": phone},
                                headers={"User-Agent": f"{MOBILE_UA} Build/{phone}",
                                         "X-Forwarded-For": "198.19.0.7"})  # fmt: skip
        assert page.status_code == 200


def _scenario(api: APIClient, corp, wecom: _WeCom) -> None:
    """Three channels of three types: a Moments ad (native code), Xiaohongshu (landing code,
    default type) and a store (native code, no cost); costs partly outside the period; adds,
    re-adds, deletions, removals, consults, orders and a refund on and around the period's
    edges (local days: 07:00 in Shanghai is the day before in UTC)."""
    for userid in ("staff01", "staff02", "staff03"):  # the sandbox corp's members
        staff_get_or_create(corp=corp, userid=userid)
    codes = {}
    for code, name, channel_type, mode, pool in (
        ("pyq_0012", "朋友圈广告", 2, "native", ["staff01", "staff02"]),
        ("xhs_618", "小红书", 0, "landing", ["staff01", "staff02", "staff03"]),
        ("store_nj01", "南京门店", 1, "native", ["staff03"]),
    ):
        channel = api.post("/api/v1/channels/", {"corp": corp.corp_id, "name": name,
                                                 "code": code, "channel_type": channel_type},
                           format="json").json()  # fmt: skip
        live_code = api.post("/api/v1/live-codes/", {
            "corp": corp.corp_id, "channel": channel["id"], "name": name,
            "slug": code.replace("_", ""), "mode": mode,
            "pool": [{"staff": userid} for userid in pool],
        }, format="json").json()  # fmt: skip
        codes[code] = api.post(f"/api/v1/live-codes/{live_code['id']}/publish/").json()
    costs = [("pyq_0012", "2026-10-20", "2026-11-19", "3100.00"),
             ("pyq_0012", "2026-11-25", "2026-11-26", "200.00"),
             ("xhs_618", "2026-10-01", "2026-12-31", "900.00")]  # fmt: skip
    response = api.post("/api/v1/channel-costs/", [
        {"corp": corp.corp_id, "channel": code, "start_date": start, "end_date": end,
         "amount": amount} for code, start, end, amount in costs
    ], format="json")  # fmt: skip
    assert response.status_code == 201, response.content
    pyq, store = (codes[c]["state"] for c in ("pyq_0012", "store_nj01"))
    slug = codes["xhs_618"]["slug"]

    # Scans through the landing code: before the period, on its first day (in UTC still
    # October 31) and on November 20; a returning phone, again on another day.
    october = wecom.scans(slug, _cst(10, 31, 23, 30), 3, seed=1)
    early = wecom.scans(slug, _cst(11, 1, 7), 7, seed=2)
    wecom.phone_visit(slug, _cst(11, 1, 7, 20), "phone-1")
    wecom.phone_visit(slug, _cst(11, 1, 7, 30), "phone-1")  # within 30 minutes: reused
    late = wecom.scans(slug, _cst(11, 20, 15), 5, seed=3)
    wecom.phone_visit(slug, _cst(11, 20, 16), "phone-1")  # the same visitor, another day
    assert all((october, early, late))

    # Native adds, each on its own time.
    before = wecom.add("staff01", pyq, _cst(10, 25, 11))  # a customer before the period
    a = wecom.add("staff01", pyq, _cst(11, 1, 0, 10))  # the period's first minutes
    b = wecom.add("staff02", pyq, _cst(11, 3, 9))
    c = wecom.add("staff03", store, _cst(11, 4, 12))
    d = wecom.add("staff01", pyq, _cst(11, 15, 20))
    e = wecom.add("staff03", store, _cst(11, 30, 23, 50))  # the period's last minutes
    g = wecom.add("staff02", pyq, _cst(11, 1, 9))
    wecom.add("staff01", pyq, _cst(12, 1, 6))  # after the period (in UTC still November 30)
    wecom.add("staff02", store, _cst(11, 10), customer=a)  # a comes back to another member
    wecom.add("staff03", pyq, _cst(11, 22), customer=early[2])  # a landing customer's 2nd add

    wecom.end(before, _cst(11, 3))  # lost in the period, credited to October's add
    wecom.end(october[0], _cst(11, 1, 0, 30))
    wecom.end(a, _cst(11, 4), userid="staff01")  # a stays a customer through staff02
    wecom.end(b, _cst(11, 10), by_staff=True)
    wecom.end(d, _cst(11, 16))
    wecom.end(g, _cst(12, 1, 9))  # exactly 30 days after its add: not retained
    wecom.end(early[0], _cst(11, 2), by_staff=True)
    wecom.end(early[1], _cst(11, 25))
    wecom.end(late[0], _cst(11, 21), by_staff=True)

    first_adds = {a: _cst(11, 1, 0, 10), b: _cst(11, 3, 9), c: _cst(11, 4, 12),
                  e: _cst(11, 30, 23, 50)}  # fmt: skip
    rows = []
    for customer, kind, amount, after in (
        (a, "consult", None, dt.timedelta(hours=20)),
        (a, "order", "299.00", dt.timedelta(days=2)),
        (a, "order", "99.00", dt.timedelta(days=5)),
        (a, "refund", "50.00", dt.timedelta(days=6)),  # a refund sent positive counts negative
        (a, "order", "500.00", dt.timedelta(days=7)),  # window 30, not window 7
        (b, "consult", None, dt.timedelta(hours=72)),  # too late by the 72 hours' end
        (c, "order", "1999.00", dt.timedelta(days=1)),
        (e, "order", "88.00", dt.timedelta(days=2)),  # in December, in its window
        (before, "order", "66.00", dt.timedelta(days=8)),  # a cohort outside the period
    ):
        at = first_adds.get(customer, _cst(10, 25, 11)) + after
        rows.append({"corp_id": corp.corp_id, "external_id": f"o-{len(rows)}", "kind": kind,
                     "amount": amount, "occurred_at": at.isoformat(),
                     "external_userid": customer})  # fmt: skip
    contacts = api.get("/api/v1/contacts/", {"limit": 1000}).json()["results"]
    first_added = {c["external_userid"]: c["first_source"]["added_at"] for c in contacts}
    for index, (customer, kind, amount, hours) in enumerate((
        (early[2], "consult", None, 71),
        (early[2], "order", "120.00", 30),
        (early[2], "order", "30.00", 24 * 20),
        (late[1], "order", "45.50", 3),
    )):  # fmt: skip
        at = _moment(first_added[customer]) + dt.timedelta(hours=hours)
        rows.append({"corp_id": corp.corp_id, "external_id": f"l-{index}", "kind": kind,
                     "amount": amount, "occurred_at": at.isoformat(),
                     "external_userid": customer})  # fmt: skip
    response = api.post("/api/v1/conversions/", rows, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["matched"] == len(rows)


# -- the raw API answers and the figures recomputed from them ---------------------------------


def _all(api: APIClient, url: str, **params: Any) -> list[dict]:
    """Every row of a paginated list, following `next` (small pages: several of them)."""
    rows: list[dict] = []
    page = api.get(url, {**params, "limit": 10}).json()
    while True:
        rows += page["results"]
        if page["next"] is None:
            return rows
        page = api.get(page["next"]).json()


def _moment(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _inside(text: str) -> bool:
    return FIRST <= _moment(text).astimezone(CST).date() <= LAST


def _rate(numerator: Any, denominator: Any, places: Decimal = RATE) -> Decimal | None:
    if numerator is None or not denominator:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(places)


class Credit(NamedTuple):
    """Whom a fact is credited to: its channel (id), live code (id) and staff (UserID)."""

    channel: int | None
    live_code: int | None
    staff: str | None


class Raw:
    """The corp's raw data as the API gives it."""

    def __init__(self, api: APIClient, corp_id: str) -> None:
        self.channels = _all(api, "/api/v1/channels/", corp=corp_id)
        self.live_codes = _all(api, "/api/v1/live-codes/", corp=corp_id)
        self.contacts = _all(api, "/api/v1/contacts/", corp=corp_id)
        self.attributions = _all(api, "/api/v1/attributions/", corp=corp_id)
        self.conversions = _all(api, "/api/v1/conversions/", corp=corp_id)
        self.costs = _all(api, "/api/v1/channel-costs/", corp=corp_id)
        self.scans = _all(api, "/api/v1/scans/", corp=corp_id)
        self.channel_id = {c["code"]: c["id"] for c in self.channels}
        self.channel_type = {c["id"]: c["channel_type"] for c in self.channels}
        # A staff member's row is named by the member's name, else the UserID.
        self.staff_name = {
            r["staff"]: r["staff_name"] or r["staff"] for c in self.contacts for r in c["relations"]
        }


def _group_key(raw: Raw, group_by: str) -> Callable[[Credit], Any]:
    return {
        "channel": lambda credit: credit.channel,
        "live_code": lambda credit: credit.live_code,
        "staff": lambda credit: raw.staff_name.get(credit.staff) if credit.staff else None,
        "channel_type": lambda credit: (
            raw.channel_type[credit.channel] if credit.channel is not None else None
        ),
    }[group_by]


def _sums(raw: Raw, *, window: int, touch: str, as_of: dt.datetime, key: Callable) -> dict:
    """The summed figures per group (`key` of each fact's credit), by the definitions."""
    sums: dict = {}

    def count(credit: Credit, name: str, n: Any = 1) -> None:
        row = sums.setdefault(key(credit), defaultdict(Decimal, devices=set()))
        row[name] += n

    customers = {c["external_userid"]: c for c in raw.contacts}
    landing = {c["id"] for c in raw.live_codes if c["mode"] == "landing"}

    def first_touch(customer: str) -> Credit:
        source = customers[customer]["first_source"]
        return Credit(source["channel_id"], source["live_code_id"], source["staff"])

    def own(attribution: dict) -> Credit:
        return Credit(raw.channel_id.get(attribution["channel"]), attribution["live_code"],
                      attribution["staff"])  # fmt: skip

    for scan in raw.scans:  # a scan is its code's, whoever adds after it
        if _inside(scan["created_at"]):
            credit = Credit(raw.channel_id[scan["channel"]], scan["live_code"], scan["staff"])
            count(credit, "scans")
            # Each simulated visitor has a phone of its own; a known phone names itself.
            phone = scan["utm_content"] or f"scan-{scan['id']}"
            sums[key(credit)]["devices"].add(phone)
    for attribution in raw.attributions:
        if _inside(attribution["added_at"]):
            credit = first_touch(attribution["customer"]) if touch == "first" else own(attribution)
            count(credit, "adds")
            count(credit, "landing_adds", attribution["live_code"] in landing)
    for customer in raw.contacts:
        for relation in customer["relations"]:
            if relation["status"] not in ENDED or not _inside(relation["deleted_at"]):
                continue
            ended = max(
                (a for a in raw.attributions
                 if (a["customer"], a["staff"]) == (customer["external_userid"], relation["staff"])
                 and _moment(a["added_at"]) <= _moment(relation["deleted_at"])),
                key=lambda a: (_moment(a["added_at"]), a["id"]),
            )  # fmt: skip
            credit = own(ended)._replace(staff=relation["staff"])
            if touch == "first":
                credit = first_touch(customer["external_userid"])
            count(credit, "lost" if relation["status"] == "deleted_by_customer" else "removed")
    for customer in raw.contacts:
        source = customer["first_source"]
        if not _inside(source["added_at"]):
            continue
        credit, added = first_touch(customer["external_userid"]), _moment(source["added_at"])
        count(credit, "new_customers")
        after = [
            c for c in raw.conversions
            if c["external_contact"] == customer["id"] and _moment(c["occurred_at"]) >= added
        ]  # fmt: skip
        within = [c for c in after if _moment(c["occurred_at"]) < added + dt.timedelta(hours=72)]
        count(credit, "consult_72h", any(c["kind"] == "consult" for c in within))
        if added <= as_of - dt.timedelta(days=30):
            count(credit, "mature_30d")
            count(credit, "retained_30d", _live(customer, added + dt.timedelta(days=30)))
        in_window = [
            c for c in after if _moment(c["occurred_at"]) < added + dt.timedelta(days=window)
        ]
        orders = [c for c in in_window if c["kind"] == "order"]
        refunds = [c for c in in_window if c["kind"] == "refund"]
        count(credit, "revenue", sum(Decimal(c["amount"]) for c in orders)
              - sum(abs(Decimal(c["amount"])) for c in refunds))  # fmt: skip
        count(credit, "orders", len(orders))
        count(credit, "buyers", bool(orders))
        count(credit, "repeat_buyers", len(orders) >= 2)
    return sums


def _live(customer: dict, moment: dt.datetime) -> bool:
    """A live relation with the corp at `moment`: added by then, not ended by then."""
    return any(
        _moment(r["created_at"]) <= moment
        and (r["deleted_at"] is None or _moment(r["deleted_at"]) > moment)
        for r in customer["relations"]
    )


def _costs(raw: Raw, key: Callable[[int], Any]) -> dict[Any, Decimal]:
    """Each cost spread evenly over the days of its range; the days in the period summed."""
    costs: dict[Any, Decimal] = defaultdict(Decimal)
    for cost in raw.costs:
        start = dt.date.fromisoformat(cost["start_date"])
        span = (dt.date.fromisoformat(cost["end_date"]) - start).days + 1
        inside = sum(FIRST <= start + dt.timedelta(days=i) <= LAST for i in range(span))
        costs[key(raw.channel_id[cost["channel"]])] += Decimal(cost["amount"]) * inside / span
    return costs


def _figures(sums: dict, cost: Decimal | None) -> dict[str, Any]:
    """A row's figures from its sums, by the definitions; rates as the API prints them."""
    count = {name: int(sums[name]) for name in (
        "scans", "adds", "landing_adds", "new_customers", "lost", "removed", "consult_72h",
        "mature_30d", "retained_30d", "orders", "buyers", "repeat_buyers")}  # fmt: skip
    revenue = sums["revenue"].quantize(CENT)
    cost = cost.quantize(CENT) if cost is not None else None
    return {
        **{name: count[name] for name in ("scans", "adds", "new_customers", "lost", "removed",
                                          "orders", "buyers")},
        "visitors": len(sums["devices"]),
        "net_adds": count["adds"] - count["lost"] - count["removed"],
        "scan_to_add": _rate(count["landing_adds"], count["scans"]),
        "consult_72h_rate": _rate(count["consult_72h"], count["new_customers"]),
        "retained_30d_rate": _rate(count["retained_30d"], count["mature_30d"]),
        "pending_30d": count["new_customers"] - count["mature_30d"],
        "revenue": revenue,
        "repurchase_rate": _rate(count["repeat_buyers"], count["buyers"]),
        "cost": cost,
        "cost_per_new_customer": _rate(cost, count["new_customers"], CENT),
        "roi": _rate(revenue, cost) if cost else None,
    }  # fmt: skip


def _recomputed(raw: Raw, *, window: int, group_by: str, touch: str, as_of: dt.datetime):
    """The report's rows (by key) and totals, recomputed from the raw API answers."""
    key = _group_key(raw, group_by)
    sums = _sums(raw, window=window, touch=touch, as_of=as_of, key=key)
    has_cost = group_by in ("channel", "channel_type")
    costs = _costs(raw, lambda channel: key(Credit(channel, None, None))) if has_cost else {}
    empty = defaultdict(Decimal, devices=set())
    rows = {
        group: _figures(sums.get(group, empty),
                        costs.get(group, Decimal(0)) if has_cost and group is not None else None)
        for group in set(sums) | set(costs)
    }  # fmt: skip
    everything = _sums(raw, window=window, touch=touch, as_of=as_of, key=lambda _c: "all")
    totals = _figures(everything["all"], sum(_costs(raw, lambda _c: "all").values(), Decimal(0)))
    return rows, totals


def _as_printed(figures: dict[str, Any]) -> dict[str, Any]:
    """The API's figures as Decimals (money is a string, a rate a number) and integers."""
    return {
        name: Decimal(str(value)) if isinstance(value, (str, float)) else value
        for name, value in figures.items()
        if name not in ("key", "name", "budget_advice")
    }


def test_the_channel_report_equals_the_figures_recomputed_from_the_raw_api_data(
    corp, sandbox_corp, admin_user, live_server
):
    api = APIClient()
    api.force_authenticate(admin_user)
    _scenario(api, corp, _WeCom(sandbox_corp, live_server.url))
    with time_machine.travel(AS_OF, tick=False):
        call_command("analytics_rebuild", corp=corp.corp_id, since=dt.date(2026, 10, 1))

    raw = Raw(api, corp.corp_id)
    # The recomputation reads each relation's state as its whole history: no relation was
    # added twice here, so its deletion (if any) is the one that ended its only add.
    assert len(raw.attributions) == sum(len(c["relations"]) for c in raw.contacts)
    assert len(raw.scans) > 10  # more than a page: `next` followed
    assert sum(s["reused"] for s in raw.scans) == 1  # phone-1 came back within 30 minutes
    for group_by in ("channel", "live_code", "staff", "channel_type"):
        for touch in ("any", "first"):
            for window in (7, 30):
                params = {"corp": corp.corp_id, "from": FIRST.isoformat(), "to": LAST.isoformat(),
                          "window": window, "group_by": group_by, "touch": touch}  # fmt: skip
                report = api.get("/api/v1/reports/channels/", params).json()
                assert report["days_not_computed"] == []
                as_of = _moment(report["computed_at"])  # the retention's as-of time
                assert as_of == AS_OF
                rows, totals = _recomputed(raw, window=window, group_by=group_by, touch=touch,
                                           as_of=as_of)  # fmt: skip
                by = "name" if group_by == "staff" else "key"  # staff rows: by their names
                got = {row[by]: _as_printed(row) for row in report["rows"]}
                assert set(got) == set(rows), params
                for group, figures in rows.items():
                    assert got[group] == figures, (params, group)
                assert _as_printed(report["totals"]) == totals, params

    # The scenario reaches every figure: none of these is zero or null in the totals.
    assert all(totals[name] for name in totals), totals
    assert totals["retained_30d_rate"] < 1
    assert totals["pending_30d"] > 0
    assert totals["visitors"] < totals["scans"]
