"""The rollups' one rebuild: recompute and replace a corp's local days from the facts, in one
transaction (idempotent; never `+= 1`). Every figure is counted in the database, grouped by
the corp-local day (scrm.days); Python only merges the grouped rows of the figure families.

Facts read: scans, the relation history (adds with their Attribution and initiator; deletions
by the customer and removals by staff, credited to the add they ended), first sources (the
cohort of a customer is the day of its first add, and its first touch decides channel, code
and staff), conversions (consults, orders, refunds), channel costs, and the live codes' daily
counters against their pool members' caps.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from itertools import islice
from typing import Any

from django.db import transaction
from django.db.models import (
    BooleanField,
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
    Breakdown,
    CustomerCohort,
    DailyCapUse,
    DailyCohort,
    DailyCohortBreakdown,
    DailyCost,
    DailyFlow,
    DailyFlowBreakdown,
    DailyVisitor,
    RollupDay,
    Touch,
)
from channels_app.models import (
    Attribution,
    ChannelCost,
    DailyCounter,
    LiveCode,
    PoolMember,
    Scan,
)
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
FIRST_TOUCH = "add_event__attribution__"  # from a first source to its add's attribution
FLOW_FIGURES = ("scans", "adds", "landing_adds", "staff_initiated_adds", "lost", "removed")
# Families of adds counted apart, keyed as the adds are.
ADD_FAMILIES = ("adds", "landing_adds", "staff_initiated_adds")
SCAN_BREAKDOWNS = ("utm_source", "utm_medium", "utm_campaign", "device")
BATCH = 1000  # rows per INSERT
# Days computed at a time: a month of a large corp's grouped rows fits in tens of MB.
CHUNK_DAYS = 31
MONEY = DecimalField(max_digits=16, decimal_places=2)
COST_PLACES = Decimal("0.000001")


def day_range(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def _chunks(first: date, last: date) -> Iterator[tuple[date, date]]:
    """first..last in ranges of at most CHUNK_DAYS days."""
    while first <= last:
        chunk_last = min(last, first + timedelta(days=CHUNK_DAYS - 1))
        yield first, chunk_last
        first = chunk_last + timedelta(days=1)


def _insert(model: type, rows: Iterable) -> None:
    """INSERT `rows` (model instances, possibly a generator) BATCH at a time: a rebuild's
    memory is that of a batch, not of a year of customers."""
    rows = iter(rows)
    while batch := list(islice(rows, BATCH)):
        model.objects.bulk_create(batch)


@transaction.atomic
def rollups_rebuild(*, corp: Corp, first: date, last: date, now: datetime | None = None) -> None:
    """Recompute and replace the corp's rollups of the local days first..last (flows and
    visitors of those days, cohorts first added on them, costs spread over them) and mark the
    days computed. `now` is the as-of time of the 30-day retention (default: now).

    One transaction (readers see the old rollups or the new, never half), computed CHUNK_DAYS
    at a time: every rollup row belongs to one day, so the chunks are independent, and the
    memory a rebuild needs is that of one chunk's grouped rows, whatever the range."""
    now = now or timezone.now()
    rollup_state_lock(corp=corp)
    for chunk_first, chunk_last in _chunks(first, last):
        _rebuild_days(corp, chunk_first, chunk_last, now)


def _rebuild_days(corp: Corp, first: date, last: date, now: datetime) -> None:
    start, end = days.days_bounds(first, last, corp)
    for model in (
        DailyFlow,
        DailyFlowBreakdown,
        DailyVisitor,
        CustomerCohort,
        DailyCohort,
        DailyCohortBreakdown,
        DailyCost,
        DailyCapUse,
    ):
        model.objects.filter(corp=corp, day__gte=first, day__lte=last).delete()
    facts = _Facts(corp, start, end)
    _insert(DailyFlow, _flows(facts))
    _insert(DailyFlowBreakdown, _flow_breakdowns(facts))
    _insert(DailyVisitor, _visitors(facts))
    _insert(CustomerCohort, _customer_cohorts(facts, now))
    customers = CustomerCohort.objects.filter(corp=corp, day__gte=first, day__lte=last)
    _insert(DailyCohort, _cohorts(customers, corp))
    _insert(DailyCohortBreakdown, _cohort_breakdowns(customers, corp))
    _insert(DailyCost, _costs(corp, first, last))
    _insert(DailyCapUse, _cap_uses(corp, first, last))
    RollupDay.objects.bulk_create(
        [
            RollupDay(corp=corp, day=day, computed_at=now, dirty=False)
            for day in day_range(first, last)
        ],
        update_conflicts=True,
        unique_fields=["corp", "day"],
        update_fields=["computed_at", "dirty"],
        batch_size=BATCH,
    )


