"""The report pages (/reports/): the filter form validates the query string, the report
classes compute (the same ones as the API), analytics.pages prepares what the template shows.

Every page has the same parts: the filters, the KPI cards of the period against the previous
one of equal length, the daily trend, the ranking by new customers, the table (sortable, each
row leading one level down: channel -> live codes -> staff -> the customers in the admin)
and the definitions. A page reads its figures in a fixed number of queries."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _

from analytics import pages, quality_pages
from analytics.budget import BUDGET_DEFINITION, budget_advice
from analytics.definitions import COHORT_DEFINITIONS, DEFINITIONS, STAFF_DEFINITIONS
from analytics.forms import CohortFilterForm, QualityForm, ReportFilterForm
from analytics.quality import PARTS, QUALITY_DEFINITIONS, quality_overview
from analytics.reports import ChannelReport, DailyReport, StaffReport
from analytics.reports.cohorts import CohortReport
from analytics.selectors import channel_groups
from scrm import days
from scrm.wecom import tenancy

ECHARTS_VERSION = "6.1.0"  # static/vendor/echarts/<version>/ (see static/vendor/README.md)
TEMPLATE = "analytics/report.html"
COHORT_TEMPLATE = "analytics/cohorts.html"


def _base_context(request: HttpRequest, group_by: str) -> dict[str, Any]:
    return {
        **admin.site.each_context(request),
        "is_nav_sidebar_enabled": False,  # the tables need the width
        "title": _("Channel report"),
        "group_by": group_by,
        "echarts_js": f"vendor/echarts/{ECHARTS_VERSION}/echarts.min.js",
        "definitions": DEFINITIONS,
    }


def _tabs(form: ReportFilterForm, group_by: str) -> list[dict[str, Any]]:
    return pages.report_tabs(
        group_by,
        urlencode({"corp": form.cleaned_data["corp"].corp_id}),
        form.query(drill_down=False),
        form.query(drill_down=False, any_touch=True),  # breakdowns know no first touch
    )


def _report_page(request: HttpRequest, group_by: str) -> HttpResponse:
    context = _base_context(request, group_by)
    corps = list(tenancy.corps_for_user(request.user, tenancy.READ))
    if not corps:
        return render(request, TEMPLATE, {**context, "no_corps": True})
    form = ReportFilterForm(request.GET, corps=corps, breakdown=group_by in pages.BREAKDOWNS)
    if not form.is_valid():
        form.channel_groups([])
        return render(request, TEMPLATE, {**context, "form": form}, status=400)

    corp = form.cleaned_data["corp"]
    staff = group_by == "staff"  # the staff report: its own figures and alert
    report = (StaffReport if staff else ChannelReport)(form.params(group_by))
    table = report.calculate()
    # Budget advice by channel only (a cost names a channel); shown, never applied.
    advice = budget_advice(report, table) if group_by == "channel" else None
    # The period's totals are the table's (the same rollups whatever the grouping): the trend
    # needs its days only, the previous period its totals only.
    trend = DailyReport(form.params(group_by)).calculate(totals=False)
    previous = DailyReport(form.params(group_by, previous=True)).calculate(rows=False)
    shown = ReportFilterForm(
        initial=form.resolved(), corps=corps, breakdown=group_by in pages.BREAKDOWNS
    )
    shown.channel_groups(channel_groups(corp=corp))
    return render(
        request,
        TEMPLATE,
        {
            **context,
            "form": shown,
            "corp": corp,
            "params": table.params,
            "previous": previous.params,
            "channel": form.cleaned_data["channel"],
            "live_code": form.cleaned_data["live_code"],
            "channels_url_query": form.query(drill_down=False),
            "channel_query": form.query(drill_down=False, channel=table.params.channel),
            "tabs": _tabs(form, group_by),
            "column": pages.PAGES[group_by]["column"],
            "kpis": pages.kpis(table.totals, previous.totals, table.params.window),
            "table": pages.table(form, group_by, table, advice),
            "budget_definition": BUDGET_DEFINITION if advice is not None else "",
            "trend_chart": pages.trend_chart(trend),
            "ranking_chart": pages.ranking_chart(table),
            "status": pages.status(table, previous, corp),
            "exports": pages.exports(table.params, group_by),
            **({"staff_alert": pages.staff_alert(table),
                "definitions": (*DEFINITIONS, *STAFF_DEFINITIONS)} if staff else {}),
        },
    )  # fmt: skip


@login_required(login_url="admin:login")
def channels(request: HttpRequest) -> HttpResponse:
    """The dashboard: channels (or, with ?channel_type=, the channels of one type)."""
    return _report_page(request, "channel")


@login_required(login_url="admin:login")
def channel_types(request: HttpRequest) -> HttpResponse:
    return _report_page(request, "channel_type")


@login_required(login_url="admin:login")
def live_codes(request: HttpRequest) -> HttpResponse:
    """Live codes (with ?channel=, one channel's)."""
    return _report_page(request, "live_code")


@login_required(login_url="admin:login")
def staff(request: HttpRequest) -> HttpResponse:
    """Staff members (with ?live_code=, those who received that code's customers)."""
    return _report_page(request, "staff")


@login_required(login_url="admin:login")
def breakdown(request: HttpRequest, by: str) -> HttpResponse:
    """By utm_source, utm_medium, utm_campaign, device class or add_way (?channel= narrows)."""
    if by not in pages.BREAKDOWNS:
        raise Http404(_("No such breakdown."))
    return _report_page(request, by)


QUALITY_TEMPLATE = "analytics/quality.html"


@login_required(login_url="admin:login")
def quality(request: HttpRequest) -> HttpResponse:
    """The channel quality ranking: the latest hour's, each channel's parts, ranks over time."""
    context = {
        **admin.site.each_context(request),
        "is_nav_sidebar_enabled": False,
        "title": _("Channel quality"),
        "echarts_js": f"vendor/echarts/{ECHARTS_VERSION}/echarts.min.js",
        "definitions": QUALITY_DEFINITIONS,
    }
    corps = list(tenancy.corps_for_user(request.user, tenancy.READ))
    if not corps:
        return render(request, QUALITY_TEMPLATE, {**context, "no_corps": True})
    form = QualityForm(request.GET, corps=corps)
    if not form.is_valid():
        return render(request, QUALITY_TEMPLATE, {**context, "form": form}, status=400)
    corp = form.cleaned_data["corp"]
    overview = quality_overview(corp=corp, history_days=form.cleaned_data["days"])
    shown = QualityForm(initial={"corp": corp.corp_id, "days": form.cleaned_data["days"]},
                        corps=corps)  # fmt: skip
    return render(
        request,
        QUALITY_TEMPLATE,
        {
            **context,
            "form": shown,
            "corp": corp,
            "tabs": pages.report_tabs("quality", urlencode({"corp": corp.corp_id})),
            "overview": overview,
            "computed_at": days.local_display(overview.computed_at, corp),
            "parts": [
                {"name": name, "label": label, "weight": overview.weights[name]}
                for name, label in PARTS
            ],
            "table": quality_pages.quality_table(overview),
            "parts_chart": quality_pages.quality_parts_chart(overview),
            "rank_chart": quality_pages.quality_rank_chart(overview, corp),
        },
    )


@login_required(login_url="admin:login")
def cohorts(request: HttpRequest) -> HttpResponse:
    """The cohort matrix as a heatmap and a table (the same report class as the API's
    /api/v1/reports/cohorts/, which also exports it)."""
    context = {
        **_base_context(request, "cohorts"),
        "title": _("Cohort report"),
        "cohort_definitions": COHORT_DEFINITIONS,
    }
    corps = list(tenancy.corps_for_user(request.user, tenancy.READ))
    if not corps:
        return render(request, COHORT_TEMPLATE, {**context, "no_corps": True})
    form = CohortFilterForm(request.GET, corps=corps)
    if not form.is_valid():
        form.channel_groups([])
        return render(request, COHORT_TEMPLATE, {**context, "form": form}, status=400)
    corp = form.cleaned_data["corp"]
    result = CohortReport(form.params()).calculate()
    shown = CohortFilterForm(initial=form.resolved(), corps=corps)
    shown.channel_groups(channel_groups(corp=corp))
    params = result.params
    export = pages.api_query(params, period=params.period, metric=params.metric, by=params.by)
    return render(
        request,
        COHORT_TEMPLATE,
        {
            **context,
            "form": shown,
            "corp": corp,
            "params": params,
            "channel": form.cleaned_data["channel"],
            "live_code": form.cleaned_data["live_code"],
            "tabs": _tabs(form, "cohorts"),
            "heatmap": pages.cohort_heatmap(result),
            "matrix": pages.cohort_table(result),
            "export_query": export,
            "status": {
                "computed_at": days.local_display(result.computed_at, corp),
                "days_not_computed": pages.day_ranges(result.days_not_computed),
            },
        },
    )
