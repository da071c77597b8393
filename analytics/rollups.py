"""The rollups' one rebuild: recompute and replace a corp's local days from the facts, in one
transaction (idempotent; never `+= 1`). Every figure is counted in the database, grouped by
the corp-local day (scrm.days); Python only merges the grouped rows of the figure families.

Facts read: scans, the relation history (adds with their Attribution; deletions by the
customer and removals by staff, credited to the add they ended), first sources (the cohort of
a customer is the day of its first add, and its first touch decides channel, code and staff),
conversions (consults, orders, refunds) and channel costs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from django.db import transaction
from django.db.models import (
    Case,
    Count,
    DateTimeField,
    DecimalField,
    Exists,
    ExpressionWrapper,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Abs, Coalesce
from django.utils import timezone

from analytics.lock_objects import rollup_state_lock
from analytics.models import (
    WINDOWS,
    DailyCohort,
    DailyCost,
    DailyFlow,
    DailyVisitor,
    RollupDay,
)
from channels_app.models import Attribution, ChannelCost, Scan
from contacts.models import ConversionEvent, FirstSource, RelationEvent
from scrm import days
from scrm.wecom.models import Corp

CONSULT_WINDOW = timedelta(hours=72)
RETENTION_DAYS = 30
# A relation ends with these; a failed transfer leaves it as it was.
ENDINGS = (
    RelationEvent.Kind.DELETED_BY_CUSTOMER,
    RelationEvent.Kind.DELETED_BY_STAFF,
    RelationEvent.Kind.TRANSFERRED,
)
KEY = ("day", "channel_id", "live_code_id", "staff_id")
MONEY = DecimalField(max_digits=16, decimal_places=2)
COST_PLACES = Decimal("0.000001")


def day_range(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


@transaction.atomic
def rollups_rebuild(*, corp: Corp, first: date, last: date, now: datetime | None = None) -> None:
    """Recompute and replace the corp's rollups of the local days first..last (flows and
    visitors of those days, cohorts first added on them, costs spread over them) and mark the
    days computed. `now` is the as-of time of the 30-day retention (default: now)."""
    now = now or timezone.now()
    rollup_state_lock(corp=corp)
    start, end = days.days_bounds(first, last, corp)
    for model in (DailyFlow, DailyVisitor, DailyCohort, DailyCost):
        model.objects.filter(corp=corp, day__gte=first, day__lte=last).delete()
    DailyFlow.objects.bulk_create(_flows(corp, start, end), batch_size=1000)
    DailyVisitor.objects.bulk_create(_visitors(corp, start, end), batch_size=1000)
    DailyCohort.objects.bulk_create(_cohorts(corp, start, end, now), batch_size=1000)
    DailyCost.objects.bulk_create(_costs(corp, first, last), batch_size=1000)
    RollupDay.objects.bulk_create(
        [RollupDay(corp=corp, day=day, computed_at=now, dirty=False)
         for day in day_range(first, last)],
        update_conflicts=True, unique_fields=["corp", "day"],
        update_fields=["computed_at", "dirty"], batch_size=1000,
    )  # fmt: skip


# -- flows -------------------------------------------------------------------------------------


def _grouped(queryset: QuerySet, time_field: str, corp: Corp, **keys: object) -> QuerySet:
    """Rows of `queryset` counted per local day of `time_field` and the key columns."""
    return (
        queryset.annotate(day=days.local_day(time_field, corp), **keys)
        .values(*KEY)
        .annotate(n=Count("pk"))
        .order_by()
    )


def _ended_add(field: str) -> Subquery:
    """The `field` of the Attribution of the add a deletion ended: the relation's latest add
    at or before it."""
    adds = Attribution.objects.filter(
        follow_relation=OuterRef("follow_relation"), added_at__lte=OuterRef("occurred_at")
    ).order_by("-added_at", "-pk")
    return Subquery(adds.values(field)[:1])


def _flows(corp: Corp, start: datetime, end: datetime) -> list[DailyFlow]:
    scans = _grouped(
        Scan.objects.filter(corp=corp, created_at__gte=start, created_at__lt=end),
        "created_at", corp, channel_id=F("live_code__channel_id"),
    )  # fmt: skip
    adds = _grouped(
        Attribution.objects.filter(corp=corp, added_at__gte=start, added_at__lt=end),
        "added_at", corp,
    )  # fmt: skip
    endings = RelationEvent.objects.filter(corp=corp, occurred_at__gte=start, occurred_at__lt=end)
    families = {
        "scans": scans,
        "adds": adds,
        "lost": endings.filter(kind=RelationEvent.Kind.DELETED_BY_CUSTOMER),
        "removed": endings.filter(kind=RelationEvent.Kind.DELETED_BY_STAFF),
    }
    for name in ("lost", "removed"):
        families[name] = _grouped(
            families[name], "occurred_at", corp,
            channel_id=_ended_add("channel_id"), live_code_id=_ended_add("live_code_id"),
        )  # fmt: skip
    rows: dict[tuple, dict[str, int]] = defaultdict(dict)
    for name, queryset in families.items():
        for row in queryset:
            rows[tuple(row[k] for k in KEY)][name] = row["n"]
    return [DailyFlow(corp=corp, **dict(zip(KEY, key, strict=True)), **figures)
            for key, figures in rows.items()]  # fmt: skip


def _visitors(corp: Corp, start: datetime, end: datetime) -> list[DailyVisitor]:
    devices = (
        Scan.objects.filter(corp=corp, created_at__gte=start, created_at__lt=end)
        .exclude(device_key="")
        .annotate(day=days.local_day("created_at", corp), channel_id=F("live_code__channel_id"))
        .values(*KEY, "device_key")
        .distinct()
        .order_by()
    )
    return [DailyVisitor(corp=corp, **row) for row in devices]


# -- cohorts -----------------------------------------------------------------------------------


def _after_first_add(delta: timedelta) -> ExpressionWrapper:
    """The first add's time plus `delta`, from inside a subquery over the customer's rows."""
    return ExpressionWrapper(OuterRef("added_at") + delta, output_field=DateTimeField())


def _conversions(kinds: Iterable[str], until: timedelta) -> QuerySet:
    """The customer's conversions of `kinds` from its first add to `until` after it."""
    return ConversionEvent.objects.filter(
        external_contact=OuterRef("external_contact"),
        kind__in=list(kinds),
        occurred_at__gte=OuterRef("added_at"),
        occurred_at__lt=_after_first_add(until),  # [first add, first add + until)
    )


