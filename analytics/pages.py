"""What the report pages show, prepared from the report classes' results: figures formatted
(rates as %, money with ¥ and two decimals, null as "—"), the KPI cards against the previous
period, the tables' rows with their drill-down links, and the charts' data. No query here but
the ones the caller hands over: the pages' query counts stay those of the reports."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import urlencode

from django.urls import reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from analytics.budget import ADVICE_LABELS
from analytics.forms import ReportFilterForm
from analytics.models import Breakdown
from analytics.reports import FIGURES, STAFF_FIGURES, ReportResult
from analytics.reports.staff import PAGE_FIGURES as STAFF_PAGE_FIGURES
from analytics.reports.staff import StaffReportResult
from scrm import days

DASH = "—"
KINDS = {name: kind for name, _label, kind in (*FIGURES, *STAFF_FIGURES)}
LABELS = {name: label for name, label, _kind in (*FIGURES, *STAFF_FIGURES)}
# The KPI cards; for cost per new customer less is better (its rise is shown as bad).
KPI_FIGURES = ("new_customers", "net_adds", "cost_per_new_customer", "revenue", "roi")
LESS_IS_BETTER = {"cost_per_new_customer"}
TREND_FIGURES = ("adds", "lost", "net_adds", "scans")
RANKED = 10  # rows in the ranking chart

# Per grouping: the URL name of its page, its tab, and the heading of its first column.
PAGES: dict[str, dict[str, Any]] = {
    "channel": {"url": "reports:channels", "tab": _("By channel"), "column": _("channel")},
    "channel_type": {"url": "reports:channel_types", "tab": _("By channel type"),
                     "column": _("channel type")},
    "live_code": {"url": "reports:live_codes", "tab": _("By live code"),
                  "column": _("live code")},
    "staff": {"url": "reports:staff", "tab": _("By staff member"), "column": _("staff member")},
    # The breakdowns (one page, by=...): no drill-down, each add credited to its own touch.
    **{by: {"url": "reports:breakdown", "args": (by,), "tab": label, "column": label}
       for by, label in (
           ("utm_source", _("By source (utm_source)")),
           ("utm_medium", _("By medium (utm_medium)")),
           ("utm_campaign", _("By campaign (utm_campaign)")),
           ("device", _("By device")),
           ("add_way", _("By add way")),
       )},
    # The cohort matrices: a page of their own (analytics.views.cohorts), no table column.
    "cohorts": {"url": "reports:cohorts", "tab": _("Cohorts"), "column": _("cohort")},
    # Pages of their own that take the corp only (their periods are their own).
    "quality": {"url": "reports:quality", "tab": _("Channel quality"), "column": _("channel")},
    "anomalies": {"url": "reports:anomalies", "tab": _("Anomalies"), "column": ""},
}  # fmt: skip
CORP_ONLY = frozenset({"quality", "anomalies"})
BREAKDOWNS = frozenset(Breakdown.values)


def page_url(group_by: str) -> str:
    page = PAGES[group_by]
    return reverse(page["url"], args=page.get("args", ()))


API_FILTERS = ("channel_type", "channel_group", "channel", "live_code")


def api_query(params: Any, **fields: Any) -> str:
    """The report API's query string for the report `params` describe (ReportParams or
    CohortParams: corp, period, drill-down filters) and its own `fields`: a page's export links
    ask the API for the rows the page shows."""
    values = {
        "corp": params.corp.corp_id,
        "from": params.first.isoformat(),
        "to": params.last.isoformat(),
        **fields,
    }
    values.update(
        {name: value for name in API_FILTERS if (value := getattr(params, name)) not in (None, "")}
    )
    return urlencode(values)


def exports(params: Any, group_by: str) -> list[dict[str, str]]:
    """The export links of a report page: its table and its daily trend, as CSV and XLSX."""
    common = {"window": params.window, "touch": params.touch}
    if group_by == "staff":
        table = (reverse("report-staff"), api_query(params, **common))
    else:
        table = (reverse("report-channels"), api_query(params, group_by=group_by, **common))
    daily = (reverse("report-daily"), api_query(params, **common))
    return [
        {"label": str(label), "format": answer, "url": f"{url}?{query}&format={answer}"}
        for label, (url, query) in ((_("the table"), table), (_("by day"), daily))
        for answer in ("csv", "xlsx")
    ]


def report_tabs(current: str, corp_query: str, query: str = "", any_touch: str = "") -> list:
    """Every report page's tab, the same row on each page: a link keeps the page's filters
    (`query`; `any_touch` for the breakdowns, which know no first touch), or only the corp
    (`corp_query`) for the pages with periods of their own."""

    def link(name: str) -> str:
        if name in CORP_ONLY or not query:
            return f"{page_url(name)}?{corp_query}"
        return f"{page_url(name)}?{any_touch if name in BREAKDOWNS else query}"

    return [{"label": page["tab"], "url": link(name), "current": name == current}
            for name, page in PAGES.items()]  # fmt: skip


def figure_display(value: Any, kind: str) -> str:
    """A figure as the pages print it: counts with thousands separators, money as ¥1,234.50,
    rates (0..1) as 12.34%; null (no denominator, no cost) as "—"."""
    if value is None:
        return DASH
    if kind == "money":
        amount = Decimal(value).quantize(Decimal("0.01"), ROUND_HALF_UP)
        return f"{'-' if amount < 0 else ''}¥{abs(amount):,.2f}"
    if kind == "rate":
        percent = (Decimal(value) * 100).quantize(Decimal("0.01"), ROUND_HALF_UP)
        return f"{percent:,.2f}%"
    if kind == "minutes":
        return f"{Decimal(value):,.1f}"
    if kind == "flag":
        return "⚠" if value else ""
    return f"{value:,}"


def sort_value(value: Any) -> str:
    """The raw number a column sorts by ("" for null: sorted last either way)."""
    return "" if value is None else str(value)


def change_percent(value: Any, previous: Any) -> Decimal | None:
    """The change against the previous period in %, one decimal; None when either is null or
    the previous is 0 (no base to compare with)."""
    if value is None or previous is None or not previous:
        return None
    change = (Decimal(value) - Decimal(previous)) / abs(Decimal(previous)) * 100
    return change.quantize(Decimal("0.1"), ROUND_HALF_UP)


@dataclass(frozen=True)
class Kpi:
    name: str
    label: str
    value: str
    previous: str
    change: Decimal | None

    @property
    def change_display(self) -> str:
        if self.change is None:
            return DASH
        return f"{'+' if self.change > 0 else ''}{self.change}%"

    @property
    def arrow(self) -> str:
        return "▲" if self.change and self.change > 0 else "▼" if self.change else ""

    @property
    def trend(self) -> str:
        """Up, down or flat, and whether that is good or bad for the business."""
        if not self.change:
            return "flat"
        up = self.change > 0
        good = up != (self.name in LESS_IS_BETTER)
        return f"{'up' if up else 'down'} {'good' if good else 'bad'}"


def kpis(current: dict[str, Any], previous: dict[str, Any], window: int) -> list[Kpi]:
    labels = {
        **LABELS,
        "revenue": gettext("revenue within %(days)s days") % {"days": window},
        "roi": gettext("ROI within %(days)s days") % {"days": window},
    }
    return [
        Kpi(
            name=name,
            label=str(labels[name]),
            value=figure_display(current[name], KINDS[name]),
            previous=figure_display(previous[name], KINDS[name]),
            change=change_percent(current[name], previous[name]),
        )
        for name in KPI_FIGURES
    ]


def day_ranges(missing: list[date]) -> list[str]:
    """Days as runs: 2026-12-01 – 2026-12-03, 2026-12-05."""
    runs: list[list[date]] = []
    for day in sorted(missing):
        if runs and runs[-1][1] + timedelta(days=1) == day:
            runs[-1][1] = day
        else:
            runs.append([day, day])
    return [
        first.isoformat() if first == last else f"{first.isoformat()} – {last.isoformat()}"
        for first, last in runs
    ]


def _cells(row: dict[str, Any], names: tuple[str, ...]) -> list[dict[str, str]]:
    return [
        {"name": name, "kind": KINDS[name], "display": figure_display(row[name], KINDS[name]),
         "sort": sort_value(row[name])}
        for name in names
    ]  # fmt: skip


def _customers_url(form: ReportFilterForm, staff_id: int) -> str:
    """The admin's customer list: those first added by this staff member in the period (and
    through the page's channel and live code); the period as the corp's local days."""
    data = form.cleaned_data
    corp = data["corp"]
    start, end = days.days_bounds(data["first"], data["last"], corp)
    query: dict[str, Any] = {
        "corp__id__exact": corp.pk,
        "first_source__staff__id__exact": staff_id,
        "first_source__added_at__gte": start.isoformat() if start else None,
        "first_source__added_at__lt": end.isoformat() if end else None,
        "first_channel": data["channel"].pk if data.get("channel") else None,
        "first_live_code": data["live_code"].pk if data.get("live_code") else None,
    }
    return (
        reverse("admin:contacts_externalcontact_changelist")
        + "?"
        + urlencode({key: value for key, value in query.items() if value is not None})
    )


def row_link(form: ReportFilterForm, group_by: str, key: Any) -> str:
    """Where a row leads: a channel to its live codes, a channel type to its channels, a live
    code to its staff members, a staff member to the customers themselves."""
    if key is None or group_by in BREAKDOWNS:
        return ""  # "(no channel)", "(unknown)", a utm value: nothing to narrow to
    if group_by == "channel":
        return f"{reverse('reports:live_codes')}?{form.query(channel=key)}"
    if group_by == "channel_type":
        return f"{reverse('reports:channels')}?{form.query(channel_type=key)}"
    if group_by == "live_code":
        return f"{reverse('reports:staff')}?{form.query(live_code=key)}"
    return _customers_url(form, key)


def _budget_cells(advice: dict[str, Any] | None) -> list[dict[str, str]]:
    """A channel's budget advice as cells: median reply time, advice, current and suggested
    share of the spend (analytics.budget)."""
    advice = advice or {}
    minutes = advice.get("median_reply_minutes")
    word = advice.get("advice")
    cells = [
        {"name": "median_reply_minutes", "kind": "count", "sort": sort_value(minutes),
         "display": DASH if minutes is None else f"{minutes}"},
        {"name": "advice", "kind": "text", "sort": word or "",
         "display": str(ADVICE_LABELS[word]) if word else DASH},
        *({"name": name, "kind": "rate", "sort": sort_value(advice.get(name)),
           "display": figure_display(advice.get(name), "rate")}
          for name in ("current_share", "suggested_share")),
    ]  # fmt: skip
    return [{**cell, "budget": True} for cell in cells]


BUDGET_COLUMNS = (
    ("median_reply_minutes", _("median first reply (min)"), "count"),
    ("advice", _("budget advice"), "text"),
    ("current_share", _("share of spend"), "rate"),
    ("suggested_share", _("suggested share"), "rate"),
)


def table(
    form: ReportFilterForm,
    group_by: str,
    result: ReportResult,
    advice: dict[Any, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The table's columns, rows and totals: every figure, or the staff report's own selection
    (a row over the staff alert's share is marked: `alert`); with `advice` (by channel), the
    budget advice's columns after the figures (empty in the totals row)."""
    staff = isinstance(result, StaffReportResult)
    names = STAFF_PAGE_FIGURES if staff else tuple(name for name, _label, _kind in FIGURES)
    columns = [{"name": name, "label": LABELS[name], "kind": KINDS[name]} for name in names]
    if advice is not None:
        columns += [{"name": name, "label": label, "kind": kind, "budget": True}
                    for name, label, kind in BUDGET_COLUMNS]  # fmt: skip
    rows = []
    for row in result.rows:
        cells = _cells(row, names)
        if advice is not None:
            cells += _budget_cells(advice.get(row["key"]))
        rows.append({"key": row["key"], "name": row["name"], "cells": cells,
                     "link": row_link(form, group_by, row["key"]),
                     "alert": staff and row["initiated_alert"]})  # fmt: skip
    totals = _cells(result.totals, names)
    if advice is not None:
        totals += [{"name": name, "kind": kind, "display": "", "budget": True}
                   for name, _l, kind in BUDGET_COLUMNS]  # fmt: skip
    return {"columns": columns, "rows": rows, "totals": totals}


