"""The channel report (by channel, live code, staff member or channel type) and the daily
trend: the same figures, grouped by a key or by day, read from the rollups in a few grouped
queries (flows, visitors, cohorts, costs, the computed-at of the days)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import Count, F, Min, QuerySet, Sum
from django.db.models.functions import Collate
from django.utils.translation import gettext as _

from analytics.models import (
    Breakdown,
    DailyCohort,
    DailyCohortBreakdown,
    DailyCost,
    DailyFlow,
    DailyFlowBreakdown,
    DailyVisitor,
    RollupDay,
)
from analytics.reports.base import ReportParams, ReportResult, derive
from analytics.rollups import FLOW_FIGURES, SCAN_BREAKDOWNS, day_range
from channels_app.models import Channel, LiveCode, Scan
from contacts.add_ways import add_way_label
from contacts.models import Staff

ZERO = {
    "scans": 0,
    "landing_adds": 0,
    "staff_initiated_adds": 0,
    "adds": 0,
    "lost": 0,
    "removed": 0,
    "visitors": 0,
    "new_customers": 0,
    "consult_72h": 0,
    "mature_30d": 0,
    "retained_30d": 0,
    "revenue": Decimal(0),
    "orders": 0,
    "buyers": 0,
    "repeat_buyers": 0,
}
# The rollup column each grouping reads (channel_type through the channel).
GROUP_FIELD = {
    "channel": "channel_id",
    "live_code": "live_code_id",
    "staff": "staff_id",
    "channel_type": "channel__channel_type",
    "day": "day",
}


def _bytewise(field: str) -> Collate | F:
    """`field` compared byte by byte (PostgreSQL's "C" collation): the same distinct values as
    the database's deterministic default collation, counted without its locale-aware sort (a
    third faster on a year of devices). Other databases compare bytes already."""
    if connection.vendor == "postgresql":
        return Collate(F(field), "C")
    return F(field)


class _Report:
    group_field: str

    def __init__(self, params: ReportParams) -> None:
        params.validate()
        self.params = params
        if params.live_code is not None:
            self.has_cost = False  # a cost names a channel, never one of its codes

    # The rollups a grouping reads: by channel, code, staff, type or day the main ones; by a
    # breakdown (utm_*, device, add_way) those of that breakdown, grouped by its value.
    flow_model: type = DailyFlow
    cohort_model: type = DailyCohort
    breakdown: str = ""
    visitor_field: str | None = None  # the visitors' group column, when not group_field

    def _rows(self, model: type) -> QuerySet:
        params = self.params
        rows = model.objects.filter(corp=params.corp, day__gte=params.first, day__lte=params.last)
        if model in (DailyFlowBreakdown, DailyCohortBreakdown):
            rows = rows.filter(breakdown=self.breakdown)
        if model is DailyFlow:
            rows = rows.filter(touch=params.touch)
        if params.channel_type is not None:
            rows = rows.filter(channel__channel_type=params.channel_type)
        if params.channel_group:
            rows = rows.filter(channel__category=params.channel_group)
        if params.channel is not None:
            rows = rows.filter(channel_id=params.channel)
        if params.live_code is not None:  # never DailyCost: has_cost is off (see __init__)
            rows = rows.filter(live_code_id=params.live_code)
        return rows

    def cohort_rows(self) -> QuerySet[DailyCohort]:
        """The first-touch cohort rollups this report reads (its corp, period and filters), for
        figures computed beside it (the channels' reply times: analytics.reply_times)."""
        return self._rows(DailyCohort)

    def _grouped(
        self, model: type, field: str | None = None, **figures: Any
    ) -> dict[Any, dict[str, Any]]:
        # Aliased: an annotation may not take the name of the column it sums.
        field = field or self.group_field
        aliased = {f"total_{name}": figure for name, figure in figures.items()}
        grouped = self._rows(model).values(field).annotate(**aliased).order_by()
        return {row.pop(field): {name[6:]: value for name, value in row.items()} for row in grouped}

    def _aggregate(self, model: type, **figures: Any) -> dict[str, Any]:
        aliased = {f"total_{name}": figure for name, figure in figures.items()}
        return {name[6:]: value for name, value in self._rows(model).aggregate(**aliased).items()}

    def _sums(self, *, grouped: bool) -> dict[Any, dict[str, Any]]:
        """The summed figures per group (or, with grouped=False, the totals under key None)."""
        window = self.params.window
        flows = {name: Sum(name) for name in FLOW_FIGURES}
        cohorts = {
            "new_customers": Sum("new_customers"),
            "consult_72h": Sum("consult_72h"),
            "mature_30d": Sum("mature_30d"),
            "retained_30d": Sum("retained_30d"),
            "revenue": Sum(f"revenue_{window}"),
            "orders": Sum(f"orders_{window}"),
            "buyers": Sum(f"buyers_{window}"),
            "repeat_buyers": Sum(f"repeat_buyers_{window}"),
        }
        visitors = {"visitors": Count(_bytewise("device_key"), distinct=True)}
        cost = {"cost": Sum("amount")}
        if grouped:
            families = [
                self._grouped(self.flow_model, **flows),
                self._grouped(self.cohort_model, **cohorts),
            ]
            if self.visitor_field != "":
                families.append(self._grouped(DailyVisitor, self.visitor_field, **visitors))
            costs = self._grouped(DailyCost, **cost) if self.has_cost else {}
        else:  # the totals: the same whatever the grouping, from the main rollups
            families = [
                {None: self._aggregate(model, **figures)}
                for model, figures in (
                    (DailyFlow, flows),
                    (DailyCohort, cohorts),
                    (DailyVisitor, visitors),
                )
            ]
            # A cost names a channel, never one of its codes: none under a live code's filter.
            costs = {None: self._aggregate(DailyCost, **cost)} if self._costs_in_totals else {}
        sums: dict[Any, dict[str, Any]] = defaultdict(lambda: dict(ZERO))
        for family in families:
            for key, figures in family.items():
                sums[key].update({k: v for k, v in figures.items() if v is not None})
        for key in sums:
            # A channel without spend cost 0; rows without a channel, codes and staff: none.
            has_cost = self.has_cost if grouped else self._costs_in_totals
            has_channel = key is not None or not grouped
            sums[key]["cost"] = Decimal(0) if has_cost and has_channel else None
        for key, figures in costs.items():
            sums[key]["cost"] = figures["cost"] or Decimal(0)
        return sums

    # Live codes and staff have no cost of their own (a cost names a channel).
    has_cost = True

    @property
    def _costs_in_totals(self) -> bool:
        return self.params.live_code is None

    def _computed(self) -> tuple[Any, list[date]]:
        return rollups_computed(self.params.corp, self.params.first, self.params.last)

    def calculate(self, *, rows: bool = True, totals: bool = True) -> ReportResult:
        """The rows and the totals; a page that has one of them from another report of the same
        period asks for the other only (rows=False: no rows; totals=False: totals {})."""
        found = []
        if rows:
            found = [
                {"key": key, **self._derive(figures)}
                for key, figures in self._sums(grouped=True).items()
            ]
            names = self._names([row["key"] for row in found])
            for row in found:
                row["name"] = names(row["key"])
            found.sort(key=self._order)
        summed = self._derive(self._sums(grouped=False)[None]) if totals else {}
        computed_at, missing = self._computed()
        return ReportResult(self.params, found, summed, computed_at, missing)

    def _derive(self, figures: dict[str, Any]) -> dict[str, Any]:
        """A row's figures from its sums (a report with figures of its own adds them)."""
        return derive(figures)

    def _order(self, row: dict[str, Any]) -> Any:
        return (row["key"] is None, -row["adds"], -row["new_customers"], str(row["name"]))

    def _names(self, keys: list[Any]) -> Callable[[Any], str]:
        raise NotImplementedError


class ChannelReport(_Report):
    """Rows per channel, live code, staff member or channel type (params.group_by)."""

    def __init__(self, params: ReportParams) -> None:
        super().__init__(params)
        group_by = params.group_by
        if group_by in Breakdown.values:
            self.flow_model, self.cohort_model = DailyFlowBreakdown, DailyCohortBreakdown
            self.breakdown, self.group_field = group_by, "value"
            # Visitors by the scan's own utm and device; an add_way no scan has ("": none).
            self.visitor_field = group_by if group_by in SCAN_BREAKDOWNS else ""
        else:
            self.group_field = GROUP_FIELD[group_by]
        self.has_cost = self.has_cost and group_by in ("channel", "channel_type")

    def _names(self, keys: list[Any]) -> Callable[[Any], str]:
        group_by = self.params.group_by
        if self.breakdown:
            return _breakdown_name(self.breakdown)
        if group_by == "channel_type":
            labels = dict(Channel.Type.choices)
            return lambda key: str(labels.get(key, _("(no channel)")))
        return key_names(group_by, keys)


class DailyReport(_Report):
    """The same figures per local day of the period (a day with nothing shows zeros)."""

    group_field = "day"

    def calculate(self, *, rows: bool = True, totals: bool = True) -> ReportResult:
        result = super().calculate(rows=rows, totals=totals)
        if not rows:
            return result
        by_day = {row["key"]: row for row in result.rows}
        empty = derive({**ZERO, "cost": Decimal(0) if self.has_cost else None})
        rows_by_day = [
            by_day.get(day) or {"key": day, "name": day.isoformat(), **empty}
            for day in day_range(self.params.first, self.params.last)
        ]
        return ReportResult(
            result.params, rows_by_day, result.totals, result.computed_at, result.days_not_computed
        )

    def _names(self, keys: list[Any]) -> Callable[[Any], str]:
        return lambda key: key.isoformat()

    def _order(self, row: dict[str, Any]) -> Any:
        return row["key"]


def key_names(group_by: str, keys: list[Any]) -> Callable[[Any], str]:
    """The names of channels, live codes or staff members (`group_by`) by id, in one query;
    none (no channel, an unknown staff member) in words."""
    unattributed = _("(no channel)") if group_by != "staff" else _("(unknown)")
    model = {"channel": Channel, "live_code": LiveCode, "staff": Staff}[group_by]
    ids = [key for key in keys if key is not None]
    if group_by == "staff":
        staff = model.objects.filter(pk__in=ids).values_list("pk", "name", "userid")
        found = {pk: name or userid for pk, name, userid in staff}
        return lambda key: found.get(key, unattributed)
    found = dict(model.objects.filter(pk__in=ids).values_list("pk", "name"))
    return lambda key: found.get(key, unattributed)


def rollups_computed(corp: Any, first: date, last: date) -> tuple[Any, list[date]]:
    """The oldest rebuild of the corp's days first..last (None: never) and the days never
    rebuilt."""
    days = RollupDay.objects.filter(
        corp=corp, day__gte=first, day__lte=last, computed_at__isnull=False
    )
    computed = set(days.values_list("day", flat=True))
    missing = [day for day in day_range(first, last) if day not in computed]
    return days.aggregate(at=Min("computed_at"))["at"], missing


def _breakdown_name(breakdown: str) -> Callable[[Any], str]:
    """A breakdown value in words: a device class or add_way by its label, "" as none."""
    devices = dict(Scan.Device.choices)

    def name(value: Any) -> str:
        if value in (None, ""):
            return _("(none)")
        if breakdown == Breakdown.DEVICE:
            return str(devices.get(value, value))
        if breakdown == Breakdown.ADD_WAY:
            return str(add_way_label(int(value))) if str(value).isdigit() else str(value)
        return str(value)

    return name
