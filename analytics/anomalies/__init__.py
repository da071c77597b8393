"""Anomalies: what in a corp's figures or plumbing needs a person to look, each with its
evidence. Read-only (the acknowledgement is analytics.anomaly_services); every count is done
in the database, in a fixed number of queries whatever the number of codes or anomalies.

The rules (per corp; a day is the corp's local day):
- adds_below_scans: a landing code's day with at least MIN_SCANS (20) scans whose adds fall
  below SHORTFALL (half) of what its usual scan-to-add rate predicts. The usual rate is the
  code's own adds / scans over the USUAL_DAYS (28) days before that day, when those hold at
  least MIN_SCANS scans; otherwise DEFAULT_RATE (60 %), so a code without history is flagged
  below 30 %. Counts come from the daily rollups (DailyFlow, each add credited to its code).
- adds_without_scans: a landing code's day with at least NO_SCAN_MIN_ADDS (3) adds and no
  scan (the landing page's scans lost, or the staff member's own QR passed around).
- dead_code: an active landing code with at least DEAD_MIN_SCANS (10) scans in the last
  DEAD_HOURS (3) hours and no add in them (a dead staff QR: a left member, a deleted contact
  way), counted on the facts (scans, attributions), not the rollups.
- empty_api: WeCom calls answered errcode 0 with an empty list from an endpoint whose answer
  cannot be empty for a corp in use (EXPECTED_RESULTS): how rate limits and wrong secrets hide.
- calibration: the days on which the corp's latest finished calibration found our adds per
  staff member differing from WeCom's statistics (a later run that agrees clears them).
- callback_backlog: callback events still pending BACKLOG_AFTER (10 minutes) after they
  arrived; callback_failed: events whose processing failed (until retried).
- left_staff: staff members who left the corp and are still enabled in the pool of a live
  code that is not archived.
Each occurrence has a key (kind-specific, corp-wide unique); an acknowledged key is listed
apart, and a recurrence has a new key, so it is listed again.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from analytics.anomalies.base import (
    DEAD_HOURS,
    KIND_ORDER,
    Anomaly,
    AnomalyError,
    AnomalyParams,
    AnomalyResult,
    Kind,
    key_day,
)
from analytics.anomalies.codes import code_days, dead_codes
from analytics.anomalies.operations import (
    calibration_days,
    callbacks,
    empty_api_calls,
    left_staff,
)
from analytics.models import AnomalyAck

__all__ = [
    "DEAD_HOURS",
    "Anomaly",
    "AnomalyError",
    "AnomalyParams",
    "AnomalyResult",
    "Kind",
    "anomalies_list",
    "key_day",
]


def anomalies_list(*, params: AnomalyParams) -> AnomalyResult:
    """The corp's anomalies of the period (day kinds) and of now (the others), open ones first
    by kind and latest day, the acknowledged ones apart. Eight queries at most."""
    params.validate()
    found = [
        *code_days(params),
        *dead_codes(params),
        *empty_api_calls(params),
        *calibration_days(params),
        *callbacks(params),
        *left_staff(params),
    ]
    acks = (
        {
            (ack.kind, ack.key): ack
            for ack in AnomalyAck.objects.filter(
                corp=params.corp, key__in=[anomaly.key for anomaly in found]
            ).select_related("acknowledged_by")
        }
        if found
        else {}
    )
    found = [replace(anomaly, ack=acks.get((anomaly.kind, anomaly.key))) for anomaly in found]
    found.sort(key=lambda a: (KIND_ORDER[a.kind], -(a.day or date.min).toordinal(), a.key))
    return AnomalyResult(
        params=params,
        open=[anomaly for anomaly in found if anomaly.ack is None],
        acknowledged=[anomaly for anomaly in found if anomaly.ack is not None],
    )
