"""Conventions every endpoint of /api/v1/ keeps: an unknown query parameter is a 400 listing the
valid ones (not silently ignored), `page_size` is `limit` with the same ceiling, and the
browsable API has its login at /api-auth/.

The list endpoints are read from the URL configuration (routers included), so a new list is
covered by these tests as soon as it is routed.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from django.urls import NoReverseMatch, URLPattern, URLResolver, get_resolver, resolve, reverse
from rest_framework.mixins import ListModelMixin
from rest_framework.test import APIClient

from channels_app.models import Channel
from contacts.models import ExternalContact
from scrm.pagination import BoundedLimitOffsetPagination
from tests.tenancy import member

pytestmark = pytest.mark.django_db

API = "api/v1/"
PAGINATION = {"limit", "offset", "page_size"}


def _walk(patterns: list, prefix: str = "") -> list[tuple[str, URLPattern]]:
    found = []
    for pattern in patterns:
        path = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            found += _walk(pattern.url_patterns, path)
        else:
            found.append((path, pattern))
    return found


def list_endpoints() -> list[str]:
    """URL names of every list under /api/v1/: a viewset's `list` action, or a generic
    list view."""
    names = []
    for path, pattern in _walk(get_resolver().url_patterns):
        if not path.startswith(API):
            continue
        actions = getattr(pattern.callback, "actions", None)
        if actions is not None:
            is_list = actions.get("get") == "list"
        else:
            is_list = issubclass(getattr(pattern.callback, "cls", object), ListModelMixin)
        if is_list:
            names.append(pattern.name)
    return sorted(names)


LISTS = list_endpoints()
# The endpoints that validate their query with a serializer: reports and the leaderboard.
QUERIES = {
    "report-channels": {"from": "2026-11-01", "to": "2026-11-07"},
    "report-daily": {"from": "2026-11-01", "to": "2026-11-07"},
    "report-cohorts": {"from": "2026-11-01", "to": "2026-11-07"},
    "report-staff": {"from": "2026-11-01", "to": "2026-11-07"},
    "referral-code-leaderboard": {},
}


def test_the_walk_finds_every_list():
    assert {"contact-list", "contact-timeline", "conversion-list", "channel-list",
            "channel-cost-list", "live-code-list", "scan-list", "attribution-list",
            "referral-code-list"} <= set(LISTS)  # fmt: skip


@pytest.fixture
def user(django_user_model, corp):
    return member(django_user_model.objects.create_user(username="ops"), corp)


@pytest.fixture
def api(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def contact(corp) -> ExternalContact:
    return ExternalContact.objects.create(corp=corp, external_userid="wm_conventions")


def _url(name: str, contact: ExternalContact) -> str:
    try:
        return reverse(name)
    except NoReverseMatch:  # a list under one row (a customer's timeline): a customer of ours
        return reverse(name, kwargs={"pk": contact.pk})


@pytest.mark.parametrize("name", LISTS)
def test_a_list_refuses_an_unknown_parameter_and_lists_the_valid_ones(api, contact, name):
    url = _url(name, contact)
    assert api.get(url).status_code == 200, url
    assert api.get(url, {"limit": 1, "offset": 0, "format": "json"}).status_code == 200

    response = api.get(url, {"no_such_filter": "1", "limit": 1})
    assert response.status_code == 400, url
    body = response.json()
    assert body["unknown_parameters"] == ["no_such_filter"]
    filterset = getattr(resolve(url).func.cls, "filterset_class", None)
    filters = set(filterset.base_filters) if filterset is not None else set()
    assert set(body["valid_parameters"]) == filters | PAGINATION | {"format"}
    assert "no_such_filter" in body["detail"]
    assert "limit" in body["detail"]  # the valid ones are named in the message too


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_a_report_refuses_an_unknown_parameter(api, corp, name):
    query = {"corp": corp.corp_id, **QUERIES[name]}
    assert api.get(reverse(name), query).status_code == 200
    response = api.get(reverse(name), {**query, "chanel": "1"})  # a typo of `channel`
    assert response.status_code == 400
    body = response.json()
    assert body["unknown_parameters"] == ["chanel"]
    assert "corp" in body["valid_parameters"]
    assert "chanel" not in body["valid_parameters"]


def test_one_row_and_writes_are_not_checked_as_lists(api, corp, contact):
    # ?format= and the browsable API's parameters on one row stay as DRF answers them.
    assert (
        api.get(reverse("contact-detail", kwargs={"pk": contact.pk}), {"x": 1}).status_code == 200
    )
    body = {"corp": corp.corp_id, "name": "新渠道", "code": "new_1"}
    response = api.post(reverse("channel-list") + "?x=1", body)
    assert response.status_code == 201


# -- page_size ---------------------------------------------------------------------------------


@pytest.fixture
def channels(corp) -> list[Channel]:
    return [Channel.objects.create(corp=corp, name=f"渠道 {n}", code=f"pyq_{n}") for n in range(5)]


def test_page_size_is_limit_by_another_name(api, channels):
    page = api.get(reverse("channel-list"), {"page_size": 2}).json()
    assert (len(page["results"]), page["count"]) == (2, 5)
    # The next link carries limit only: following it is not refused as "both given".
    query = parse_qs(urlsplit(page["next"]).query)
    assert query == {"limit": ["2"], "offset": ["2"]}
    following = api.get(page["next"]).json()
    assert [row["code"] for row in following["results"]] == ["pyq_2", "pyq_3"]
    assert "page_size" not in following["previous"]


def test_page_size_has_the_limits_ceiling(api, channels, monkeypatch):
    monkeypatch.setattr(BoundedLimitOffsetPagination, "max_limit", 3)
    for name in ("page_size", "limit"):
        page = api.get(reverse("channel-list"), {name: "99999999999999999999"}).json()
        assert (len(page["results"]), page["count"]) == (3, 5), name
        assert "offset=3" in page["next"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"page_size": "0"}, "page_size"),
        ({"page_size": "-1"}, "page_size"),
        ({"page_size": "abc"}, "page_size"),
        ({"limit": "1.5"}, "limit"),
        ({"offset": "-3"}, "offset"),
        ({"limit": "2", "page_size": "3"}, "page_size"),
    ],
)
def test_a_bad_page_size_is_a_400_with_a_reason(api, channels, query, field):
    response = api.get(reverse("channel-list"), query)
    assert response.status_code == 400
    (reason,) = response.json()[field]
    assert reason


def test_page_size_is_documented_with_its_maximum():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    checked = 0
    for path, operations in schema["paths"].items():
        parameters = {p["name"]: p for p in operations.get("get", {}).get("parameters", [])}
        if "offset" not in parameters:  # not a paginated list
            continue
        for name in ("limit", "page_size"):
            assert parameters[name]["schema"]["maximum"] == 1000, (path, name)
        checked += 1
    assert checked == len(LISTS)


# -- /api-auth/ ----------------------------------------------------------------------------------


def test_the_browsable_api_logs_in_at_api_auth(django_user_model, corp):
    member(django_user_model.objects.create_user(username="reader", password="pw-0123456789"),
           corp, role="manager")  # fmt: skip
    client = APIClient(enforce_csrf_checks=True)
    assert client.get("/api/v1/channels/").status_code in (401, 403)
    page = client.get("/api-auth/login/", {"next": "/api/v1/channels/"})
    assert page.status_code == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())[1]
    response = client.post(
        "/api-auth/login/",
        {"username": "reader", "password": "pw-0123456789", "csrfmiddlewaretoken": token,
         "next": "/api/v1/channels/"},
    )  # fmt: skip
    assert response.status_code == 302
    assert response["Location"] == "/api/v1/channels/"
    assert client.get("/api/v1/channels/").status_code == 200
    # The browsable API's pages link to it (DRF shows "Log in" only when it is routed).
    html = client.get("/api/v1/channels/", HTTP_ACCEPT="text/html").content.decode()
    assert "/api-auth/logout/" in html


def test_logging_in_without_next_lands_on_the_api_root(client, django_user_model, corp):
    member(django_user_model.objects.create_user(username="reader", password="pw-0123456789"),
           corp, role="manager")  # fmt: skip
    response = client.post("/api-auth/login/", {"username": "reader", "password": "pw-0123456789"})
    assert response.status_code == 302
    assert response["Location"] == "/api/v1/"
    assert client.get("/api/v1/").status_code == 200
    assert client.post("/api-auth/logout/")["Location"] == "/api-auth/login/"
    assert client.get("/api/v1/").status_code in (401, 403)


def test_a_wrong_password_stays_on_the_login_page(client, django_user_model):
    django_user_model.objects.create_user(username="reader", password="pw-0123456789")
    response = client.post("/api-auth/login/", {"username": "reader", "password": "nope"})
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


def test_the_api_root_links_the_login(api):
    listed = api.get("/api/v1/").json()
    assert listed["api-auth-login"] == "http://testserver/api-auth/login/"
