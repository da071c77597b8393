"""GET /api/v1/: every endpoint of the API, read from the URL configuration itself.

DRF's router root lists only the viewsets of its own router; the API is several routers and
plain paths (a customer's timeline, conversions, a code's qr.png, and whatever is added later),
so the root walks the project's URL patterns and lists each one under /api/v1/ by its URL
name. Nothing to keep in step by hand: a new endpoint is listed as soon as it is routed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from django.contrib.admindocs.views import simplify_regex
from django.urls import URLPattern, URLResolver, get_resolver, get_script_prefix, reverse
from django.urls.resolvers import RegexPattern
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from scrm.api_tenancy import CorpRolePermission

# <int:pk> of a route, or <pk> as simplify_regex leaves a regex's named group.
_PARAMETER = re.compile(r"<(?:[^>:]+:)?(?P<name>\w+)>")


def _template(pattern: URLPattern | URLResolver) -> str:
    """A pattern's part of the path with {name} for each parameter ({id} for pk, as in the
    OpenAPI schema)."""
    if isinstance(pattern.pattern, RegexPattern):
        text = simplify_regex(pattern.pattern.regex.pattern).lstrip("/")
    else:
        text = str(pattern.pattern)
    return _PARAMETER.sub(lambda m: "{id}" if m["name"] == "pk" else f"{{{m['name']}}}", text)


def url_templates(
    patterns: Iterable[URLPattern | URLResolver], prefix: str = ""
) -> Iterator[tuple[str | None, str]]:
    """(URL name, path template) of every view under `patterns`, in resolution order."""
    for pattern in patterns:
        path = prefix + _template(pattern)
        if isinstance(pattern, URLResolver):
            yield from url_templates(pattern.url_patterns, path)
        else:
            yield pattern.name, path


class ApiRootView(APIView):
    """Every endpoint of the API by its URL name, with {id} where a row's id goes; `schema`
    and `api-docs` are its OpenAPI 3 schema and Swagger UI, `api-auth-login` the browsable
    API's login.
    列出 API 的全部接口及其地址（含 OpenAPI 架构与 Swagger UI 文档）。"""

    permission_classes = [CorpRolePermission]  # a role in some corp, as every endpoint

    @extend_schema(
        operation_id="api_root",
        tags=["root"],
        responses={200: {"type": "object", "additionalProperties": {"type": "string"}}},
        examples=[
            OpenApiExample(
                "root",
                value={
                    "channel-list": "https://scrm.example.com/api/v1/channels/",
                    "live-code-qr": "https://scrm.example.com/api/v1/live-codes/{id}/qr.png",
                    "schema": "https://scrm.example.com/api/schema/",
                },
                response_only=True,
            )
        ],
    )
    def get(self, request: Request) -> Response:
        root = reverse("api-root")
        origin = f"{request.scheme}://{request.get_host()}"
        script_prefix = get_script_prefix()
        endpoints = {}
        for name, path in url_templates(get_resolver().url_patterns):
            url = script_prefix + path
            if url.startswith(root) and url != root:
                endpoints.setdefault(name or path, origin + url)
        for name in ("schema", "api-docs"):
            endpoints[name] = origin + reverse(name)
        # The browsable API's session login (/api-auth/login/); a script sends a token.
        endpoints["api-auth-login"] = origin + reverse("rest_framework:login")
        return Response(endpoints)
