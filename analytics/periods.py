"""Report periods: the presets managers pick (today, last week, the last 30 days...) as local
days of the corp, and the previous period of equal length they are compared with."""

from __future__ import annotations

from datetime import date, timedelta

from django.utils.translation import gettext_lazy as _

CUSTOM = "custom"
DEFAULT_PERIOD = "last_30"
PERIODS = (
    ("today", _("today")),
    ("yesterday", _("yesterday")),
    ("this_week", _("this week")),
    ("last_week", _("last week")),
    ("this_month", _("this month")),
    ("last_7", _("last 7 days")),
    ("last_30", _("last 30 days")),
    ("last_90", _("last 90 days")),
    ("last_180", _("last 180 days")),
    ("last_365", _("last 365 days")),  # the cohort page's default: a year of cohorts
    (CUSTOM, _("custom dates")),
)


def period_dates(period: str, today: date) -> tuple[date, date]:
    """First and last local day (both included) of a preset, `today` being the corp's local
    day. Weeks start on Monday; "this week", "this month" and "last N days" end today."""
    if period == "today":
        return today, today
    if period == "yesterday":
        yesterday = today - timedelta(days=1)
        return yesterday, yesterday
    monday = today - timedelta(days=today.weekday())
    if period == "this_week":
        return monday, today
    if period == "last_week":
        return monday - timedelta(days=7), monday - timedelta(days=1)
    if period == "this_month":
        return today.replace(day=1), today
    if period.startswith("last_") and period[5:].isdigit():
        return today - timedelta(days=int(period[5:]) - 1), today
    raise ValueError(f"unknown period {period!r}")


def period_previous(first: date, last: date) -> tuple[date, date]:
    """The period of equal length that ends the day before `first`."""
    length = (last - first).days + 1
    return first - timedelta(days=length), first - timedelta(days=1)
