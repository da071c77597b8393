"""The channel quality score and its hourly ranking (the definitions the page and the API
print are QUALITY_DEFINITIONS below; keep them in step with the code).

- Period: the last `quality_days` local days of the corp, today included (DecisionSettings).
- Channels ranked: the corp's active channels.
- Parts, each the channel report's own figure for the period (analytics.reports: one rule per
  figure), credited to the first touch where the report does: scans (scan volume; no scans is
  no value), scan_to_add, consult_72h_rate, reply_speed (the median first-reply time in minutes
  of the channel's new customers' staff members: analytics.reply_times; lower is better),
  retained_30d_rate, revenue_per_customer (revenue within 30 days of the first add / new
  customers).
- Normalised across the ranked channels, min-max: (value - min) / (max - min), reversed for
  reply speed ((max - value) / (max - min)); min and max over the channels with a value. A
  channel without a value for a part (no scans: a native code; no new customers; no mature
  cohort; no reply time) gets 0 for that part. When every channel with a value has the same
  one (a tie, or a single channel), each of them gets 1.
- Score = 100 x sum(weight x normalised part) / sum(weights), two decimals (0..100).
- Rank: by score, highest first; an equal score goes to the channel with more new customers,
  then to the older channel (lower id). Every rank is distinct.
- Recomputed every hour by beat (analytics.tasks.quality_scores_all_task); each hour's ranking
  is kept (QualityScore) for HISTORY_DAYS days and a recomputation within the hour replaces it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Max, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from analytics.models import DecisionSettings, QualityScore, decision_settings_for
from analytics.reply_times import channel_reply_medians
from analytics.reports import ChannelReport, ReportParams
from analytics.reports.base import ratio
from channels_app.models import Channel
from scrm import days
from scrm.wecom.models import Corp

HISTORY_DAYS = 90  # hourly rankings kept: 200 channels x 24 h x 90 days = 432,000 rows
REVENUE_WINDOW = 30  # revenue per new customer: within 30 days of the first add
NORMAL = Decimal("0.0001")
SCORE = Decimal("0.01")
# The parts in the order of DecisionSettings.quality_weights(), with their labels.
PARTS: tuple[tuple[str, Any], ...] = (
    ("scans", _("scan volume")),
    ("scan_to_add", _("scan to add")),
    ("consult_72h_rate", _("consulted within 72 h")),
    ("reply_speed", _("reply speed")),
    ("retained_30d_rate", _("retained after 30 days")),
    ("revenue_per_customer", _("revenue per new customer")),
)
LOWER_IS_BETTER = frozenset({"reply_speed"})

QUALITY_DEFINITIONS = (
    _(
        "Period: the last days of the corp set in its decision settings (30 by default), "
        "today included, as the corp's local days. Ranked: the corp's active channels."
    ),
    _(
        "Parts: scan volume (scans), scan to add, consulted within 72 h, retained after 30 "
        "days (each as the channel report defines it), revenue per new customer (revenue "
        "within 30 days of the first add / new customers) and reply speed (the median "
        "first-reply time of the staff members who received the channel's new customers, one "
        "value per customer, from WeCom's statistics; shorter is better)."
    ),
    _(
        "Each part is normalised across the ranked channels: (value - lowest) / (highest - "
        "lowest), reversed for reply speed. A channel without a value for a part (no scans, "
        "no new customers, no customer 30 days old, no reply time) gets 0 for it; when every "
        "channel with a value has the same value, each of them gets 1."
    ),
    _(
        "Score = 100 × the weighted mean of the normalised parts (weights in the decision "
        "settings). Rank by score; an equal score goes to the channel with more new customers, "
        "then to the older channel."
    ),
    _(
        "Recomputed every hour. Actions, each switched in the decision settings: the customers "
        "first added through a top channel within the period who are still customers get the "
        "top channels' tag once; the top channels' live codes are listed first where live "
        "codes are picked."
    ),
)


def normalise(
    values: dict[Any, Decimal | None], *, lower_is_better: bool = False
) -> dict[Any, Decimal]:
    """Min-max over the keys with a value: 0..1 (reversed when lower is better); a key without
    a value gets 0; when all values are equal each key with a value gets 1."""
    known = [value for value in values.values() if value is not None]
    if not known:
        return {key: Decimal(0).quantize(NORMAL) for key in values}
    low, high = min(known), max(known)
    spread = high - low
    normalised = {}
    for key, value in values.items():
        if value is None:
            share = Decimal(0)
        elif not spread:
            share = Decimal(1)
        else:
            share = Decimal(high - value if lower_is_better else value - low) / Decimal(spread)
        normalised[key] = share.quantize(NORMAL)
    return normalised


def weighted_score(normalised: dict[str, Decimal], weights: Iterable[tuple[str, int]]) -> Decimal:
    """100 x the weighted mean of the normalised parts (0 when every weight is 0)."""
    weights = list(weights)
    total = sum(weight for _part, weight in weights)
    if not total:
        return Decimal(0)
    summed = sum(Decimal(weight) * normalised[part] for part, weight in weights)
    return (Decimal(100) * summed / total).quantize(SCORE)


@dataclass(frozen=True)
class QualityPeriod:
    first: Any
    last: Any


def quality_period(*, corp: Corp, settings: DecisionSettings, now: datetime) -> QualityPeriod:
    last = days.today(corp, now=now)
    return QualityPeriod(first=last - timedelta(days=max(settings.quality_days, 1) - 1), last=last)


def _raw_parts(corp: Corp, period: QualityPeriod) -> dict[int | None, dict[str, Any]]:
    """Per channel of the channel report over the period: the parts' raw values."""
    report = ChannelReport(
        ReportParams(corp=corp, first=period.first, last=period.last, window=REVENUE_WINDOW)
    )
    medians = channel_reply_medians(report.cohort_rows())
    return {
        row["key"]: {
            "new_customers": row["new_customers"],
            "scans": row["scans"],
            "scan_to_add": row["scan_to_add"],
            "consult_72h_rate": row["consult_72h_rate"],
            "reply_speed": medians.get(row["key"]),
            "retained_30d_rate": row["retained_30d_rate"],
            "revenue_per_customer": ratio(row["revenue"], row["new_customers"], SCORE),
        }
        for row in report.calculate().rows
    }


