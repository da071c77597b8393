"""Who may do what in the API: roles x corps x every endpoint under /api/v1/.

The endpoints are read from the URL configuration (routers included), with the HTTP methods
each view answers; every one must have a line in ENDPOINTS, so a new endpoint (or a new method
or action on an old one) fails this suite until its expectation is written down here.

Two corps, A and B, each with real rows of every kind. The callers: the admin, the operator and
the manager of A (each through an API token: tokens act as their user), a signed-in user with
no membership, a superuser, and an anonymous client. Each asks every endpoint and method about
A's rows and about B's:
- anonymous: 401/403; no membership: 403, whatever the corp;
- superuser: the endpoint's success answer for both corps;
- admin and operator of A: success in A; B's rows are a 404, lists show none of B's rows, a
  write naming corp B (or its rows) is a 400 "unknown", a report or leaderboard of B a 400
  that reads exactly as for a corp that does not exist;
- manager of A: reads as the admin; every write a 403 (A or B).
Each request runs in a transaction rolled back afterwards, so every caller meets the same rows.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from analytics.models import Breakdown, ExportJob
from channels_app.models import Attribution, Channel, ChannelCost, LiveCode, ReferralCode, Scan
from channels_app.services.live_codes import live_code_create
from contacts.models import ConversionEvent, ExternalContact
from contacts.services import staff_get_or_create
from scrm.wecom.models import Corp
from scrm.wecom.sandbox.simulate import sandbox_corp_setup
from scrm.wecom.services import corp_create
from tests.factories import ExternalContactFactory, FollowRelationFactory
from tests.tenancy import member

pytestmark = pytest.mark.django_db

API = "/api/v1/"
METHODS = ("get", "post", "put", "patch", "delete")
DAY = dt.date(2026, 11, 1)


# -- the URL configuration's endpoints ---------------------------------------------------------


def _walk(patterns: list, prefix: str = "") -> list[tuple[str, URLPattern]]:
    found = []
    for pattern in patterns:
        path = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            found += _walk(pattern.url_patterns, path)
        else:
            found.append((path, pattern))
    return found


def pattern_methods(pattern: URLPattern) -> set[str]:
    """The HTTP methods an API route's view answers."""
    callback = pattern.callback
    actions = getattr(callback, "actions", None)
    if actions is not None:  # a viewset route: its methods are mapped to actions
        # (HEAD is GET's: DRF adds it to `actions` once a GET has been served)
        return set(actions) & set(METHODS)
    view = callback.cls
    return {method for method in METHODS if hasattr(view, method)}


def api_endpoints() -> set[tuple[str, str]]:
    """(URL name, HTTP method) of every view routed under /api/v1/."""
    endpoints = set()
    for path, pattern in _walk(get_resolver().url_patterns):
        if not path.lstrip("^").startswith(API.lstrip("/")):
            continue
        assert pattern.name, f"an API route without a name: {path}"
        endpoints |= {(pattern.name, method) for method in pattern_methods(pattern)}
    return endpoints


# -- two corps with a row of every kind --------------------------------------------------------


@dataclass
class World:
    corp: Corp
    channel: Channel
    spare_channel: Channel  # without codes: deletable
    cost: ChannelCost
    code: LiveCode  # a draft landing code with a pool
    active_code: LiveCode  # an active code: pausable
    spare_code: LiveCode  # a draft without scans: deletable
    contact: ExternalContact
    scan: Scan
    attribution: Attribution
    referral: ReferralCode
    conversion: ConversionEvent
    jobs: dict[int | None, ExportJob] = field(default_factory=dict)  # by the user who asked


def _world(corp_id: str, suffix: str) -> World:
    sandbox = sandbox_corp_setup(corp_id=corp_id, name=f"企业{suffix}", members=3)
    corp = corp_create(
        corp_id=corp_id, name=sandbox.name, secret=sandbox.secret,
        callback_token=sandbox.callback_token, encoding_aes_key=sandbox.encoding_aes_key,
    )  # fmt: skip
    staff = [staff_get_or_create(corp=corp, userid=f"staff0{i}") for i in (1, 2, 3)]
    channel = Channel.objects.create(corp=corp, name="朋友圈", code="pyq_1", channel_type=2)
    spare_channel = Channel.objects.create(corp=corp, name="备用", code="spare_1")
    pool = [{"staff": member_staff} for member_staff in staff]

    def code(slug: str, **fields: Any) -> LiveCode:
        return live_code_create(corp=corp, channel=channel, name=slug, slug=f"{slug}-{suffix}",
                                mode="landing", pool=pool, **fields)  # fmt: skip

    main, active, spare = code("poster"), code("active"), code("spare")
    LiveCode.objects.filter(pk=active.pk).update(
        status=LiveCode.Status.ACTIVE, published_at=timezone.now()
    )
    contact = ExternalContactFactory(corp=corp, external_userid=f"wm-customer-{suffix}")
    relation = FollowRelationFactory(external_contact=contact, staff=staff[0])
    scan = Scan.objects.create(corp=corp, live_code=main, ip_hash="f" * 32, device_key="d" * 32,
                               device="mobile")  # fmt: skip
    return World(
        corp=corp,
        channel=channel,
        spare_channel=spare_channel,
        cost=ChannelCost.objects.create(
            corp=corp, channel=channel, start_date=DAY, end_date=DAY, amount=100
        ),
        code=main,
        active_code=active,
        spare_code=spare,
        contact=contact,
        scan=scan,
        attribution=Attribution.objects.get(follow_relation=relation),
        referral=ReferralCode.objects.create(
            corp=corp, live_code=main, referrer=contact, token=f"tok{suffix}"
        ),
        conversion=ConversionEvent.objects.create(
            corp=corp,
            external_id="order-1",
            kind="consult",
            occurred_at=dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
        ),
    )