# -- flows -------------------------------------------------------------------------------------


def _ended_add(field: str) -> Subquery:
    """The `field` of the Attribution of the add a deletion ended: the relation's latest add
    at or before it."""
    adds = Attribution.objects.filter(
        follow_relation=OuterRef("follow_relation"), added_at__lte=OuterRef("occurred_at")
    ).order_by("-added_at", "-pk")
    return Subquery(adds.values(field)[:1])


# Where each breakdown's value is, from a scan, from an add's Attribution, and from a first
# source (the first touch's attribution and add); None: the fact has no such value (a scan has
# no add_way).
BREAKDOWN_PATHS: dict[str, tuple[str | None, str, str]] = {
    Breakdown.UTM_SOURCE: ("utm_source", "scan__utm_source", f"{FIRST_TOUCH}scan__utm_source"),
    Breakdown.UTM_MEDIUM: ("utm_medium", "scan__utm_medium", f"{FIRST_TOUCH}scan__utm_medium"),
    Breakdown.UTM_CAMPAIGN: (
        "utm_campaign",
        "scan__utm_campaign",
        f"{FIRST_TOUCH}scan__utm_campaign",
    ),
    Breakdown.DEVICE: ("device", "scan__device", f"{FIRST_TOUCH}scan__device"),
    Breakdown.ADD_WAY: (None, "add_event__add_way", "add_way"),
}


class _Facts:
    """The facts of a corp's local-day range, each family with the expression of its keys."""

    def __init__(self, corp: Corp, start: datetime, end: datetime) -> None:
        self.corp = corp
        self.scans = Scan.objects.filter(corp=corp, created_at__gte=start, created_at__lt=end)
        self.adds = Attribution.objects.filter(corp=corp, added_at__gte=start, added_at__lt=end)
        endings = RelationEvent.objects.filter(
            corp=corp, occurred_at__gte=start, occurred_at__lt=end
        )
        self.lost = endings.filter(kind=RelationEvent.Kind.DELETED_BY_CUSTOMER)
        self.removed = endings.filter(kind=RelationEvent.Kind.DELETED_BY_STAFF)
        self.first_sources = FirstSource.objects.filter(
            corp=corp, added_at__gte=start, added_at__lt=end
        )

    def counted(self, keys: dict[str, dict[str, object]]) -> dict[str, list[dict[str, Any]]]:
        """Each family counted per local day and its `keys` (family -> {name: expression});
        a family missing from `keys` is left out."""
        families = {
            "scans": (self.scans, "created_at"),
            "adds": (self.adds, "added_at"),
            "landing_adds": (self.adds.filter(live_code__mode=LiveCode.Mode.LANDING), "added_at"),
            "staff_initiated_adds": (
                self.adds.filter(add_event__initiator=RelationEvent.Initiator.STAFF),
                "added_at",
            ),
            "lost": (self.lost, "occurred_at"),
            "removed": (self.removed, "occurred_at"),
        }
        counted = {}
        for name, (queryset, time_field) in families.items():
            family_keys = keys.get("adds" if name in ADD_FAMILIES else name)
            if family_keys is None:
                continue
            # Keys are annotated under names of their own (a key named like one of the model's
            # columns would clash), and each row is read back under the key's name.
            aliased = {f"key_{key}": value for key, value in family_keys.items()}
            counted[name] = [
                {"day": row["day"], "n": row["n"],
                 **{key: row[f"key_{key}"] for key in family_keys}}
                for row in queryset.annotate(day=days.local_day(time_field, self.corp), **aliased)
                .values("day", *aliased)
                .annotate(n=Count("pk"))
                .order_by()
            ]  # fmt: skip
        return counted


def _merged(
    counted: dict[str, list[dict[str, Any]]], key: tuple[str, ...]
) -> dict[tuple, dict[str, int]]:
    rows: dict[tuple, dict[str, int]] = defaultdict(dict)
    for name, grouped in counted.items():
        for row in grouped:
            rows[tuple(row[k] for k in key)][name] = row["n"]
    return rows


