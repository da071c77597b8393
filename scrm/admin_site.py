"""The operators' console: Django's admin site with the product in front. Its index (and the
sidebar) lists the product's sections first, in the order an operator works (channels and live
codes, customers, the report pages, the WeCom gateway), and the framework's own tables
(periodic tasks, API tokens, users and groups) last."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.http import HttpRequest
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

REPORTS_LABEL = "reports"  # not an app: the report pages (/reports/), listed as a section

# Where each section goes; an app not named here comes after the product's and before the
# framework's.
SECTION_ORDER = {
    "channels_app": 0,
    "contacts": 1,
    REPORTS_LABEL: 2,
    "analytics": 3,  # the decisions' settings, next to the reports they steer
    "wecom": 4,
    "wecom_sandbox": 5,
    "django_celery_beat": 20,
    "authtoken": 21,
    "auth": 22,
}
OTHER_APPS = 10

REPORT_PAGES = [
    ("reports:channels", "channels", _("By channel")),
    ("reports:channel_types", "channeltypes", _("By channel type")),
    ("reports:live_codes", "livecodes", _("By live code")),
    ("reports:staff", "staff", _("By staff member")),
    ("reports:cohorts", "cohorts", _("Cohorts")),
    ("reports:anomalies", "anomalies", _("Anomalies")),
    ("reports:quality", "quality", _("Channel quality")),
]


def reports_section() -> dict[str, Any]:
    """The report pages as the index's app_list.html renders a section of view-only lists."""
    models = [
        {"name": name, "object_name": object_name, "admin_url": reverse(url_name),
         "add_url": None, "view_only": True, "perms": {"view": True}}
        for url_name, object_name, name in REPORT_PAGES
    ]  # fmt: skip
    return {"name": _("Reports"), "app_label": REPORTS_LABEL,
            "app_url": reverse("reports:channels"), "has_module_perms": True,
            "models": models}  # fmt: skip


def _shows_surges(request: HttpRequest) -> bool:
    """The index and the live code pages carry the open surge alerts' banner: where operators
    look first, and where they act on a code (one query, not on every admin page)."""
    match = getattr(request, "resolver_match", None)
    user = getattr(request, "user", None)
    if match is None or user is None or not (user.is_active and user.is_staff):
        return False
    url_name = match.url_name or ""
    return url_name == "index" or url_name.startswith("channels_app_livecode_")


class ScrmAdminSite(admin.AdminSite):
    # The operators' console is the product's face: our name, not Django's.
    site_header = _("Channel-attribution SCRM")
    site_title = _("Channel-attribution SCRM")
    index_title = _("Operations console")
    # The index is the console's map; a second one beside every list took a fifth of a
    # 1366-pixel screen from the customers' columns.
    enable_nav_sidebar = False

    def each_context(self, request: HttpRequest) -> dict[str, Any]:
        context = super().each_context(request)
        if _shows_surges(request):
            from analytics.surges import surge_alerts_open

            context["surge_alerts"] = surge_alerts_open(user=request.user)
        return context

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[dict]:
        apps = super().get_app_list(request, app_label)
        if app_label is None:
            apps.append(reports_section())  # every staff user may open the report pages
        return sorted(apps, key=lambda app: SECTION_ORDER.get(app["app_label"], OTHER_APPS))


class ScrmAdminConfig(AdminConfig):
    """Installed instead of django.contrib.admin, so that admin.site is a ScrmAdminSite."""

    default_site = "scrm.admin_site.ScrmAdminSite"
