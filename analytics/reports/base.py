"""What every report shares: its parameters, its result, and the figures, defined once here
(the page and the API docs print these definitions).

- Day: the corp's local day. Period: from..to inclusive.
- scans: scans of landing codes in the period; visitors: distinct devices among them.
- adds: add events in the period (re-adds included), each credited to its own attribution
  (any touch, the default) or to the customer's first touch (touch=first);
  new_customers: customers whose first add falls in the period (first touch decides the
  channel, live code and staff).
- lost: deletions by the customer; removed: removals by the staff member (each credited to the
  add it ended); net_adds = adds - lost - removed.
- scan_to_add: adds through landing codes / scans (null without scans: native codes have none).
- consult_72h_rate: share of new customers with a consult within 72 hours of their first add.
  A window starts at the first add (included) and ends N days or 72 hours later (excluded).
- retained_30d_rate: share of the new customers first added at least 30 days before the rollup
  was computed who still had a live relation with the corp 30 days after that add;
  pending_30d: the new customers whose 30 days are not over (not counted as lost).
- window N in {7, 15, 30}: revenue = orders minus refunds dated within N days after the first
  add, credited to the first touch; orders, buyers (customers with an order), repurchase_rate
  = buyers with 2 or more orders / buyers.
- cost: the channels' spend spread evenly over the days of each cost's range, summed over the
  period (live codes and staff have no cost of their own: null); cost_per_new_customer = cost
  / new_customers; roi = revenue / cost (null when the cost is 0 or null).
Rates are decimals in 0..1, or null when the denominator is 0; money is Decimal in the corp's
currency.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.utils.translation import gettext_lazy as _

from analytics.models import WINDOWS, Breakdown, Touch
from scrm.wecom.models import Corp

MAX_DAYS = 3 * 366  # a period longer than this is refused: reports are for years, not ages
RATE = Decimal("0.0001")
CENT = Decimal("0.01")
GROUPS = ("channel", "live_code", "staff", "channel_type", *Breakdown.values)

# (name, label, kind): kind is "count", "money" or "rate", for formatting and exports.
FIGURES: tuple[tuple[str, Any, str], ...] = (
    ("scans", _("scans"), "count"),
    ("visitors", _("visitors"), "count"),
    ("adds", _("adds"), "count"),
    ("new_customers", _("new customers"), "count"),
    ("lost", _("deleted by customers"), "count"),
    ("removed", _("removed by staff"), "count"),
    ("net_adds", _("net adds"), "count"),
    ("scan_to_add", _("scan to add"), "rate"),
    ("consult_72h_rate", _("consulted within 72 h"), "rate"),
    ("retained_30d_rate", _("retained after 30 days"), "rate"),
    ("pending_30d", _("30 days not over"), "count"),
    ("revenue", _("revenue"), "money"),
    ("orders", _("orders"), "count"),
    ("buyers", _("buyers"), "count"),
    ("repurchase_rate", _("repurchase rate"), "rate"),
    ("cost", _("cost"), "money"),
    ("cost_per_new_customer", _("cost per new customer"), "money"),
    ("roi", _("ROI"), "rate"),
)


class ReportError(ValueError):
    """Parameters a report cannot be computed for; the message says why (shown as a 400)."""


@dataclass(frozen=True)
class ReportParams:
    corp: Corp
    first: date
    last: date
    window: int = 30
    group_by: str = "channel"
    channel_type: int | None = None
    channel_group: str = ""
    touch: str = Touch.ANY  # flows (adds, lost, removed) credited to their own add or first touch
    # Drill-down: one channel's rows, one live code's (a code has no cost: cost is null then).
    channel: int | None = None
    live_code: int | None = None

    def validate(self) -> None:
        if self.last < self.first:
            raise ReportError(_("The period ends before it starts."))
        if (self.last - self.first).days >= MAX_DAYS:
            raise ReportError(_("The period is longer than three years."))
        if self.window not in WINDOWS:
            raise ReportError(_("The window is 7, 15 or 30 days."))
        if self.group_by not in GROUPS:
            raise ReportError(_("Unknown grouping: %(group)s") % {"group": self.group_by})
        if self.touch not in Touch.values:
            raise ReportError(_("Credit to any touch or the first touch."))
        if self.touch == Touch.FIRST and self.group_by in Breakdown.values:
            raise ReportError(_("Breakdowns credit each add to its own touch only."))
        if self.live_code is not None and self.group_by in Breakdown.values:
            raise ReportError(_("Breakdowns are kept per channel, not per live code."))

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def cache_key(self, report: str) -> str:
        return (
            f"report:{report}:{self.corp.pk}:{self.first}:{self.last}:{self.window}:"
            f"{self.group_by}:{self.channel_type}:{self.channel_group}:{self.channel}:"
            f"{self.live_code}:{self.touch}"
        )


@dataclass(frozen=True)
class ReportResult:
    params: ReportParams
    rows: list[dict[str, Any]]
    totals: dict[str, Any]
    computed_at: datetime | None  # the oldest rebuild of the period's days; None: never
    days_not_computed: list[date] = field(default_factory=list)


def ratio(numerator: Any, denominator: Any, places: Decimal = RATE) -> Decimal | None:
    if numerator is None or not denominator:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(places)


def derive(figures: dict[str, Any]) -> dict[str, Any]:
    """The figures derived from the summed ones (see the module docstring)."""
    cost = figures.get("cost")
    if cost is not None:
        cost = Decimal(cost).quantize(CENT)
    revenue = Decimal(figures["revenue"]).quantize(CENT)
    return {
        **{name: figures.get(name, 0) for name in ("scans", "visitors", "adds", "new_customers",
                                                   "lost", "removed", "orders", "buyers")},
        "net_adds": figures["adds"] - figures["lost"] - figures["removed"],
        "scan_to_add": ratio(figures["landing_adds"], figures["scans"]),
        "consult_72h_rate": ratio(figures["consult_72h"], figures["new_customers"]),
        "retained_30d_rate": ratio(figures["retained_30d"], figures["mature_30d"]),
        "pending_30d": figures["new_customers"] - figures["mature_30d"],
        "revenue": revenue,
        "repurchase_rate": ratio(figures["repeat_buyers"], figures["buyers"]),
        "cost": cost,
        "cost_per_new_customer": ratio(cost, figures["new_customers"], CENT),
        "roi": ratio(revenue, cost),
    }  # fmt: skip
