"""The channel report (by channel, live code, staff member or channel type) and the daily
trend: the same figures, grouped by a key or by day, read from the rollups in a few grouped
queries (flows, visitors, cohorts, costs, the computed-at of the days)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

from django.db.models import Count, Min, Q, QuerySet, Sum
from django.utils.translation import gettext as _

from analytics.models import DailyCohort, DailyCost, DailyFlow, DailyVisitor, RollupDay
from analytics.reports.base import ReportParams, ReportResult, derive
from analytics.rollups import day_range
from channels_app.models import Channel, LiveCode
from contacts.models import Staff

ZERO = {"scans": 0, "landing_adds": 0, "adds": 0, "lost": 0, "removed": 0, "visitors": 0,
        "new_customers": 0, "consult_72h": 0, "mature_30d": 0, "retained_30d": 0,
        "revenue": Decimal(0), "orders": 0, "buyers": 0, "repeat_buyers": 0}  # fmt: skip
# The rollup column each grouping reads (channel_type through the channel).
GROUP_FIELD = {
    "channel": "channel_id",
    "live_code": "live_code_id",
    "staff": "staff_id",
    "channel_type": "channel__channel_type",
    "day": "day",
}


class _Report:
    group_field: str

    def __init__(self, params: ReportParams) -> None:
        params.validate()
        self.params = params

    def _rows(self, model: type, day_field: str = "day") -> QuerySet:
        params = self.params
        rows = model.objects.filter(
            corp=params.corp,
            **{f"{day_field}__gte": params.first, f"{day_field}__lte": params.last},
        )
        if params.channel_type is not None:
            rows = rows.filter(channel__channel_type=params.channel_type)
        if params.channel_group:
            rows = rows.filter(channel__category=params.channel_group)
        return rows

    def _grouped(self, model: type, **figures: Any) -> dict[Any, dict[str, Any]]:
        # Aliased: an annotation may not take the name of the column it sums.
        aliased = {f"total_{name}": figure for name, figure in figures.items()}
        grouped = self._rows(model).values(self.group_field).annotate(**aliased).order_by()
        return {
            row.pop(self.group_field): {name[6:]: value for name, value in row.items()}
            for row in grouped
        }

    def _aggregate(self, model: type, **figures: Any) -> dict[str, Any]:
        aliased = {f"total_{name}": figure for name, figure in figures.items()}
        return {name[6:]: value for name, value in self._rows(model).aggregate(**aliased).items()}

    def _sums(self, *, grouped: bool) -> dict[Any, dict[str, Any]]:
        """The summed figures per group (or, with grouped=False, the totals under key None)."""
        window = self.params.window
        landing = Q(live_code__mode=LiveCode.Mode.LANDING)
        flows = {"scans": Sum("scans"), "adds": Sum("adds"), "lost": Sum("lost"),
                 "removed": Sum("removed"),
                 "landing_adds": Sum("adds", filter=landing)}  # fmt: skip
        cohorts = {"new_customers": Sum("new_customers"), "consult_72h": Sum("consult_72h"),
                   "mature_30d": Sum("mature_30d"), "retained_30d": Sum("retained_30d"),
                   "revenue": Sum(f"revenue_{window}"), "orders": Sum(f"orders_{window}"),
                   "buyers": Sum(f"buyers_{window}"),
                   "repeat_buyers": Sum(f"repeat_buyers_{window}")}  # fmt: skip
        visitors = {"visitors": Count("device_key", distinct=True)}
        cost = {"cost": Sum("amount")}
        if grouped:
            families = [self._grouped(DailyFlow, **flows), self._grouped(DailyCohort, **cohorts),
                        self._grouped(DailyVisitor, **visitors)]  # fmt: skip
            costs = self._grouped(DailyCost, **cost) if self.has_cost else {}
        else:
            families = [{None: self._aggregate(model, **figures)}
                        for model, figures in ((DailyFlow, flows), (DailyCohort, cohorts),
                                               (DailyVisitor, visitors))]  # fmt: skip
            costs = {None: self._aggregate(DailyCost, **cost)} if self.has_cost else {}
        sums: dict[Any, dict[str, Any]] = defaultdict(lambda: dict(ZERO))
        for family in families:
            for key, figures in family.items():
                sums[key].update({k: v for k, v in figures.items() if v is not None})
        for key in sums:
            # A channel without spend cost 0; rows without a channel, codes and staff: none.
            has_channel = key is not None or not grouped
            sums[key]["cost"] = Decimal(0) if self.has_cost and has_channel else None
        for key, figures in costs.items():
            sums[key]["cost"] = figures["cost"] or Decimal(0)
        return sums

    # Live codes and staff have no cost of their own (a cost names a channel).
    has_cost = True

    def _computed(self) -> tuple[Any, list[date]]:
        params = self.params
        days = RollupDay.objects.filter(
            corp=params.corp, day__gte=params.first, day__lte=params.last,
            computed_at__isnull=False,
        )  # fmt: skip
        computed = set(days.values_list("day", flat=True))
        missing = [day for day in day_range(params.first, params.last) if day not in computed]
        return days.aggregate(at=Min("computed_at"))["at"], missing

    def calculate(self) -> ReportResult:
        rows = [
            {"key": key, **derive(figures)} for key, figures in self._sums(grouped=True).items()
        ]
        names = self._names([row["key"] for row in rows])
        for row in rows:
            row["name"] = names(row["key"])
        rows.sort(key=self._order)
        totals = derive(self._sums(grouped=False)[None])
        computed_at, missing = self._computed()
        return ReportResult(self.params, rows, totals, computed_at, missing)

    def _order(self, row: dict[str, Any]) -> Any:
        return (row["key"] is None, -row["adds"], -row["new_customers"], str(row["name"]))

    def _names(self, keys: list[Any]) -> Callable[[Any], str]:
        raise NotImplementedError


class ChannelReport(_Report):
    """Rows per channel, live code, staff member or channel type (params.group_by)."""

    def __init__(self, params: ReportParams) -> None:
        super().__init__(params)
        self.group_field = GROUP_FIELD[params.group_by]
        self.has_cost = params.group_by in ("channel", "channel_type")

    def _names(self, keys: list[Any]) -> Callable[[Any], str]:
        group_by = self.params.group_by
        unattributed = _("(no channel)") if group_by != "staff" else _("(unknown)")
        if group_by == "channel_type":
            labels = dict(Channel.Type.choices)
            return lambda key: str(labels.get(key, unattributed))
        model = {"channel": Channel, "live_code": LiveCode, "staff": Staff}[group_by]
        ids = [key for key in keys if key is not None]
        if group_by == "staff":
            staff = model.objects.filter(pk__in=ids).values_list("pk", "name", "userid")
            found = {pk: name or userid for pk, name, userid in staff}
            return lambda key: found.get(key, unattributed)
        found = dict(model.objects.filter(pk__in=ids).values_list("pk", "name"))
        return lambda key: found.get(key, unattributed)


class DailyReport(_Report):
    """The same figures per local day of the period (a day with nothing shows zeros)."""

    group_field = "day"

    def calculate(self) -> ReportResult:
        result = super().calculate()
        by_day = {row["key"]: row for row in result.rows}
        empty = derive({**ZERO, "cost": Decimal(0)})
        rows = [
            by_day.get(day) or {"key": day, "name": day.isoformat(), **empty}
            for day in day_range(self.params.first, self.params.last)
        ]
        return ReportResult(result.params, rows, result.totals, result.computed_at,
                            result.days_not_computed)  # fmt: skip

    def _names(self, keys: list[Any]) -> Callable[[Any], str]:
        return lambda key: key.isoformat()

    def _order(self, row: dict[str, Any]) -> Any:
        return row["key"]