def staff_alert(result: StaffReportResult) -> dict[str, Any]:
    """The staff page's alert box: the corp's threshold and the members above it, highest
    share first."""
    above = sorted(
        (row for row in result.rows if row["initiated_alert"]),
        key=lambda row: -row["initiated_share"],
    )
    return {
        "share": figure_display(result.alert_share, "rate"),
        "rows": [
            {"key": row["key"], "name": row["name"],
             "share": figure_display(row["initiated_share"], "rate"),
             "initiated": row["staff_initiated_adds"], "adds": row["adds"]}
            for row in above
        ],
    }  # fmt: skip


def trend_chart(result: ReportResult) -> dict[str, Any]:
    return {
        "days": [row["key"].isoformat() for row in result.rows],
        "series": [
            {"name": name, "label": str(LABELS[name]), "data": [row[name] for row in result.rows]}
            for name in TREND_FIGURES
        ],
    }


def ranking_chart(result: ReportResult) -> dict[str, Any]:
    """The rows with the most new customers (at most RANKED), largest on top."""
    ranked = sorted(result.rows, key=lambda row: -row["new_customers"])[:RANKED]
    ranked = [row for row in ranked if row["new_customers"]]
    return {
        "names": [str(row["name"]) for row in reversed(ranked)],
        "series": [
            {"name": "new_customers", "label": str(LABELS["new_customers"]),
             "data": [row["new_customers"] for row in reversed(ranked)]},
        ],
    }  # fmt: skip


