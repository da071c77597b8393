"""Budget advice on the channel report (by channel): whether a channel's customers wait too
long for a first reply to deserve its spend. Shown on the page and in the API; never applied.

- median_reply_minutes: the median first-reply time of the staff members who received the
  channel's new customers in the period, one value per new customer (analytics.reply_times:
  grouped (channel, staff member, new customers) rows from the cohort rollups, the members'
  reply time from WeCom's get_user_behavior_data); null without any.
- advice: "reduce" above the corp's reduce threshold (DecisionSettings, 4 h by default),
  "increase" below its increase threshold (2 h), else "keep"; null without a reply time.
- current_share: the channel's cost / the cost of all the report's channels, in the period.
- suggested_share: the current share x 0.8 (reduce), x 1.2 (increase) or x 1 (keep, or no
  reply time), then renormalised so the channels' suggested shares add up to 1 again. Null
  when the report's channels cost nothing. A channel without spend keeps 0.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.utils.translation import gettext_lazy as _

from analytics.models import decision_settings_for
from analytics.reply_times import channel_reply_medians
from analytics.reports import ChannelReport, ReportResult
from analytics.reports.base import RATE

STEP = Decimal("0.2")  # how far one piece of advice moves a share: x0.8 or x1.2
REDUCE, INCREASE, KEEP = "reduce", "increase", "keep"
ADVICE_LABELS = {REDUCE: _("reduce"), INCREASE: _("increase"), KEEP: _("keep")}
FACTORS = {REDUCE: 1 - STEP, INCREASE: 1 + STEP, KEEP: Decimal(1), None: Decimal(1)}

BUDGET_DEFINITION = _(
    "Budget advice (channels only, never applied automatically): the median first-reply time "
    "of the staff members who received the channel's new customers, one value per customer; "
    "above the corp's threshold (4 hours by default) the advice is to reduce the budget, below "
    "its other threshold (2 hours) to increase it, else to keep it. The suggested share of the "
    "spend is the channel's current share × 0.8 (reduce), × 1.2 (increase) or × 1, "
    "renormalised so that the shares add up to 100 %."
)


def _advice(minutes: Decimal | None, reduce_above: Decimal, increase_below: Decimal) -> str | None:
    if minutes is None:
        return None
    if minutes > reduce_above:
        return REDUCE
    if minutes < increase_below:
        return INCREASE
    return KEEP


def budget_advice(report: ChannelReport, result: ReportResult) -> dict[Any, dict[str, Any]]:
    """Per channel row of `result` (the channel report computed by `report`): the advice
    (see the module docstring). Two queries: the corp's settings, the grouped reply times."""
    settings = decision_settings_for(report.params.corp)
    reduce_above = settings.budget_reduce_above_hours * 60
    increase_below = settings.budget_increase_below_hours * 60
    medians = channel_reply_medians(report.cohort_rows())
    rows = [row for row in result.rows if row["key"] is not None]
    total_cost = sum((row["cost"] or Decimal(0) for row in rows), Decimal(0))
    advice = {}
    for row in rows:
        minutes = medians.get(row["key"])
        share = (row["cost"] or Decimal(0)) / total_cost if total_cost else None
        advice[row["key"]] = {
            "median_reply_minutes": minutes,
            "advice": _advice(minutes, reduce_above, increase_below),
            "current_share": share,
        }
    weighted = {
        key: item["current_share"] * FACTORS[item["advice"]]
        for key, item in advice.items()
        if item["current_share"] is not None
    }
    weighted_total = sum(weighted.values(), Decimal(0))
    for key, item in advice.items():
        suggested = weighted[key] / weighted_total if key in weighted and weighted_total else None
        item["suggested_share"] = suggested.quantize(RATE) if suggested is not None else None
        if item["current_share"] is not None:
            item["current_share"] = item["current_share"].quantize(RATE)
    return advice