def _job(world: World, user: Any) -> ExportJob:
    """A finished export of `world`'s corp asked by `user` (one per user and corp)."""
    key = getattr(user, "pk", None)
    if key not in world.jobs:
        name = default_storage.save(f"exports/{world.corp.pk}/t.csv", ContentFile(b"a,b\n"))
        world.jobs[key] = ExportJob.objects.create(
            corp=world.corp, created_by=user, report="daily", format="csv",
            status=ExportJob.Status.DONE, file=name, filename="t.csv",
            params={"first": "2026-11-01", "last": "2026-11-01", "window": 30,
                    "group_by": "channel", "channel_type": None, "channel_group": ""},
        )  # fmt: skip
    return world.jobs[key]


# -- what each endpoint is asked, and what success is ------------------------------------------

# The kinds of request, which decide what a caller of corp A meets in corp B:
ROOT = "root"  # not about a corp
LIST = "list"  # a list: ?corp=B lists nothing of B's, no parameter lists none of B's rows
OBJECT = "object"  # one row (or an action on it): B's is a 404
CREATE = "create"  # a write naming the corp in its body: B is "unknown", 400
QUERY = "query"  # a report of ?corp=: B is "unknown", 400, as a corp that does not exist


@dataclass(frozen=True)
class Call:
    kind: str
    url: Callable[[World, Any], str]
    body: Callable[[World], Any] | None = None
    ok: frozenset[int] = frozenset({200})


def _detail(name: str, row: str) -> Callable[[World, Any], str]:
    return lambda world, user: reverse(name, kwargs={"pk": getattr(world, row).pk})


def _list(name: str) -> Callable[[World, Any], str]:
    return lambda world, user: f"{reverse(name)}?corp={world.corp.corp_id}"


def _report(name: str) -> Callable[[World, Any], str]:
    return lambda world, user: (
        f"{reverse(name)}?corp={world.corp.corp_id}&from=2026-11-01&to=2026-11-07"
    )


def _job_url(name: str) -> Callable[[World, Any], str]:
    return lambda world, user: reverse(name, kwargs={"pk": _job(world, user).pk})


CREATED = frozenset({201})
GONE = frozenset({204})


def _channel_body(world: World) -> dict:
    return {"corp": world.corp.corp_id, "name": "新渠道", "code": "new_1"}


def _cost_body(world: World) -> dict:
    return {"corp": world.corp.corp_id, "channel": world.channel.code,
            "start_date": "2026-11-02", "end_date": "2026-11-03", "amount": "50.00"}  # fmt: skip


def _code_body(world: World) -> dict:
    return {"corp": world.corp.corp_id, "channel": world.channel.pk, "name": "新活码",
            "slug": f"new-{world.corp.pk}", "mode": "landing"}  # fmt: skip