def status(result: ReportResult, previous: ReportResult, corp: Any) -> dict[str, Any]:
    """When the figures were computed (the corp's local time) and which days are not yet."""
    return {
        "computed_at": days.local_display(result.computed_at, corp),
        "days_not_computed": day_ranges(result.days_not_computed),
        "previous_days_not_computed": len(previous.days_not_computed),
    }


def cohort_label(row: dict[str, Any], period: str) -> str:
    """A cohort row's name on the heatmap: 2026-10-05, 2026-10-05 (week), 2026-10, and its
    channel, code or staff member."""
    cohort = row["cohort"]
    if period == "month":
        text = cohort.strftime("%Y-%m")
    elif period == "week":
        text = gettext("week of %(day)s") % {"day": cohort.isoformat()}
    else:
        text = cohort.isoformat()
    return f"{text} · {row['name']}" if row["name"] else text


def cohort_heatmap(result: Any) -> dict[str, Any]:
    """The heatmap's data: [age, row, value] of the mature cells (rates 0..1, money as
    numbers), [age, row, 0] of the immature ones (drawn apart), the rows' labels and sizes."""
    params = result.params
    kind = "money" if params.metric == "revenue" else "rate"
    cells, pending = [], []
    for y, row in enumerate(result.rows):
        for x, cell in enumerate(row["cells"]):
            if cell is None:
                pending.append([x, y, 0])  # a value, or ECharts draws no cell at all
            else:
                cells.append([x, y, float(cell)])
    return {
        "kind": kind,
        "metric": params.metric,
        "columns": [str(age) for age in result.columns],
        "rows": [cohort_label(row, params.period) for row in result.rows],
        "sizes": [row["size"] for row in result.rows],
        "cells": cells,
        "pending": pending,
        "labels": {"pending": gettext("not mature yet"), "size": gettext("new customers"),
                   "age": gettext("age")},
    }  # fmt: skip


def cohort_table(result: Any) -> dict[str, Any]:
    """The matrix as the page's table: formatted cells, null (immature) as "—"."""
    kind = "money" if result.params.metric == "revenue" else "rate"

    def cells(values: list[Any]) -> list[dict[str, Any]]:
        return [{"display": figure_display(value, kind), "sort": sort_value(value),
                 "mature": value is not None} for value in values]  # fmt: skip

    return {
        "columns": result.columns,
        "rows": [
            {"label": cohort_label(row, result.params.period), "size": row["size"],
             "cells": cells(row["cells"])}
            for row in result.rows
        ],
        "totals": {"size": result.totals["size"], "cells": cells(result.totals["cells"])},
    }  # fmt: skip
