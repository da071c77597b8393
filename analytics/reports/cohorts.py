"""Cohort matrices: the customers first added in a day, ISO week or month of the period (one set
of rows per channel, live code or staff member of their first touch, or one for all), and
what they did in the periods after their own first add.

- Rows: first-add cohorts, customers whose first add falls on a corp-local day of from..to
  (the channel report's new_customers), bucketed by the local day, the ISO week (Monday to
  Sunday) or the calendar month of that add; a bucket at either end of the period holds only
  its days inside the period. size: the cohort's customers.
- Columns: ages, counted from each customer's own first add in periods of 1 day (day), 7 days
  (week) or 30 days (month); column k covers the first k+1 periods: from the first add
  (included) to (k+1) periods later (excluded), as the channel report's windows do (column
  N-1 by day is window N; column 0 by week is the 7-day window, by month the 30-day one).
- retention: share of the cohort still a customer at the end of column k: a live relation
  with the corp at that moment; a customer is no longer one from the moment its last live
  relation ended, if it has none now (one who left and came back counts in between).
- revenue: cumulative revenue per customer (LTV): orders minus refunds (refunds negative
  whatever their sign) dated within column k's span, over the cohort's size.
- buyers: cumulative share of the cohort with an order within column k's span.
- A cell is null (immature) while some customer of the cohort has not reached the end of its
  span at the as-of time; the columns run as far as the period's first day allows, up to
  120 days, 104 weeks or 36 months.
"""