ENDPOINTS: dict[tuple[str, str], Call] = {
    ("api-root", "get"): Call(ROOT, lambda world, user: reverse("api-root")),
    # customers
    ("contact-list", "get"): Call(LIST, _list("contact-list")),
    ("contact-detail", "get"): Call(OBJECT, _detail("contact-detail", "contact")),
    ("contact-timeline", "get"): Call(OBJECT, _detail("contact-timeline", "contact")),
    # conversions
    ("conversion-list", "get"): Call(LIST, _list("conversion-list")),
    ("conversion-list", "post"): Call(
        CREATE,
        lambda world, user: reverse("conversion-list"),
        lambda world: [
            {
                "corp_id": world.corp.corp_id,
                "external_id": "order-new",
                "kind": "consult",
                "occurred_at": "2026-11-02T10:00:00+08:00",
                "external_userid": world.contact.external_userid,
            }
        ],
        CREATED,
    ),
    # channels
    ("channel-list", "get"): Call(LIST, _list("channel-list")),
    ("channel-list", "post"): Call(
        CREATE, lambda world, user: reverse("channel-list"), _channel_body, CREATED
    ),
    ("channel-detail", "get"): Call(OBJECT, _detail("channel-detail", "channel")),
    ("channel-detail", "put"): Call(
        OBJECT,
        _detail("channel-detail", "channel"),
        lambda world: {**_channel_body(world), "code": world.channel.code},
    ),
    ("channel-detail", "patch"): Call(
        OBJECT, _detail("channel-detail", "channel"), lambda world: {"name": "改名"}
    ),
    ("channel-detail", "delete"): Call(OBJECT, _detail("channel-detail", "spare_channel"), ok=GONE),
    # channel costs
    ("channel-cost-list", "get"): Call(LIST, _list("channel-cost-list")),
    ("channel-cost-list", "post"): Call(
        CREATE, lambda world, user: reverse("channel-cost-list"), _cost_body, CREATED
    ),
    ("channel-cost-detail", "get"): Call(OBJECT, _detail("channel-cost-detail", "cost")),
    ("channel-cost-detail", "put"): Call(
        OBJECT, _detail("channel-cost-detail", "cost"), _cost_body
    ),
    ("channel-cost-detail", "patch"): Call(
        OBJECT, _detail("channel-cost-detail", "cost"), lambda world: {"amount": "75.00"}
    ),
    ("channel-cost-detail", "delete"): Call(
        OBJECT, _detail("channel-cost-detail", "cost"), ok=GONE
    ),
    # live codes
    ("live-code-list", "get"): Call(LIST, _list("live-code-list")),
    ("live-code-list", "post"): Call(
        CREATE, lambda world, user: reverse("live-code-list"), _code_body, CREATED
    ),
    ("live-code-detail", "get"): Call(OBJECT, _detail("live-code-detail", "code")),
    ("live-code-detail", "put"): Call(
        OBJECT,
        _detail("live-code-detail", "code"),
        lambda world: {**_code_body(world), "slug": world.code.slug, "name": "改名"},
    ),
    ("live-code-detail", "patch"): Call(
        OBJECT, _detail("live-code-detail", "code"), lambda world: {"name": "改名"}
    ),
    ("live-code-detail", "delete"): Call(
        OBJECT, _detail("live-code-detail", "spare_code"), ok=GONE
    ),
    ("live-code-publish", "post"): Call(
        OBJECT, _detail("live-code-publish", "code"), lambda world: {}
    ),
    ("live-code-pause", "post"): Call(
        OBJECT, _detail("live-code-pause", "active_code"), lambda world: {}
    ),
    ("live-code-qr", "get"): Call(OBJECT, _detail("live-code-qr", "active_code")),
    # scans and attributions (read-only)
    ("scan-list", "get"): Call(LIST, _list("scan-list")),
    ("scan-detail", "get"): Call(OBJECT, _detail("scan-detail", "scan")),
    ("attribution-list", "get"): Call(LIST, _list("attribution-list")),
    ("attribution-detail", "get"): Call(OBJECT, _detail("attribution-detail", "attribution")),
    # referral codes
    ("referral-code-list", "get"): Call(LIST, _list("referral-code-list")),
    ("referral-code-list", "post"): Call(
        CREATE,
        lambda world, user: reverse("referral-code-list"),
        lambda world: {"live_code": world.code.pk, "referrer": world.contact.external_userid},
        CREATED,
    ),
    ("referral-code-detail", "get"): Call(OBJECT, _detail("referral-code-detail", "referral")),
    ("referral-code-leaderboard", "get"): Call(
        QUERY,
        lambda world, user: f"{reverse('referral-code-leaderboard')}?corp={world.corp.corp_id}",
    ),
    ("report-cohorts", "get"): Call(QUERY, _report("report-cohorts")),
    # reports and their exports
    ("report-channels", "get"): Call(QUERY, _report("report-channels")),
    ("report-daily", "get"): Call(QUERY, _report("report-daily")),
    ("report-staff", "get"): Call(QUERY, _report("report-staff")),
    ("report-anomalies", "get"): Call(QUERY, _report("report-anomalies")),
    ("report-quality", "get"): Call(QUERY, _list("report-quality")),
    ("report-export", "get"): Call(OBJECT, _job_url("report-export")),
    ("report-export-download", "get"): Call(OBJECT, _job_url("report-export-download")),
}


