"""A channel's reply time: the median of the first-reply times of the staff members who
received its new customers, one value per new customer (so a member who took 30 of them counts
30 times). A member's reply time is Staff.avg_reply_minutes (WeCom's get_user_behavior_data,
refreshed by contacts.staff_sync); customers of members without one do not count. The database
groups the cohort rollups into (channel, staff, new customers) rows; the median is taken over
those few rows, never over the customers one by one. Used by the quality score's reply speed
and by the channel report's budget advice: one rule for both."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal

from django.db.models import QuerySet, Sum

from analytics.models import DailyCohort

TENTH = Decimal("0.1")


def weighted_median(values: Iterable[tuple[Decimal, int]]) -> Decimal | None:
    """The median of a multiset given as (value, how many times): the middle value, or the
    mean of the two middle ones when the count is even; None when it is empty."""
    ordered = sorted((value, count) for value, count in values if count > 0)
    total = sum(count for _value, count in ordered)
    if not total:
        return None
    # 1-based positions of the middle element(s): (n + 1) // 2 and n // 2 + 1.
    low_position, high_position = (total + 1) // 2, total // 2 + 1
    low = high = None
    seen = 0
    for value, count in ordered:
        seen += count
        if low is None and seen >= low_position:
            low = value
        if seen >= high_position:
            high = value
            break
    return ((low + high) / 2).quantize(TENTH)


def channel_reply_medians(cohorts: QuerySet[DailyCohort]) -> dict[int | None, Decimal | None]:
    """Per first-touch channel of the cohort rows given (already narrowed to a corp and a
    period), the median first-reply time in minutes of its new customers' staff members; None
    for a channel whose new customers' members have no reply time. One grouped query."""
    grouped = (
        cohorts.filter(staff__avg_reply_minutes__isnull=False, new_customers__gt=0)
        .values("channel_id", "staff_id", "staff__avg_reply_minutes")
        .annotate(customers=Sum("new_customers"))
        .order_by()
    )
    per_channel: dict[int | None, list[tuple[Decimal, int]]] = defaultdict(list)
    for row in grouped:
        minutes = Decimal(str(row["staff__avg_reply_minutes"]))
        per_channel[row["channel_id"]].append((minutes, row["customers"]))
    return {channel: weighted_median(values) for channel, values in per_channel.items()}
