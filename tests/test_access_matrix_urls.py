"""Every URL the project routes is in a matrix: a view added without its line fails here,
naming its pattern, until who may do what with it is written down (and so tested).

- /admin/: Django's standard views of a registered model (changelist, add, change, delete,
  history) are in the admin matrix through its model (tests/test_access_matrix_admin.py,
  RIGHTS); every other view of a ModelAdmin (its get_urls() extras) needs a line in
  CUSTOM_VIEWS (tests/test_admin_tenancy.py); the admin site's own views are listed here.
- /reports/: every route needs a line in REPORT_PAGES (or is the acknowledgement),
  tests/test_access_matrix_api.py.
- /api/v1/: every route and each method it answers needs a line in ENDPOINTS, same file.
- Anything else is listed in OUTSIDE with the reason it is in no matrix."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.urls import URLPattern, URLResolver, get_resolver

from tests.test_access_matrix_admin import RIGHTS
from tests.test_access_matrix_api import ENDPOINTS, REPORT_ROUTES, pattern_methods
from tests.test_admin_tenancy import CUSTOM_VIEWS

# The admin site's own views (django.contrib.admin.sites.AdminSite.get_urls): none shows a
# row; autocomplete and view_on_site are tested in tests/test_admin_tenancy.py.
ADMIN_SITE_VIEWS = {"index", "login", "logout", "password_change", "password_change_done",
                    "autocomplete", "jsi18n", "view_on_site", "app_list"}  # fmt: skip
ADMIN_SITE_CALLBACKS = {"catch_all_view"}  # unnamed: a 404 (or a slash redirect)
STANDARD_MODEL_VIEWS = {"changelist", "add", "history", "delete", "change"}

# Routes outside /admin/, /reports/ and /api/v1/, by pattern, and why no matrix has them.
OUTSIDE = {
    "wecom/callback/<str:corp_id>/": "WeCom's signed callbacks (tests/wecom): no user",
    "": "a redirect to /admin/",
    "i18n/setlang/": "the language switch: no data",
    "api/schema/": "the API's schema (login needed): no rows",
    "api/docs/": "the schema's docs page (login needed): no rows",
    "api-auth/login/": "the browsable API's login",
    "api-auth/logout/": "the browsable API's logout",
    "l/<slug:slug>/": "the public landing page of a printed code (tests/channels)",
    "wecom-sandbox/cgi-bin/<path:path>": "the built-in WeCom sandbox (off in production)",
    "wecom-sandbox/qr/<slug:config_id>.png": "the built-in WeCom sandbox (off in production)",
}


def _routes(patterns: list, prefix: str = "", namespace: str = "") -> list:
    """(path, namespaced name, pattern) of every route."""
    found = []
    for pattern in patterns:
        path = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            inner = pattern.namespace or ""
            ns = f"{namespace}:{inner}" if namespace and inner else (inner or namespace)
            found += _routes(pattern.url_patterns, path, ns)
        else:
            assert isinstance(pattern, URLPattern)
            name = f"{namespace}:{pattern.name}" if namespace and pattern.name else pattern.name
            found.append((path, name, pattern))
    return found


ROUTES = _routes(get_resolver().url_patterns)


def _model_prefixes() -> dict[str, str]:
    """admin/<app>/<model>/ -> "<app>_<model>" of every registered model."""
    return {
        f"admin/{model._meta.app_label}/{model._meta.model_name}/": (
            f"{model._meta.app_label}_{model._meta.model_name}"
        )
        for model in admin.site._registry
    }


def _admin_views() -> tuple[set[str], list[str]]:
    """The custom views of the ModelAdmins (by URL name), and the routes unaccounted for."""
    prefixes, custom, unknown = _model_prefixes(), set(), []
    for path, name, pattern in ROUTES:
        if not path.startswith("admin/"):
            continue
        local = name.split(":", 1)[1] if name else None
        prefix = next((p for p in prefixes if path.startswith(p)), None)
        if prefix is None:  # the site's own
            callback = getattr(pattern.callback, "__name__", "")
            if local not in ADMIN_SITE_VIEWS and callback not in ADMIN_SITE_CALLBACKS:
                unknown.append(f"{path} (name {name})")
            continue
        model = prefixes[prefix]
        if local is None:
            if path != f"{prefix}<path:object_id>/":  # Django's redirect to the change page
                unknown.append(f"{path} (no name)")
        elif local not in {f"{model}_{view}" for view in STANDARD_MODEL_VIEWS}:
            custom.add(local)
    return custom, unknown


def test_every_custom_admin_view_is_in_the_matrix():
    custom, unknown = _admin_views()
    assert unknown == [], "admin routes of no ModelAdmin and not the site's own"
    missing = sorted(custom - set(CUSTOM_VIEWS))
    assert missing == [], "custom admin views without a line in CUSTOM_VIEWS (test_admin_tenancy)"
    assert sorted(set(CUSTOM_VIEWS) - custom) == [], "lines in CUSTOM_VIEWS no longer routed"


def test_every_report_route_is_in_the_matrix():
    routed = {name: path for path, name, _ in ROUTES if path.startswith("reports/")}
    missing = sorted(f"{path} (name {name})" for name, path in routed.items()
                     if name not in REPORT_ROUTES)  # fmt: skip
    assert missing == [], "report routes without a line in REPORT_PAGES"
    assert sorted(REPORT_ROUTES - set(routed)) == [], "lines in REPORT_PAGES no longer routed"


def test_every_api_route_and_method_is_in_the_matrix():
    missing = []
    for path, name, pattern in ROUTES:
        if not path.lstrip("^").startswith("api/v1/"):
            continue
        for method in sorted(pattern_methods(pattern)):
            if (name, method) not in ENDPOINTS:
                missing.append(f"{method.upper()} {path} (name {name})")
    assert missing == [], "API routes without a line in ENDPOINTS"


def test_every_other_route_is_known():
    covered = ("admin/", "reports/", "api/v1/")
    other = [path for path, _name, _ in ROUTES if not path.lstrip("^").startswith(covered)]
    assert sorted(set(other) - set(OUTSIDE)) == [], "routes in no matrix and not in OUTSIDE"
    if settings.WECOM_SANDBOX_ENABLED:
        assert sorted(set(OUTSIDE) - set(other)) == [], "lines in OUTSIDE no longer routed"


def test_the_walk_finds_the_known_views():
    """The walk itself: it sees what the matrices hold (a walk that found nothing would pass)."""
    custom, _unknown = _admin_views()
    assert {"channels_app_livecode_png", "contacts_auditlog_pipl"} <= custom
    assert "auth_user_change" not in custom
    assert RIGHTS  # the standard views' matrix
    assert {"reports:channels", "reports:breakdown"} <= {name for _, name, _ in ROUTES}