def test_every_api_endpoint_has_an_expectation():
    """A new endpoint, method or action must be added to ENDPOINTS (and so be scoped)."""
    routed = api_endpoints()
    assert routed - set(ENDPOINTS) == set(), "endpoints without a line in ENDPOINTS"
    assert set(ENDPOINTS) - routed == set(), "lines in ENDPOINTS for endpoints no longer routed"


# -- the callers -------------------------------------------------------------------------------

ROLES = ("admin", "operator", "manager", "nobody", "superuser", "anonymous")


@pytest.fixture
def worlds(settings, tmp_path) -> dict[str, World]:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return {"A": _world("wwmatrixcorpaaaa", "a"), "B": _world("wwmatrixcorpbbbb", "b")}


@pytest.fixture
def callers(worlds) -> dict[str, tuple[Any, APIClient]]:
    users = get_user_model().objects
    made: dict[str, tuple[Any, APIClient]] = {}
    for role in ROLES:
        client = APIClient()
        user = None
        if role == "superuser":
            user = users.create_superuser("root", "root@example.cn", "x")
        elif role != "anonymous":
            user = users.create_user(role, is_staff=True)
            if role != "nobody":
                member(user, worlds["A"].corp, role=role)
        if user is not None:  # tokens act as their user
            client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
        made[role] = (user, client)
    return made


def _request(client: APIClient, method: str, url: str, body: Any) -> Any:
    """The request, its writes rolled back: every caller meets the same rows."""
    with transaction.atomic():
        response = getattr(client, method)(url, body, format="json")
        transaction.set_rollback(True)
    return response


def _expected(role: str, corp: str, call: Call, method: str) -> frozenset[int]:
    if role == "anonymous":
        return frozenset({401, 403})
    if role == "nobody":
        return frozenset({403})
    if role == "superuser" or call.kind == ROOT:
        return call.ok
    if role == "manager" and method != "get":
        return frozenset({403})  # read-only, in his corp and anywhere else
    if corp == "A":
        return call.ok
    return {
        LIST: frozenset({200}),
        OBJECT: frozenset({404}),
        CREATE: frozenset({400}),
        QUERY: frozenset({400}),
    }[call.kind]


@pytest.mark.parametrize(("name", "method"), sorted(ENDPOINTS))
def test_access_matrix(name, method, worlds, callers):
    call = ENDPOINTS[(name, method)]
    for role, (user, client) in callers.items():
        for corp, world in worlds.items():
            url = call.url(world, user)
            body = call.body(world) if call.body is not None else None
            response = _request(client, method, url, body)
            expected = _expected(role, corp, call, method)
            where = f"{role} {method.upper()} {url} (corp {corp})"
            assert response.status_code in expected, (where, response.status_code,
                                                      response.content[:300])  # fmt: skip
            if call.kind == LIST and response.status_code == 200:
                corp_ids = {row["corp"] for row in response.json()["results"]}
                # ?corp=B lists nothing for a caller without a role in B; the superuser sees it.
                assert corp_ids == ({world.corp.corp_id} if role == "superuser" or corp == "A"
                                    else set()), where  # fmt: skip


@pytest.mark.parametrize(("name", "method"), [k for k, call in ENDPOINTS.items()
                                              if call.kind == LIST])  # fmt: skip
def test_a_list_without_a_corp_shows_only_the_callers_corps(name, method, worlds, callers):
    url = reverse(name)
    for role in ("admin", "operator", "manager", "superuser"):
        _user, client = callers[role]
        rows = client.get(url).json()["results"]
        corps = {row["corp"] for row in rows}
        expected = {w.corp.corp_id for w in worlds.values()}
        assert corps == (expected if role == "superuser" else {worlds["A"].corp.corp_id}), role


def test_a_foreign_corp_reads_as_an_unknown_one_in_reports(worlds, callers):
    _user, client = callers["operator"]
    url = reverse("report-daily")
    foreign = client.get(url, {"corp": worlds["B"].corp.corp_id, "from": "2026-11-01",
                               "to": "2026-11-07"})  # fmt: skip
    unknown = client.get(url, {"corp": "wwnosuchcorp0000", "from": "2026-11-01",
                               "to": "2026-11-07"})  # fmt: skip
    assert foreign.status_code == unknown.status_code == 400
    assert list(foreign.json()) == list(unknown.json()) == ["corp"]
    assert foreign.json()["corp"][0].replace(worlds["B"].corp.corp_id, "X") == unknown.json()[
        "corp"
    ][0].replace("wwnosuchcorp0000", "X")


# -- the issue's own cases: a corp-A operator's token and corp B -------------------------------