def _per_customer(queryset: QuerySet, total: object, output_field: object) -> Coalesce:
    """One figure of one customer, as a correlated subquery (0 when it has no rows)."""
    value = queryset.order_by().values("external_contact").annotate(v=total).values("v")
    return Coalesce(Subquery(value, output_field=output_field), Value(0), output_field=output_field)


def _live_after_first_add(delta: timedelta) -> Exists:
    """Whether the customer had a live relation with the corp `delta` after its first add (a
    first source's row is the outer query): an add at or before then, not ended by then by a
    deletion, removal or transfer of the same relation."""

    def moment(first_source: OuterRef) -> ExpressionWrapper:
        return ExpressionWrapper(first_source + delta, output_field=DateTimeField())

    ended = RelationEvent.objects.filter(
        follow_relation=OuterRef("follow_relation"),
        kind__in=ENDINGS,
        occurred_at__gte=OuterRef("occurred_at"),
        occurred_at__lte=moment(OuterRef(OuterRef("added_at"))),
    )
    return Exists(
        RelationEvent.objects.filter(
            external_contact=OuterRef("external_contact"),
            kind=RelationEvent.Kind.ADDED,
            occurred_at__lte=moment(OuterRef("added_at")),
        ).filter(~Exists(ended))
    )


def _cohorts(corp: Corp, start: datetime, end: datetime, now: datetime) -> list[DailyCohort]:
    order, refund = ConversionEvent.Kind.ORDER, ConversionEvent.Kind.REFUND
    # Refunds are negative revenue whatever sign the sender used.
    signed = Case(When(kind=refund, then=-Abs("amount")), default=F("amount"), output_field=MONEY)
    per_customer: dict[str, object] = {
        "consulted": Exists(_conversions([ConversionEvent.Kind.CONSULT], CONSULT_WINDOW)),
        "retained": _live_after_first_add(timedelta(days=RETENTION_DAYS)),
    }
    for n in WINDOWS:
        window = timedelta(days=n)
        per_customer[f"rev{n}"] = _per_customer(
            _conversions([order, refund], window), Sum(signed), MONEY
        )
        per_customer[f"ord{n}"] = _per_customer(
            _conversions([order], window), Count("pk"), IntegerField()
        )
    mature = Q(added_at__lte=now - timedelta(days=RETENTION_DAYS))
    figures: dict[str, object] = {
        "new_customers": Count("pk"),
        "consult_72h": Count("pk", filter=Q(consulted=True)),
        "mature_30d": Count("pk", filter=mature),
        "retained_30d": Count("pk", filter=mature & Q(retained=True)),
    }
    for n in WINDOWS:
        figures[f"revenue_{n}"] = Coalesce(Sum(f"rev{n}"), Value(0), output_field=MONEY)
        figures[f"orders_{n}"] = Coalesce(Sum(f"ord{n}"), Value(0))
        figures[f"buyers_{n}"] = Count("pk", filter=Q(**{f"ord{n}__gte": 1}))
        figures[f"repeat_buyers_{n}"] = Count("pk", filter=Q(**{f"ord{n}__gte": 2}))
    first_touch = "add_event__attribution__"
    rows = (
        FirstSource.objects.filter(corp=corp, added_at__gte=start, added_at__lt=end)
        .annotate(
            day=days.local_day("added_at", corp),
            channel_id=F(f"{first_touch}channel_id"),
            live_code_id=F(f"{first_touch}live_code_id"),
            **per_customer,
        )
        .values(*KEY)
        .annotate(**figures)
        .order_by()
    )
    return [DailyCohort(corp=corp, **row) for row in rows]


# -- costs -------------------------------------------------------------------------------------


def cost_per_day(cost: ChannelCost) -> dict[date, Decimal]:
    """A cost spread evenly over the days of its range, to six decimals, the last day taking
    the remainder so that the days add up to the cost exactly."""
    spans = list(day_range(cost.start_date, cost.end_date))
    share = (cost.amount / len(spans)).quantize(COST_PLACES, rounding=ROUND_DOWN)
    spread = dict.fromkeys(spans, share)
    spread[spans[-1]] = cost.amount - share * (len(spans) - 1)
    return spread


def _costs(corp: Corp, first: date, last: date) -> list[DailyCost]:
    costs = ChannelCost.objects.filter(corp=corp, start_date__lte=last, end_date__gte=first)
    per_day: dict[tuple[date, int], Decimal] = defaultdict(Decimal)
    for cost in costs.only("channel_id", "start_date", "end_date", "amount"):
        for day, amount in cost_per_day(cost).items():
            if first <= day <= last:
                per_day[(day, cost.channel_id)] += amount
    return [DailyCost(corp=corp, day=day, channel_id=channel_id, amount=amount)
            for (day, channel_id), amount in per_day.items()]  # fmt: skip