def _flows(facts: _Facts) -> list[DailyFlow]:
    """Flow rows credited two ways: to the add each fact belongs to (any touch), and to the
    customer's first touch (scans belong to their code either way: no customer yet)."""
    ended = {
        "channel_id": _ended_add("channel_id"),
        "live_code_id": _ended_add("live_code_id"),
        "staff_id": F("staff_id"),
    }
    own = {
        "channel_id": F("channel_id"),
        "live_code_id": F("live_code_id"),
        "staff_id": F("staff_id"),
    }
    first = "external_contact__first_source__"
    first_touch = {
        "channel_id": F(f"{first}{FIRST_TOUCH}channel_id"),
        "live_code_id": F(f"{first}{FIRST_TOUCH}live_code_id"),
        "staff_id": F(f"{first}staff_id"),
    }
    scans = {**own, "channel_id": F("live_code__channel_id")}
    credited = {
        Touch.ANY: {"scans": scans, "adds": own, "lost": ended, "removed": ended},
        Touch.FIRST: {"scans": scans, "adds": first_touch, "lost": first_touch,
                      "removed": first_touch},
    }  # fmt: skip
    return [
        DailyFlow(corp=facts.corp, touch=touch, **dict(zip(KEY, key, strict=True)), **figures)
        for touch, keys in credited.items()
        for key, figures in _merged(facts.counted(keys), KEY).items()
    ]


def _flow_breakdowns(facts: _Facts) -> list[DailyFlowBreakdown]:
    found = []
    for breakdown, (scan_path, add_path, _first_path) in BREAKDOWN_PATHS.items():
        add_value = {"channel_id": F("channel_id"), "value": F(add_path)}
        ended = {"channel_id": _ended_add("channel_id"), "value": _ended_add(add_path)}
        keys = {"adds": add_value, "lost": ended, "removed": ended}
        if scan_path is not None:
            keys["scans"] = {"channel_id": F("live_code__channel_id"), "value": F(scan_path)}
        for (day, channel_id, value), figures in _merged(
            facts.counted(keys), ("day", "channel_id", "value")
        ).items():
            found.append(
                DailyFlowBreakdown(
                    corp=facts.corp,
                    day=day,
                    channel_id=channel_id,
                    breakdown=breakdown,
                    value=_text(value),
                    **figures,
                )
            )
    return _summed_by_text(found, FLOW_FIGURES)


def _text(value: object) -> str:
    """A breakdown's value as stored: text, empty for none (a native add has no scan)."""
    return "" if value is None else str(value)


def _summed_by_text(rows: list, figures: tuple[str, ...]) -> list:
    """Rows whose values differ only before _text (None and "") summed into one."""
    merged: dict[tuple, Any] = {}
    for row in rows:
        key = (row.day, row.channel_id, row.breakdown, row.value)
        if key in merged:
            for name in figures:
                setattr(merged[key], name, getattr(merged[key], name) + getattr(row, name))
        else:
            merged[key] = row
    return list(merged.values())


def _visitors(facts: _Facts) -> Iterator[DailyVisitor]:
    devices = (
        facts.scans.exclude(device_key="")
        .annotate(
            day=days.local_day("created_at", facts.corp), channel_id=F("live_code__channel_id")
        )
        .values(*KEY, "device_key", *SCAN_BREAKDOWNS)
        .distinct()
        .order_by()
    )
    for row in devices.iterator(chunk_size=BATCH):
        yield DailyVisitor(corp=facts.corp, **row)


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


def _lapsed_at() -> Case:
    """When the customer (a first source's row is the outer query) stopped being a customer for
    the last time: the latest ending of its relations, when none of them is live now (an add
    not ended since, as in _live_after_first_add); null while it is a customer. A customer
    who left and came back counts as a customer in between."""
    ended = RelationEvent.objects.filter(
        follow_relation=OuterRef("follow_relation"),
        kind__in=ENDINGS,
        occurred_at__gte=OuterRef("occurred_at"),
    )
    live = RelationEvent.objects.filter(
        external_contact=OuterRef("external_contact"), kind=RelationEvent.Kind.ADDED
    ).filter(~Exists(ended))
    last_ending = RelationEvent.objects.filter(
        external_contact=OuterRef("external_contact"), kind__in=ENDINGS
    ).order_by("-occurred_at")
    return Case(
        When(Exists(live), then=Value(None)),
        default=Subquery(last_ending.values("occurred_at")[:1]),
        output_field=DateTimeField(),
    )


def _first_order_at() -> Subquery:
    """The customer's first order at or after its first add."""
    orders = ConversionEvent.objects.filter(
        external_contact=OuterRef("external_contact"),
        kind=ConversionEvent.Kind.ORDER,
        occurred_at__gte=OuterRef("added_at"),
    ).order_by("occurred_at")
    return Subquery(orders.values("occurred_at")[:1], output_field=DateTimeField())