# Counted in the database from CustomerCohort (the rollups' per-customer first adds, with the
# moment each stopped being a customer and its first order) and, for revenue, the conversions:
# one grouped query per figure; Python only cumulates the grouped cells.

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import NotSupportedError
from django.db.models import (
    Case,
    Count,
    DecimalField,
    Expression,
    F,
    Func,
    IntegerField,
    Max,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Abs, TruncMonth, TruncWeek
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from analytics.models import CustomerCohort
from analytics.reports.base import CENT, MAX_DAYS, RATE, ReportError, ratio
from analytics.reports.channels import key_names, rollups_computed
from contacts.models import ConversionEvent
from scrm import days
from scrm.wecom.models import Corp

PERIOD_DAYS = {"day": 1, "week": 7, "month": 30}  # the length of one age column
PERIODS = tuple(PERIOD_DAYS)
METRICS = ("retention", "revenue", "buyers")
GROUPS = ("none", "channel", "live_code", "staff")
# Ages shown at most: four months by day, two years by week, three years by month.
MAX_COLUMNS = {"day": 120, "week": 104, "month": 36}
# Cohort days by day at most: a heatmap of more rows than this is unreadable.
MAX_DAYS_BY_DAY = 366
GROUP_FIELD = {"channel": "channel_id", "live_code": "live_code_id", "staff": "staff_id"}
MONEY = DecimalField(max_digits=16, decimal_places=2)
ORDER, REFUND = ConversionEvent.Kind.ORDER, ConversionEvent.Kind.REFUND
CONVERSION = "external_contact__conversions__"  # a cohort row's customer's conversions


@dataclass(frozen=True)
class CohortParams:
    corp: Corp
    first: date
    last: date
    period: str = "month"
    metric: str = "retention"
    by: str = "none"
    channel_type: int | None = None
    channel_group: str = ""
    channel: int | None = None
    live_code: int | None = None

    def validate(self) -> None:
        if self.last < self.first:
            raise ReportError(_("The period ends before it starts."))
        if (self.last - self.first).days >= MAX_DAYS:
            raise ReportError(_("The period is longer than three years."))
        if self.period not in PERIODS:
            raise ReportError(_("Cohorts are by day, week or month."))
        if self.period == "day" and (self.last - self.first).days >= MAX_DAYS_BY_DAY:
            raise ReportError(_("Daily cohorts cover a year at most: choose weeks or months."))
        if self.metric not in METRICS:
            raise ReportError(_("The metric is retention, revenue or buyers."))
        if self.by not in GROUPS:
            raise ReportError(_("Cohorts are split by channel, live code, staff or none."))

    @property
    def period_days(self) -> int:
        return PERIOD_DAYS[self.period]

    def cache_key(self) -> str:
        return (
            f"report:cohorts:{self.corp.pk}:{self.first}:{self.last}:{self.period}:"
            f"{self.metric}:{self.by}:{self.channel_type}:{self.channel_group}:{self.channel}:"
            f"{self.live_code}"
        )


@dataclass(frozen=True)
class CohortResult:
    params: CohortParams
    as_of: datetime
    columns: list[int]  # the ages: 0, 1, ... (periods since the first add)
    # Per row: cohort (the bucket's first day), first and last (its days in the period), key
    # and name (channel, live code or staff; None and "" when by=none), size, cells (the
    # metric, null when immature), counts (the cells' numerators: customers still customers,
    # revenue to date, buyers).
    rows: list[dict[str, Any]]
    # Per age over the rows mature at that age: size, cells and counts (null: none mature).
    totals: dict[str, Any]
    computed_at: datetime | None
    days_not_computed: list[date] = field(default_factory=list)


class PeriodsBetween(Func):
    """Whole periods of `seconds` from `start` to `moment` (both datetimes), rounded down;
    `before=True` counts to just before `moment` (a microsecond), so that an end exactly at a
    period's close falls in that period. Integer arithmetic on both databases, so a moment
    exactly N days after the start is N days, never 29.999..."""

    output_field = IntegerField()

    def __init__(self, moment: Any, start: Any, seconds: int, *, before: bool = False) -> None:
        super().__init__(moment, start)
        self.seconds = seconds
        self.before = before

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        raise NotSupportedError("cohort ages are computed on PostgreSQL and SQLite only")

    def _args(self, compiler: Any, connection: Any) -> tuple[str, str, list]:
        moment, moment_params = compiler.compile(self.source_expressions[0])
        start, start_params = compiler.compile(self.source_expressions[1])
        return moment, start, [*moment_params, *start_params]

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        moment, start, params = self._args(compiler, connection)
        shift = " - 0.000001" if self.before else ""
        sql = f"FLOOR((EXTRACT(EPOCH FROM ({moment} - {start})){shift}) / {int(self.seconds)})"
        return f"({sql})::integer", params

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        # django_timestamp_diff: Django's own SQLite function, whole microseconds; SQLite's
        # integer division truncates, which is rounding down for the non-negative spans here.
        moment, start, params = self._args(compiler, connection)
        shift = " - 1" if self.before else ""
        micro = int(self.seconds) * 1_000_000
        return f"((django_timestamp_diff({moment}, {start}){shift}) / {micro})", params


class CohortReport:
    """The cohort matrix of CohortParams (see the module docstring)."""

    def __init__(self, params: CohortParams, *, now: datetime | None = None) -> None:
        params.validate()
        self.params = params
        self.as_of = now or timezone.now()
        self.seconds = params.period_days * 86_400

    def _customers(self) -> QuerySet:
        params = self.params
        rows = CustomerCohort.objects.filter(
            corp=params.corp, day__gte=params.first, day__lte=params.last
        )
        if params.channel_type is not None:
            rows = rows.filter(channel__channel_type=params.channel_type)
        if params.channel_group:
            rows = rows.filter(channel__category=params.channel_group)
        if params.channel is not None:
            rows = rows.filter(channel_id=params.channel)
        if params.live_code is not None:
            rows = rows.filter(live_code_id=params.live_code)
        return rows

    def _bucket(self) -> Expression:
        period = self.params.period
        if period == "week":
            return TruncWeek("day")
        if period == "month":
            return TruncMonth("day")
        return F("day")

    def _grouped(self, queryset: QuerySet, age: Expression | None, **figures: Any) -> list[dict]:
        """`figures` per cohort bucket, group key and (if given) age."""
        keys: dict[str, Any] = {"cohort_bucket": self._bucket()}
        if self.params.by != "none":
            keys["group_key"] = F(GROUP_FIELD[self.params.by])
        if age is not None:
            keys["age"] = age
        aliased = {f"total_{name}": figure for name, figure in figures.items()}
        rows = queryset.annotate(**keys).values(*keys).annotate(**aliased).order_by()
        return [
            {"cohort": _as_date(row["cohort_bucket"]), "key": row.get("group_key"),
             "age": row.get("age"), **{name: row[f"total_{name}"] for name in figures}}
            for row in rows
        ]  # fmt: skip

    def _histogram(self, moment: str, *, before: bool) -> list[dict]:
        """Customers per cohort, key and the age column of `moment` (null: none), with the
        cohort's last first add."""
        age = PeriodsBetween(moment, "added_at", self.seconds, before=before)
        age = Case(When(**{f"{moment}__isnull": False}, then=age), default=Value(None))
        return self._grouped(self._customers(), age, n=Count("pk"), last=Max("added_at"))

    def _revenue(self) -> list[dict]:
        """Revenue per cohort, key and the age column of the conversion."""
        conversions = self._customers().filter(
            **{f"{CONVERSION}kind__in": [ORDER, REFUND],
               f"{CONVERSION}occurred_at__gte": F("added_at")}
        )  # fmt: skip
        signed = Case(
            When(**{f"{CONVERSION}kind": REFUND}, then=-Abs(f"{CONVERSION}amount")),
            default=F(f"{CONVERSION}amount"),
            output_field=MONEY,
        )
        age = PeriodsBetween(f"{CONVERSION}occurred_at", "added_at", self.seconds)
        return self._grouped(conversions, age, revenue=Sum(signed))

    def calculate(self) -> CohortResult:
        params = self.params
        metric = params.metric
        if metric == "revenue":
            sizes = self._grouped(self._customers(), None, n=Count("pk"), last=Max("added_at"))
            moves = self._revenue()
        else:
            moment = "lapsed_at" if metric == "retention" else "first_order_at"
            sizes = self._histogram(moment, before=metric == "retention")
            moves = sizes
        columns = list(range(self._columns()))
        cohorts: dict[tuple, dict[str, Any]] = {}
        steps: dict[tuple, dict[int, Any]] = defaultdict(lambda: defaultdict(int))
        for row in sizes:
            cohort = cohorts.setdefault((row["cohort"], row["key"]), {"size": 0, "last": None})
            cohort["size"] += row["n"]
            if row["last"] is not None and (cohort["last"] is None or row["last"] > cohort["last"]):
                cohort["last"] = row["last"]
        for row in moves:
            if row["age"] is not None:
                value = row["revenue"] if metric == "revenue" else row["n"]
                steps[(row["cohort"], row["key"])][max(row["age"], 0)] += value or 0
        names = key_names(params.by, [key for _c, key in cohorts]) if params.by != "none" else None
        rows = [
            self._row(cohort, key, figures, steps[(cohort, key)], columns, names)
            for (cohort, key), figures in cohorts.items()
        ]
        rows.sort(key=lambda row: (row["cohort"], row["key"] is None, -row["size"], row["name"]))
        computed_at, missing = rollups_computed(params.corp, params.first, params.last)
        return CohortResult(params, self.as_of, columns, rows, self._totals(rows, columns),
                            computed_at, missing)  # fmt: skip

    def _columns(self) -> int:
        """Ages from the period's first local day to the as-of time, at least one."""
        start = days.day_start(self.params.first, self.params.corp)
        elapsed = (self.as_of - start).total_seconds() if start else 0
        return max(1, min(int(elapsed // self.seconds), MAX_COLUMNS[self.params.period]))

    def _row(
        self,
        cohort: date,
        key: Any,
        figures: dict[str, Any],
        steps: dict[int, Any],
        columns: list[int],
        names: Any,
    ) -> dict[str, Any]:
        params = self.params
        first, last = self._cohort_days(cohort)
        size = figures["size"]
        # The cohort's last customer; rows built before its time was kept: the cohort's end.
        latest = figures["last"] or days.day_start(last, params.corp, days_later=1)
        metric = params.metric
        counts: list[Any] = []
        cells: list[Any] = []
        running: Any = Decimal(0) if metric == "revenue" else 0
        for age in columns:
            running += steps.get(age, 0)
            if latest + timedelta(seconds=self.seconds * (age + 1)) > self.as_of:
                counts.append(None)
                cells.append(None)
                continue
            count = size - running if metric == "retention" else running
            counts.append(Decimal(count).quantize(CENT) if metric == "revenue" else count)
            cells.append(ratio(count, size, CENT if metric == "revenue" else RATE))
        return {
            "cohort": cohort, "first": first, "last": last, "key": key,
            "name": names(key) if names else "", "size": size, "cells": cells, "counts": counts,
        }  # fmt: skip

    def _cohort_days(self, cohort: date) -> tuple[date, date]:
        """The bucket's days inside the period."""
        period = self.params.period
        if period == "day":
            end = cohort
        elif period == "week":
            end = cohort + timedelta(days=6)
        else:
            following = (cohort.replace(day=28) + timedelta(days=4)).replace(day=1)
            end = following - timedelta(days=1)
        return max(cohort, self.params.first), min(end, self.params.last)

    def _totals(self, rows: list[dict[str, Any]], columns: list[int]) -> dict[str, Any]:
        """Per age, the figure over the cohorts mature at that age, weighted by their size."""
        sizes, cells, counts = [], [], []
        for index in columns:
            mature = [row for row in rows if row["counts"][index] is not None]
            size = sum(row["size"] for row in mature)
            count = sum(row["counts"][index] for row in mature) if mature else None
            sizes.append(size if mature else None)
            counts.append(count)
            places = CENT if self.params.metric == "revenue" else RATE
            cells.append(ratio(count, size, places) if mature else None)
        return {"size": sum(row["size"] for row in rows), "sizes": sizes, "cells": cells,
                "counts": counts}  # fmt: skip


def _as_date(value: Any) -> date:
    """A bucket as a date (a truncation may come back as a datetime or, on SQLite, text)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, str):
        return date.fromisoformat(value[:10])
    return value


__all__ = ["CohortParams", "CohortReport", "CohortResult", "PeriodsBetween"]