def test_a_corp_a_operator_token_gets_404_on_corp_b_customer_and_live_code(worlds, callers):
    _user, client = callers["operator"]
    b = worlds["B"]
    assert client.get(f"/api/v1/contacts/{b.contact.pk}/").status_code == 404
    assert client.get(f"/api/v1/contacts/{b.contact.pk}/timeline/").status_code == 404
    assert client.get(f"/api/v1/live-codes/{b.code.pk}/").status_code == 404
    assert client.patch(f"/api/v1/live-codes/{b.code.pk}/", {"name": "x"}).status_code == 404
    assert client.post(f"/api/v1/live-codes/{b.code.pk}/publish/").status_code == 404
    assert client.post(f"/api/v1/live-codes/{b.active_code.pk}/pause/").status_code == 404
    b.code.refresh_from_db()
    b.active_code.refresh_from_db()
    assert (b.code.name, b.code.status) == ("poster", LiveCode.Status.DRAFT)
    assert b.active_code.status == LiveCode.Status.ACTIVE


def test_a_corp_a_operator_cannot_post_corp_b_conversions(worlds, callers):
    _user, client = callers["operator"]
    a, b = worlds["A"], worlds["B"]
    row = {"external_id": "order-x", "kind": "order", "amount": "9.00",
           "occurred_at": "2026-11-02T10:00:00+08:00"}  # fmt: skip
    before = ConversionEvent.objects.count()
    response = client.post(
        "/api/v1/conversions/",
        [{**row, "corp_id": b.corp.corp_id, "external_userid": b.contact.external_userid}],
        format="json",
    )
    assert response.status_code == 400
    assert [(e["row"], e["field"]) for e in response.json()["errors"]] == [(0, "corp_id")]
    # A batch of A's row and B's writes nothing at all.
    mixed = [
        {**row, "corp_id": a.corp.corp_id, "external_userid": a.contact.external_userid},
        {**row, "corp_id": b.corp.corp_id, "external_id": "order-y",
         "external_userid": b.contact.external_userid},
    ]  # fmt: skip
    assert client.post("/api/v1/conversions/", mixed, format="json").status_code == 400
    assert ConversionEvent.objects.count() == before
    # Corp A's row naming B's customer is never matched to B's customer.
    response = client.post(
        "/api/v1/conversions/",
        [{**row, "corp_id": a.corp.corp_id, "external_userid": b.contact.external_userid}],
        format="json",
    )
    assert response.json()["matched"] == 0
    assert ConversionEvent.objects.get(external_id="order-x").external_contact is None


# -- a write naming another corp's row is refused, never linked across corps -------------------


def test_writes_cannot_name_another_corps_rows(worlds, callers):
    _user, client = callers["operator"]
    a, b = worlds["A"], worlds["B"]
    # A live code of corp A on corp B's channel.
    response = client.post("/api/v1/live-codes/", {**_code_body(a), "channel": b.channel.pk},
                           format="json")  # fmt: skip
    assert response.status_code == 400
    assert list(response.json()) == ["channel"]
    response = client.patch(f"/api/v1/live-codes/{a.code.pk}/", {"channel": b.channel.pk},
                            format="json")  # fmt: skip
    assert response.status_code == 400
    # A pool member who is staff of corp B only.
    staff_get_or_create(corp=b.corp, userid="only-in-b")
    response = client.patch(f"/api/v1/live-codes/{a.code.pk}/", {"pool": [{"staff": "only-in-b"}]},
                            format="json")  # fmt: skip
    assert response.status_code == 400
    assert list(response.json()) == ["pool"]
    # A referral code on B's live code, or for B's customer on A's code.
    response = client.post(
        "/api/v1/referral-codes/", {"live_code": b.code.pk, "referrer": b.contact.external_userid}
    )
    assert (response.status_code, list(response.json())) == (400, ["live_code"])
    response = client.post(
        "/api/v1/referral-codes/", {"live_code": a.code.pk, "referrer": b.contact.external_userid}
    )
    assert (response.status_code, list(response.json())) == (400, ["referrer"])
    # A cost of corp B's channel, in either corp's name.
    spare = Channel.objects.create(corp=b.corp, name="只在B", code="only_b")
    assert client.post("/api/v1/channel-costs/", {**_cost_body(a), "channel": spare.code},
                       format="json").status_code == 400  # fmt: skip
    assert client.post("/api/v1/channel-costs/", [_cost_body(a), _cost_body(b)],
                       format="json").status_code == 400  # fmt: skip
    # A row cannot move to corp B.
    response = client.patch(f"/api/v1/channels/{a.channel.pk}/", {"corp": b.corp.corp_id})
    assert response.status_code == 400
    assert not LiveCode.objects.filter(corp=a.corp, channel__corp=b.corp).exists()
    assert not ReferralCode.objects.filter(live_code__corp=b.corp).exclude(corp=b.corp).exists()
    assert ChannelCost.objects.filter(corp=a.corp).count() == 1
    assert Channel.objects.get(pk=a.channel.pk).corp == a.corp