def _customer_cohorts(facts: _Facts, now: datetime) -> Iterator[CustomerCohort]:
    """Each customer first added in the range, with its first touch and what followed: the
    per-customer subqueries run once here, and the cohort tables are sums of these rows."""
    order, refund = ConversionEvent.Kind.ORDER, ConversionEvent.Kind.REFUND
    # Refunds are negative revenue whatever sign the sender used.
    signed = Case(When(kind=refund, then=-Abs("amount")), default=F("amount"), output_field=MONEY)
    figures: dict[str, object] = {
        "consulted": Exists(_conversions([ConversionEvent.Kind.CONSULT], CONSULT_WINDOW)),
        "mature": Case(
            When(added_at__lte=now - timedelta(days=RETENTION_DAYS), then=True),
            default=False,
            output_field=BooleanField(),
        ),
        "retained": _live_after_first_add(timedelta(days=RETENTION_DAYS)),
        "lapsed_at": _lapsed_at(),
        "first_order_at": _first_order_at(),
    }
    for n in WINDOWS:
        window = timedelta(days=n)
        figures[f"revenue_{n}"] = _per_customer(
            _conversions([order, refund], window), Sum(signed), MONEY
        )
        figures[f"orders_{n}"] = _per_customer(
            _conversions([order], window), Count("pk"), IntegerField()
        )
    touch = {name: F(first_path) for name, (_s, _a, first_path) in BREAKDOWN_PATHS.items()}
    rows = facts.first_sources.annotate(
        day=days.local_day("added_at", facts.corp),
        channel_id=F(f"{FIRST_TOUCH}channel_id"),
        live_code_id=F(f"{FIRST_TOUCH}live_code_id"),
        **{f"touch_{name}": value for name, value in touch.items()},
        **figures,
    ).values(
        "external_contact_id", "added_at", *KEY, *(f"touch_{name}" for name in touch), *figures
    )
    for row in rows.iterator(chunk_size=BATCH):
        values = {name: _text(row.pop(f"touch_{name}")) for name in touch}
        yield CustomerCohort(corp=facts.corp, **values, **row)


def _cohort_sums(customers: QuerySet, key: tuple[str, ...]) -> QuerySet:
    """The cohort figures (CohortFigures) summed over customers per `key`."""
    sums: dict[str, object] = {
        "new_customers": Count("pk"),
        "consult_72h": Count("pk", filter=Q(consulted=True)),
        "mature_30d": Count("pk", filter=Q(mature=True)),
        "retained_30d": Count("pk", filter=Q(mature=True, retained=True)),
    }
    for n in WINDOWS:
        sums[f"revenue_{n}"] = Sum(f"revenue_{n}")
        sums[f"orders_{n}"] = Sum(f"orders_{n}")
        sums[f"buyers_{n}"] = Count("pk", filter=Q(**{f"orders_{n}__gte": 1}))
        sums[f"repeat_buyers_{n}"] = Count("pk", filter=Q(**{f"orders_{n}__gte": 2}))
    aliased = {f"total_{name}": value for name, value in sums.items()}
    return [
        {**{k: row[k] for k in key}, **{name: row[f"total_{name}"] for name in sums}}
        for row in customers.values(*key).annotate(**aliased).order_by()
    ]


def _cohorts(customers: QuerySet, corp: Corp) -> list[DailyCohort]:
    return [DailyCohort(corp=corp, **row) for row in _cohort_sums(customers, KEY)]


def _cohort_breakdowns(customers: QuerySet, corp: Corp) -> list[DailyCohortBreakdown]:
    return [
        DailyCohortBreakdown(corp=corp, breakdown=breakdown, value=row.pop(breakdown), **row)
        for breakdown in BREAKDOWN_PATHS
        for row in _cohort_sums(customers, ("day", "channel_id", breakdown))
    ]


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
    return [
        DailyCost(corp=corp, day=day, channel_id=channel_id, amount=amount)
        for (day, channel_id), amount in per_day.items()
    ]


# -- caps --------------------------------------------------------------------------------------


def _cap_uses(corp: Corp, first: date, last: date) -> Iterator[DailyCapUse]:
    """The days' counters of staff members with a cap on the code (enabled, above 0), with
    what the cap is checked against: visits assigned on a landing code, adds on a native one
    (channels_app.services.assignment)."""
    caps = PoolMember.objects.filter(
        live_code=OuterRef("live_code"),
        staff=OuterRef("staff"),
        is_enabled=True,
        daily_cap__gt=0,
    ).values("daily_cap")[:1]
    used = Case(
        When(live_code__mode=LiveCode.Mode.LANDING, then=F("assigned")),
        default=F("added"),
        output_field=IntegerField(),
    )
    rows = (
        DailyCounter.objects.filter(corp=corp, day__gte=first, day__lte=last)
        .annotate(cap=Subquery(caps, output_field=IntegerField()), used=used,
                  channel_id=F("live_code__channel_id"))
        .filter(cap__isnull=False)
        .values("day", "channel_id", "live_code_id", "staff_id", "used", "cap")
        .order_by()
    )  # fmt: skip
    for row in rows.iterator(chunk_size=BATCH):
        yield DailyCapUse(corp=corp, **row)
