"""The one write of the anomaly page: acknowledging an anomaly (analytics.anomalies)."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from analytics.models import AnomalyAck
from scrm.wecom.models import Corp


@transaction.atomic
def anomaly_acknowledge(
    *, corp: Corp, kind: str, key: str, user: Any, note: str = ""
) -> AnomalyAck:
    """Record that `user` has seen this occurrence (idempotent: a second acknowledgement of
    the same key keeps the first, with its author and time). The row is its own audit trail."""
    ack = AnomalyAck(corp=corp, kind=kind, key=key, acknowledged_by=user, note=note.strip())
    ack.full_clean(validate_unique=False, validate_constraints=False)
    try:
        with transaction.atomic():  # a concurrent acknowledgement wins; ours is the same fact
            ack.save()
    except IntegrityError:
        return AnomalyAck.objects.get(corp=corp, kind=kind, key=key)
    return ack