def test_a_role_that_only_reads_in_a_corp_gets_403_not_404_on_its_rows(worlds, callers):
    """An operator of A who is a manager of B sees B's rows and may not change them."""
    user, client = callers["operator"]
    b = worlds["B"]
    member(user, b.corp, role="manager")
    assert client.get(f"/api/v1/live-codes/{b.code.pk}/").status_code == 200
    assert client.patch(f"/api/v1/live-codes/{b.code.pk}/", {"name": "x"}).status_code == 403
    assert client.post(f"/api/v1/live-codes/{b.code.pk}/publish/").status_code == 403
    assert client.delete(f"/api/v1/channels/{b.spare_channel.pk}/").status_code == 403
    assert client.post("/api/v1/channels/", _channel_body(b)).status_code == 400
    assert LiveCode.objects.get(pk=b.code.pk).name == "poster"


# -- personal fields and export jobs -----------------------------------------------------------


def test_a_manager_gets_customers_without_personal_fields(worlds, callers):
    a = worlds["A"]
    ExternalContact.objects.filter(pk=a.contact.pk).update(
        unionid="o-union-1", avatar="https://example.cn/a.png", corp_name="某公司"
    )
    a.contact.follow_relations.update(remark="王先生 13800000000", description="住浦东")
    _user, manager = callers["manager"]
    _user, operator = callers["operator"]
    seen = manager.get(f"/api/v1/contacts/{a.contact.pk}/").json()
    full = operator.get(f"/api/v1/contacts/{a.contact.pk}/").json()
    assert full["unionid"] == "o-union-1"
    assert full["relations"][0]["remark"] == "王先生 13800000000"
    for name in ("unionid", "avatar", "gender", "corp_name"):
        assert name not in seen
    for name in ("remark", "description", "oper_userid"):
        assert name not in seen["relations"][0]
    assert (seen["external_userid"], seen["name"]) == (full["external_userid"], full["name"])
    assert seen["first_source"] == full["first_source"]
    listed = manager.get("/api/v1/contacts/").json()["results"]
    assert "unionid" not in listed[0]
    assert "13800000000" not in manager.get("/api/v1/contacts/").content.decode()
    ConversionEvent.objects.filter(pk=a.conversion.pk).update(
        unionid="o-union-1", note="送货到 13800000000"
    )
    for name in ("unionid", "note"):
        assert name not in manager.get("/api/v1/conversions/").json()["results"][0]
    full_conversion = operator.get("/api/v1/conversions/").json()["results"][0]
    assert (full_conversion["unionid"], full_conversion["note"]) == (
        "o-union-1",
        "送货到 13800000000",
    )
    # A referrer URL can carry a phone number too (a form's page, a share link).
    Scan.objects.filter(pk=a.scan.pk).update(referrer_url="https://m.example.cn/?tel=13800000000")
    assert "referrer_url" not in manager.get(f"/api/v1/scans/{a.scan.pk}/").json()
    assert "13800000000" in operator.get(f"/api/v1/scans/{a.scan.pk}/").json()["referrer_url"]
    assert "13800000000" not in manager.get("/api/v1/scans/").content.decode()
    # The admin's pages likewise (the manager's session).
    manager_user, _client = callers["manager"]
    browser = Client()
    browser.force_login(manager_user)
    for url in (reverse("admin:channels_app_scan_change", args=[a.scan.pk]),
                reverse("admin:contacts_conversionevent_change", args=[a.conversion.pk]),
                reverse("admin:channels_app_scan_changelist"),
                reverse("admin:contacts_conversionevent_changelist")):  # fmt: skip
        page = browser.get(url)
        assert page.status_code == 200, url
        assert "13800000000" not in page.content.decode(), url


def test_an_export_job_is_only_its_askers(worlds, callers):
    a = worlds["A"]
    admin, admin_client = callers["admin"]
    _manager, manager_client = callers["manager"]
    job = _job(a, admin)
    assert admin_client.get(reverse("report-export", kwargs={"pk": job.pk})).status_code == 200
    for url in (reverse("report-export", kwargs={"pk": job.pk}),
                reverse("report-export-download", kwargs={"pk": job.pk})):  # fmt: skip
        assert manager_client.get(url).status_code == 404  # same corp, another user's job
    assert (
        callers["superuser"][1].get(reverse("report-export", kwargs={"pk": job.pk})).status_code
        == 200
    )


