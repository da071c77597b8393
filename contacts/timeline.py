"""Writes of the customer timeline (客户动态). Idempotent by a dedup key per customer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction

from contacts.models import ExternalContact, Staff, TimelineEvent


def timeline_record(
    *,
    contact: ExternalContact,
    kind: TimelineEvent.Kind,
    occurred_at: datetime,
    dedup_key: str,
    staff: Staff | None = None,
    summary: str = "",
    data: dict[str, Any] | None = None,
) -> TimelineEvent | None:
    """Append one line; None when a line with this key exists (a replayed event)."""
    try:
        with transaction.atomic():
            return TimelineEvent.objects.create(
                corp_id=contact.corp_id,
                external_contact=contact,
                kind=kind,
                occurred_at=occurred_at,
                staff=staff,
                summary=summary[:255],
                data=data or {},
                dedup_key=dedup_key[:128],
            )
    except IntegrityError:
        return None
