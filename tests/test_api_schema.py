"""The OpenAPI 3 schema (/api/schema/), Swagger UI (/api/docs/) and the API root (/api/v1/).

Every URL pattern under /api/v1/ is enumerated here with Django's own admindocs walker, not
with the code under test, so a new endpoint (a report, an action) fails these tests until the
schema describes it without a warning and the root lists it.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
import yaml
from django.conf import settings
from django.contrib.admindocs.views import extract_views_from_urlpatterns, simplify_regex
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.urls import get_resolver, resolve
from drf_spectacular.generators import SchemaGenerator
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from channels_app.api import LeaderboardQuerySerializer
from contacts.api_conversions import ConversionRowSerializer
from contacts.conversions import FIELDS as CONVERSION_FIELDS
from tests.tenancy import member

API = "/api/v1/"
PARAMETER = re.compile(r"<(?:[^>:]+:)?(?P<name>\w+)>")


def api_routes() -> dict[str, str | None]:
    """Every routed path under /api/v1/, as the schema writes it ({id} for a pk), with its URL
    name."""
    routes = {}
    for _view, route, _namespace, name in extract_views_from_urlpatterns(
        get_resolver().url_patterns
    ):
        path = PARAMETER.sub(
            lambda m: "{id}" if m["name"] == "pk" else f"{{{m['name']}}}", simplify_regex(route)
        )
        if path.startswith(API):
            routes[path] = name
    return routes


def api_paths() -> set[str]:
    return set(api_routes())


@pytest.fixture(scope="module")
def schema() -> dict:
    # No database: generating the schema must not query (manage.py spectacular runs in CI
    # on a fresh clone); a view that does is a warning, and a warning fails below.
    return SchemaGenerator().get_schema(request=None, public=True)


@pytest.fixture
def user(django_user_model, corp):
    """A manager (read-only) of the sandbox corp: no Django permissions."""
    return member(django_user_model.objects.create_user(username="reader"), corp, role="manager")


@pytest.fixture
def api(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def test_the_walk_finds_the_api_beyond_the_routers():
    paths = api_paths()
    for expected in (
        "/api/v1/",
        "/api/v1/channels/{id}/",
        "/api/v1/live-codes/{id}/qr.png",
        "/api/v1/live-codes/{id}/publish/",
        "/api/v1/contacts/{id}/timeline/",
        "/api/v1/referral-codes/leaderboard/",
        "/api/v1/conversions/",
    ):
        assert expected in paths


# -- the schema --------------------------------------------------------------------------------


def test_schema_is_valid_openapi_3_without_warnings(tmp_path):
    out = tmp_path / "schema.yaml"
    # Raises SchemaGenerationError on any warning (printed above it), SchemaValidationError
    # when the result is not valid OpenAPI 3.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    generated = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert generated["openapi"].startswith("3.")
    assert generated["info"]["title"].startswith("渠道活码 SCRM API")


def test_every_api_endpoint_is_in_the_schema(schema):
    missing = sorted(api_paths() - set(schema["paths"]))
    assert missing == [], f"not in the schema: {missing}"


def test_every_filter_of_a_list_is_a_documented_parameter(schema):
    checked = []
    for path, operations in schema["paths"].items():
        if "get" not in operations:
            continue
        match = resolve(path.replace("{id}", "1"))
        view = match.func.cls
        action = getattr(match.func, "actions", {}).get("get", "list")
        filterset = getattr(view, "filterset_class", None)
        if filterset is None or action != "list":
            continue
        documented = {p["name"] for p in operations["get"].get("parameters", [])}
        assert set(filterset.base_filters) <= documented, path
        assert {"limit", "offset", "page_size"} <= documented, path  # paginated
        checked.append(path)
    assert len(checked) >= 8  # every list of the API, not none by a broken walk


def test_custom_endpoints_document_their_query_bodies_and_media(schema):
    paths = schema["paths"]
    leaderboard = paths["/api/v1/referral-codes/leaderboard/"]["get"]
    assert {p["name"] for p in leaderboard["parameters"]} == set(
        LeaderboardQuerySerializer().fields
    )

    qr = paths["/api/v1/live-codes/{id}/qr.png"]["get"]["responses"]
    assert qr["200"]["content"] == {"image/png": {"schema": {"type": "string", "format": "binary"}}}
    assert "302" in qr

    for action in ("publish", "pause"):  # they take no body
        assert "requestBody" not in paths[f"/api/v1/live-codes/{{id}}/{action}/"]["post"]

    components = schema["components"]["schemas"]
    # Bulk: channel costs take one object or a list, conversions a list; errors per row.
    costs = paths["/api/v1/channel-costs/"]["post"]
    one_or_many = costs["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    kinds = [s.get("type", "object") for s in components[one_or_many.split("/")[-1]]["oneOf"]]
    assert kinds == ["object", "array"]
    conversions = paths["/api/v1/conversions/"]["post"]
    rows = conversions["requestBody"]["content"]["application/json"]["schema"]
    assert rows["type"] == "array"
    for operation in (costs, conversions):
        errors = operation["responses"]["400"]["content"]["application/json"]["schema"]
        assert errors == {"$ref": "#/components/schemas/RowErrors"}
    assert set(components["ConversionImportResult"]["properties"]) == {
        "created",
        "duplicates",
        "matched",
        "unmatched",
    }


def test_the_documented_conversion_row_has_the_import_columns():
    # ConversionRowSerializer only documents; conversions_import validates. Keep them one.
    assert tuple(ConversionRowSerializer().fields) == CONVERSION_FIELDS


# -- serving: the schema, the docs page, the root ------------------------------------------------


@pytest.mark.django_db
def test_schema_needs_a_login_like_the_api(user):
    anonymous = APIClient()
    for url in ("/api/schema/", API, "/api/v1/channels/"):
        assert anonymous.get(url).status_code in (401, 403), url

    token = Token.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    assert "/api/v1/channels/" in response.json()["paths"]


@pytest.mark.django_db
def test_docs_page_sends_an_anonymous_visitor_to_the_login(client):
    response = client.get("/api/docs/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/api/docs/"


@pytest.mark.django_db
def test_docs_page_uses_only_our_own_static_files(client, user):
    client.force_login(user)
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "http://" not in html
    assert "https://" not in html  # no CDN
    assert '"validatorUrl": null' in html  # Swagger UI would send the schema's URL out
    assert '"/api/schema/"' in html
    assets = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert len(assets) >= 3  # the stylesheet, the bundle, the preset (and the icon)
    static_url = "/" + settings.STATIC_URL.lstrip("/")
    for asset in assets:
        assert asset.startswith(static_url), asset
        assert finders.find(asset.removeprefix(static_url)), f"no static file {asset}"


@pytest.mark.django_db
def test_api_root_lists_every_endpoint(api):
    response = api.get(API)
    assert response.status_code == 200
    listed = response.json()
    paths = {urlsplit(url).path for url in listed.values()}
    missing = sorted(api_paths() - {API} - paths)
    assert missing == [], f"not in the API root: {missing}"
    assert listed["schema"] == "http://testserver/api/schema/"
    assert listed["api-docs"] == "http://testserver/api/docs/"
    assert listed["live-code-qr"] == "http://testserver/api/v1/live-codes/{id}/qr.png"
    assert listed["api-auth-login"] == "http://testserver/api-auth/login/"
    # Each endpoint under its own URL name (a name shared by two routes would hide one).
    for path, name in api_routes().items():
        if path != API:
            assert name, f"an API route without a URL name: {path}"
            assert urlsplit(listed[name]).path == path, name
    for url in listed.values():
        if "{" not in url:  # a list or an action of the whole collection: it answers
            assert api.get(url).status_code != 404, url
