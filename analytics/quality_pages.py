"""What the quality page shows, prepared from analytics.quality's overview: the ranking table
with each part's raw figure and normalised bar, the score's parts as a stacked bar chart, and
the top channels' ranks over time. No query here."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from analytics.pages import DASH, figure_display
from analytics.quality import PARTS, QualityOverview
from scrm import days

PART_KINDS = {"scans": "count", "scan_to_add": "rate", "consult_72h_rate": "rate",
              "reply_speed": "minutes", "retained_30d_rate": "rate",
              "revenue_per_customer": "money"}  # fmt: skip
CHARTED = 20  # channels in the parts chart
RANK_LINES = 10  # channels (the current best) in the rank-over-time chart


def _display(value: Any, kind: str) -> str:
    if kind == "minutes":
        return DASH if value is None else f"{value}"
    return figure_display(value, kind)


def quality_table(overview: QualityOverview) -> list[dict[str, Any]]:
    return [
        {
            **{key: row[key] for key in ("rank", "channel", "name", "score", "new_customers",
                                         "top")},
            "parts": [
                {"name": part["name"], "display": _display(part["value"], PART_KINDS[part["name"]]),
                 "normalised": part["normalised"],
                 "percent": int(part["normalised"] * 100)}
                for part in row["parts"]
            ],
        }
        for row in overview.rows
    ]  # fmt: skip


def quality_parts_chart(overview: QualityOverview) -> dict[str, Any]:
    """Each of the best channels' score split into its parts' contributions (weight x
    normalised part / total weight x 100: the parts add up to the score)."""
    total = sum(overview.weights.values()) or 1
    rows = list(reversed(overview.rows[:CHARTED]))  # ECharts draws a category axis bottom-up
    labels = dict(PARTS)
    return {
        "names": [row["name"] for row in rows],
        "series": [
            {"name": part, "label": str(labels[part]),
             "data": [float((Decimal(100) * row_part["normalised"] * row_part["weight"]
                             / total).quantize(Decimal("0.01")))
                      for row in rows for row_part in row["parts"] if row_part["name"] == part]}
            for part, _label in PARTS
        ],
    }  # fmt: skip


def quality_rank_chart(overview: QualityOverview, corp: Any) -> dict[str, Any]:
    """The current best channels' ranks at each hour of the history (null: not ranked)."""
    best = {row["channel"]: row["name"] for row in overview.rows[:RANK_LINES]}
    hours = sorted({item["computed_at"] for item in overview.history})
    ranks: dict[int, dict[Any, int]] = {channel: {} for channel in best}
    for item in overview.history:
        if item["channel_id"] in ranks:
            ranks[item["channel_id"]][item["computed_at"]] = item["rank"]
    return {
        "hours": [days.local_display(hour, corp)[:16] for hour in hours],
        "series": [
            {"name": str(channel), "label": name,
             "data": [ranks[channel].get(hour) for hour in hours]}
            for channel, name in best.items()
        ],
    }  # fmt: skip