def test_an_export_job_of_a_corp_its_asker_left_writes_no_file(worlds, callers):
    from analytics.export_jobs import export_job_run
    from scrm.wecom.models import CorpMembership

    admin, _client = callers["admin"]
    job = ExportJob.objects.create(
        corp=worlds["A"].corp, created_by=admin, report="daily", format="csv",
        params={"first": "2026-11-01", "last": "2026-11-01", "window": 30,
                "group_by": "channel", "channel_type": None, "channel_group": ""},
    )  # fmt: skip
    CorpMembership.objects.filter(user=admin).delete()
    job = export_job_run(job_id=job.pk)
    assert job.status == ExportJob.Status.FAILED
    assert not job.file


# -- the report pages (/reports/) ----------------------------------------------------------------
#
# Every route of analytics/urls.py has a line in REPORT_PAGES (tests/test_access_matrix_urls.py
# fails for one without), with a realistic query about a corp's rows. Signed in (the session,
# as in a browser): an anonymous visitor is sent to the login; each role of A gets 200 on A; a
# user of A naming corp B (?corp=<B's corp_id>, with B's rows) gets the page's form back with
# its "corp" error, a 400, and nothing of B's, as for a corp that does not exist; A named with
# B's channel or code is a 400 on that field. A user without a membership gets the page saying
# there is no corp; the superuser gets every corp's.
#
# The acknowledgement of an anomaly (a POST, not a page) names the corp in its body: another
# corp's is a 404 there (anomaly_views.acknowledge), a manager's a 403.

PERIOD = {"from": "2026-11-01", "to": "2026-11-07"}


@dataclass(frozen=True)
class ReportPage:
    path: str
    query: Callable[[World], dict]  # about the world's corp and rows
    rows: tuple[str, ...] = ()  # the query's fields naming a row (a drill-down)


def _filters(world: World) -> dict:
    return {"corp": world.corp.corp_id, **PERIOD, "window": "30", "channel_type": "2"}


REPORT_PAGES: dict[str, list[ReportPage]] = {
    "reports:channels": [
        ReportPage("/reports/", lambda w: {**_filters(w), "touch": "first"}),
        ReportPage("/reports/", lambda w: {"corp": w.corp.corp_id, "period": "last_7"}),
    ],
    "reports:channel_types": [ReportPage("/reports/channel-types/", _filters)],
    "reports:live_codes": [
        ReportPage("/reports/live-codes/", lambda w: {**_filters(w), "channel": w.channel.pk},
                   ("channel",)),
    ],
    "reports:staff": [
        ReportPage("/reports/staff/", lambda w: {**_filters(w), "live_code": w.code.pk},
                   ("live_code",)),
    ],
    "reports:breakdown": [
        ReportPage(f"/reports/by/{by}/", lambda w: {**_filters(w), "channel": w.channel.pk},
                   ("channel",))
        for by in Breakdown.values
    ],
    "reports:cohorts": [
        ReportPage("/reports/cohorts/",
                   lambda w: {"corp": w.corp.corp_id, "from": "2026-06-01", "to": "2026-11-07",
                              "cohort_period": "week", "metric": "retention", "by": "channel",
                              "channel": w.channel.pk},
                   ("channel",)),
    ],
    "reports:anomalies": [ReportPage("/reports/anomalies/", lambda w: {"corp": w.corp.corp_id,
                                                                        **PERIOD})],
    "reports:quality": [ReportPage("/reports/quality/", lambda w: {"corp": w.corp.corp_id,
                                                                    "days": "30"})],
}  # fmt: skip
ACKNOWLEDGE = "reports:anomaly_acknowledge"  # its own test below
REPORT_ROUTES = {*REPORT_PAGES, ACKNOWLEDGE}


def _page_cases() -> list[tuple[str, int]]:
    return [(name, n) for name, pages in REPORT_PAGES.items() for n in range(len(pages))]


def _browser(user: Any) -> Client:
    browser = Client()
    if user is not None:
        browser.force_login(user)
    return browser


def _of_b(html: str, b: World) -> list[str]:
    """What of corp B's a page shows (its names; ids a user typed may be echoed in the form)."""
    markers = [b.corp.name, b.code.slug, b.contact.external_userid]
    return [marker for marker in markers if marker in html]


