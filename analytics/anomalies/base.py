"""The anomalies' vocabulary: their kinds and thresholds (the rules are in the package's
docstring), the parameters, an occurrence and the result; helpers of the rule modules."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import urlencode

from django.urls import reverse
from django.utils.translation import gettext

from analytics.models import AnomalyAck
from scrm.wecom.models import Corp

Kind = AnomalyAck.Kind

MIN_SCANS = 20
USUAL_DAYS = 28
DEFAULT_RATE = Decimal("0.6")
SHORTFALL = Decimal("0.5")
NO_SCAN_MIN_ADDS = 3
DEAD_HOURS = 3
DEAD_MIN_SCANS = 10
BACKLOG_AFTER = timedelta(minutes=10)  # the sweeper re-queues sooner: this is a real backlog
MAX_DAYS = 366
# Endpoints whose list is never empty for a corp in use: its members with customer contact,
# a customer's own follow users, a day's statistics row per day asked.
EXPECTED_RESULTS = (
    "externalcontact/get_follow_user_list",
    "externalcontact/get",
    "externalcontact/get_user_behavior_data",
)
KIND_ORDER = {kind: index for index, kind in enumerate(Kind.values)}
RATE_PLACES = Decimal("0.0001")


class AnomalyError(ValueError):
    """Parameters that cannot be answered (a reversed or too long period)."""


@dataclass(frozen=True)
class AnomalyParams:
    corp: Corp
    first: date
    last: date
    now: datetime

    def validate(self) -> None:
        if self.first > self.last:
            raise AnomalyError(gettext("The period ends before it starts."))
        if (self.last - self.first).days + 1 > MAX_DAYS:
            raise AnomalyError(
                gettext("A period of at most %(days)s days, please.") % {"days": MAX_DAYS}
            )


@dataclass(frozen=True)
class Anomaly:
    """One occurrence: its kind and key, what it is about, its figures (kind-specific), the
    day it belongs to (day kinds) or since when it lasts, links to its evidence, and its
    acknowledgement if any."""

    kind: str
    key: str
    subject: str
    figures: dict[str, Any]
    evidence: list[tuple[str, str]]
    day: date | None = None
    since: datetime | None = None
    ack: AnomalyAck | None = field(default=None, compare=False)


@dataclass(frozen=True)
class AnomalyResult:
    params: AnomalyParams
    open: list[Anomaly]
    acknowledged: list[Anomaly]

    def find(self, kind: str, key: str) -> Anomaly | None:
        for anomaly in (*self.open, *self.acknowledged):
            if (anomaly.kind, anomaly.key) == (kind, key):
                return anomaly
        return None


def key_day(kind: str, key: str) -> date | None:
    """The day a day kind's key names (its last part), else None."""
    if kind not in (
        Kind.ADDS_BELOW_SCANS,
        Kind.ADDS_WITHOUT_SCANS,
        Kind.EMPTY_API,
        Kind.CALIBRATION,
    ):
        return None
    try:
        return date.fromisoformat(key.rsplit(":", 1)[-1])
    except ValueError:
        return None


def changelist(name: str, **query: Any) -> str:
    values = {key: value for key, value in query.items() if value is not None}
    return f"{reverse(f'admin:{name}_changelist')}?{urlencode(values)}"


def rate(adds: int, scans: int) -> Decimal | None:
    if not scans:
        return None
    return (Decimal(adds) / Decimal(scans)).quantize(RATE_PLACES, ROUND_HALF_UP)