def _value(figures: dict[str, Any], part: str) -> Any:
    """A part's value for normalising: no scans is no scan volume (None), not a low one."""
    return figures[part] or None if part == "scans" else figures[part]


def quality_scores_compute(*, corp: Corp, now: datetime | None = None) -> list[QualityScore]:
    """Score and rank the corp's active channels for the hour of `now` and store the ranking
    (replacing that hour's, if computed before); older history past HISTORY_DAYS is dropped.
    Reads the rollups only: a fixed number of queries whatever the number of channels."""
    now = now or timezone.now()
    hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    settings = decision_settings_for(corp)
    period = quality_period(corp=corp, settings=settings, now=now)
    raw = _raw_parts(corp, period)
    channel_ids = list(
        Channel.objects.filter(corp=corp, is_active=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    empty = {"new_customers": 0, "scans": 0, **{part: None for part, _l in PARTS[1:]}}
    parts = {channel_id: raw.get(channel_id, empty) for channel_id in channel_ids}
    normalised_by_part = {
        part: normalise(
            {channel_id: _value(figures, part) for channel_id, figures in parts.items()},
            lower_is_better=part in LOWER_IS_BETTER,
        )
        for part, _label in PARTS
    }
    weights = settings.quality_weights()
    rows = []
    for channel_id, figures in parts.items():
        normalised = {part: normalised_by_part[part][channel_id] for part, _label in PARTS}
        rows.append(
            QualityScore(
                corp=corp, channel_id=channel_id, computed_at=hour, first=period.first,
                last=period.last, rank=0, score=weighted_score(normalised, weights),
                new_customers=figures["new_customers"], scans=figures["scans"],
                scan_to_add=figures["scan_to_add"],
                consult_72h_rate=figures["consult_72h_rate"],
                reply_minutes=figures["reply_speed"],
                retained_30d_rate=figures["retained_30d_rate"],
                revenue_per_customer=figures["revenue_per_customer"],
                normalised={part: str(value) for part, value in normalised.items()},
            )
        )  # fmt: skip
    rows.sort(key=lambda row: (-row.score, -row.new_customers, row.channel_id))
    for rank, row in enumerate(rows, start=1):
        row.rank = rank
    with transaction.atomic():
        QualityScore.objects.filter(corp=corp, computed_at=hour).delete()
        QualityScore.objects.bulk_create(rows, batch_size=500)
        QualityScore.objects.filter(
            corp=corp, computed_at__lt=hour - timedelta(days=HISTORY_DAYS)
        ).delete()
    return rows


# -- reads ----------------------------------------------------------------------------------


def quality_latest_hour(*, corp: Corp) -> datetime | None:
    return QualityScore.objects.filter(corp=corp).aggregate(at=Max("computed_at"))["at"]


def quality_ranking(*, corp: Corp, at: datetime | None = None) -> QuerySet[QualityScore]:
    """The ranking of the hour `at` (default: the latest), best first, with the channels."""
    at = at or quality_latest_hour(corp=corp)
    return (
        QualityScore.objects.filter(corp=corp, computed_at=at)
        .select_related("channel")
        .order_by("rank")
    )


def quality_history(*, corp: Corp, since: datetime) -> QuerySet:
    """Each hour's (computed_at, channel, rank, score) since `since`, oldest first."""
    return (
        QualityScore.objects.filter(corp=corp, computed_at__gte=since)
        .order_by("computed_at", "rank")
        .values("computed_at", "channel_id", "rank", "score")
    )


def quality_top_channel_ids(*, corp: Corp) -> list[int]:
    """The channels of the latest ranking within the corp's top N, best first."""
    top_n = decision_settings_for(corp).quality_top_n
    return list(
        quality_ranking(corp=corp).filter(rank__lte=top_n).values_list("channel_id", flat=True)
    )


def quality_picker_ranks(corp_ids: Iterable[int]) -> dict[int, int]:
    """For the live-code pickers (channels_app, through settings.CHANNELS_PICKER_RANKING):
    {channel id: rank} of the top N channels of the latest ranking of each corp that lists them
    first (DecisionSettings.quality_order_pickers; on by default). Three queries."""
    corp_ids = list(corp_ids)
    chosen = {row.corp_id: row for row in DecisionSettings.objects.filter(corp_id__in=corp_ids)}
    defaults = DecisionSettings()
    latest = (
        QualityScore.objects.filter(corp_id__in=corp_ids)
        .values("corp_id")
        .annotate(at=Max("computed_at"))
        .order_by()
    )
    wanted = []
    for row in latest:
        settings = chosen.get(row["corp_id"], defaults)
        if settings.quality_order_pickers:
            wanted.append((row["corp_id"], row["at"], settings.quality_top_n))
    if not wanted:
        return {}
    condition = Q(pk__in=[])
    for corp_id, at, top_n in wanted:
        condition |= Q(corp_id=corp_id, computed_at=at, rank__lte=top_n)
    return dict(QualityScore.objects.filter(condition).values_list("channel_id", "rank"))


HISTORY_SHOWN_DAYS = 7  # the rank-over-time chart and the API's history, by default


@dataclass(frozen=True)
class QualityOverview:
    """The latest ranking with each channel's parts, and the ranks of the hours before it."""

    computed_at: datetime | None
    first: Any
    last: Any
    top_n: int
    weights: dict[str, int]
    rows: list[dict[str, Any]]
    history: list[dict[str, Any]]


def _part_value(row: QualityScore, part: str) -> Any:
    return row.reply_minutes if part == "reply_speed" else getattr(row, part)


def quality_overview(*, corp: Corp, history_days: int = HISTORY_SHOWN_DAYS) -> QualityOverview:
    """What the quality page and API show (four queries): the latest hour's ranking, each row
    with its parts (raw value, normalised, weight), and (computed_at, channel, rank, score) of
    every hour within `history_days` before it."""
    settings = decision_settings_for(corp)
    weights = dict(settings.quality_weights())
    at = quality_latest_hour(corp=corp)
    ranking = list(quality_ranking(corp=corp, at=at)) if at else []
    rows = [
        {
            "rank": row.rank,
            "channel": row.channel_id,
            "name": row.channel.name,
            "score": row.score,
            "new_customers": row.new_customers,
            "top": row.rank <= settings.quality_top_n,
            "parts": [
                {
                    "name": part,
                    "value": _part_value(row, part),
                    "normalised": Decimal(row.normalised.get(part, "0")),
                    "weight": weights[part],
                }
                for part, _label in PARTS
            ],
        }
        for row in ranking
    ]
    history = (
        list(quality_history(corp=corp, since=at - timedelta(days=history_days))) if at else []
    )
    return QualityOverview(
        computed_at=at,
        first=ranking[0].first if ranking else None,
        last=ranking[0].last if ranking else None,
        top_n=settings.quality_top_n,
        weights=weights,
        rows=rows,
        history=history,
    )