@pytest.mark.parametrize(("name", "n"), _page_cases())
def test_report_page_matrix(name, n, worlds, callers):
    page = REPORT_PAGES[name][n]
    a, b = worlds["A"], worlds["B"]
    for role, (user, _api) in callers.items():
        browser, where = _browser(user), f"{page.path} as {role}"
        response = browser.get(page.path, page.query(a))
        if role == "anonymous":
            assert response.status_code == 302, where
            assert response["Location"].startswith(reverse("admin:login")), where
            continue
        assert response.status_code == 200, (where, response.status_code)
        html = response.content.decode()
        if role == "nobody":
            assert response.context["no_corps"], where
            assert a.corp.name not in html, where
            assert _of_b(html, b) == [], where
            continue
        assert response.context["corp"] == a.corp, where
        if role == "superuser":
            response = browser.get(page.path, page.query(b))
            assert (response.status_code, response.context["corp"]) == (200, b.corp), where
            continue
        assert _of_b(html, b) == [], where
        # Corp B, asked by a role of A: the form's "corp" error, nothing of B's.
        response = browser.get(page.path, page.query(b))
        assert response.status_code == 400, (where, "corp B", response.status_code)
        assert list(response.context["form"].errors) == ["corp"], where
        assert "corp" not in response.context or response.context["corp"] is None, where
        assert _of_b(response.content.decode(), b) == [], where
        # A, with B's channel or code: refused on that field.
        for row in page.rows:
            query = {**page.query(a), row: page.query(b)[row]}
            response = browser.get(page.path, query)
            assert response.status_code == 400, (where, row, response.status_code)
            assert row in response.context["form"].errors, (where, row)
            assert _of_b(response.content.decode(), b) == [], (where, row)


def test_report_pages_offer_only_the_users_corps(worlds, callers):
    user, _api = callers["manager"]
    browser, a, b = _browser(user), worlds["A"], worlds["B"]
    for name, pages in REPORT_PAGES.items():
        html = browser.get(pages[0].path).content.decode()  # the default: the user's corp
        assert a.corp.corp_id in html, name
        assert b.corp.corp_id not in html, name
        assert b.corp.name not in html, name
    # Two corps to choose from once the user belongs to B too.
    member(user, b.corp, role="manager")
    for name, pages in REPORT_PAGES.items():
        assert b.corp.name in browser.get(pages[0].path).content.decode(), name


def test_a_foreign_corp_reads_as_an_unknown_one_on_every_report_page(worlds, callers):
    user, _api = callers["operator"]
    browser = _browser(user)
    for name, pages in REPORT_PAGES.items():
        for page in pages:
            foreign = browser.get(page.path, {**page.query(worlds["A"]),
                                              "corp": worlds["B"].corp.corp_id})  # fmt: skip
            unknown = browser.get(page.path, {**page.query(worlds["A"]),
                                              "corp": "wwnosuchcorp0000"})  # fmt: skip
            assert foreign.status_code == unknown.status_code == 400, name
            assert foreign.context["form"].errors == unknown.context["form"].errors, name


def _failed_event(world: World) -> str:
    """A failed callback event of the world's corp: a listed anomaly, its key."""
    from scrm.wecom.models import CallbackEvent

    event = CallbackEvent.objects.create(
        corp=world.corp, dedup_key=f"failed-{world.corp.pk}", event="change_external_contact",
        change_type="add_external_contact", event_time=timezone.now(),
        status=CallbackEvent.Status.FAILED, last_error="boom",
    )  # fmt: skip
    CallbackEvent.objects.filter(pk=event.pk).update(
        received_at=timezone.now() - dt.timedelta(hours=1)
    )
    return f"failed:{event.pk}"


def test_anomaly_acknowledgement_matrix(worlds, callers):
    from analytics.models import AnomalyAck

    url = reverse(ACKNOWLEDGE)
    keys = {corp: _failed_event(world) for corp, world in worlds.items()}
    expected = {
        # role: (status on A, status on B)
        "anonymous": (302, 302),  # to the login
        "nobody": (404, 404),
        "manager": (403, 404),
        "operator": (303, 404),
        "admin": (303, 404),
        "superuser": (303, 303),
    }
    for role, (user, _api) in callers.items():
        browser = _browser(user)
        for corp, world in worlds.items():
            body = {"corp": world.corp.corp_id, "kind": "callback_failed", "key": keys[corp],
                    "note": "已重试"}  # fmt: skip
            with transaction.atomic():
                response = browser.post(url, body)
                acknowledged = AnomalyAck.objects.filter(corp=world.corp).exists()
                transaction.set_rollback(True)
            status = expected[role][0 if corp == "A" else 1]
            assert response.status_code == status, (role, corp, response.status_code)
            assert acknowledged == (status == 303), (role, corp)
            if status == 404:
                assert world.corp.name not in response.content.decode(), (role, corp)
        assert browser.get(url).status_code == 405, role


def test_random_ids_of_other_corps_are_all_404(worlds, callers):
    """No id of B's rows, nor any id at all, tells an operator of A more than 'not found'."""
    _user, client = callers["operator"]
    rng = random.Random(13)
    b = worlds["B"]
    own = {worlds["A"].contact.pk}
    for pk in [b.contact.pk, *(rng.randrange(1, 10_000) for _ in range(20))]:
        if pk in own:
            continue
        response = client.get(f"/api/v1/contacts/{pk}/")
        assert response.status_code == 404
        assert response.json() == {"detail": response.json()["detail"]}
