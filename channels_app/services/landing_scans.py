"""Scans the landing page's Redis store buffered, written to the database: in batches by the
flush task, and one at a time when an add needs the scan that leased its slot before the next
flush (landing_scan_for_slot). Writing a scan is idempotent (its stream entry id is its
visit_id), so both may write the same scan."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Model
from redis.exceptions import RedisError

from channels_app.landing_redis import landing_redis
from channels_app.models import LandingSlot, LiveCode, ReferralCode, Scan
from channels_app.services.publishing import SLOT_LEASE
from contacts.models import Staff

logger = logging.getLogger(__name__)

SCAN_CLOCK_SKEW = timedelta(minutes=2)  # WeCom's CreateTime vs our clock


def landing_scans_flush(*, batch_size: int = 500) -> int:
    """Write the scans buffered in Redis to the database; the number of stream entries written
    (an entry written before, by another flush or for an add, counts and adds no row).

    Idempotent and safe to run concurrently: entries leave the stream only after their batch
    committed. Scans only: capacity was taken from DailyCounter when Redis was granted it.
    Each batch also extends the slots' leases, so the database path sees what Redis leased.
    Called by the debounced task and the beat."""
    store_redis = landing_redis()
    if store_redis is None:
        return 0
    written = 0
    while True:
        entries = store_redis.pending_scans(batch_size)
        if not entries:
            return written
        with transaction.atomic():
            _scans_write(entries)
            visit_ids = [visit_id for visit_id, _ in entries]
            transaction.on_commit(lambda ids=visit_ids: store_redis.forget_scans(ids))
        written += len(entries)
        if len(entries) < batch_size:
            return written


def landing_scan_for_slot(*, slot: LandingSlot, added_at: datetime) -> Scan | None:
    """The scan that leased `slot` most recently before an add at `added_at` (give or take
    SCAN_CLOCK_SKEW), with its referral. When that scan is still only in Redis's buffer, that
    one entry is written first (idempotent: the flush writing it too adds no row), inside the
    caller's transaction; nothing else in the buffer is touched. With Redis away the join is
    missed (None) unless the scan was written already; the add keeps its code and channel."""
    until = added_at + SCAN_CLOCK_SKEW
    store_redis = landing_redis()
    if store_redis is not None:
        try:
            buffered = store_redis.slot_scans(slot.pk)
        except RedisError:
            logger.warning("landing scans of slot %s not read from Redis", slot.pk)
        else:
            for visit_id, entry in buffered:  # newest first
                if datetime.fromisoformat(json.loads(entry[b"scan"])["created_at"]) <= until:
                    _scans_write([(visit_id, entry)])
                    break
    return (
        Scan.objects.filter(slot=slot, created_at__lte=until)
        .select_related("referral")
        .order_by("-created_at")
        .first()
    )


def _scans_write(entries: list[tuple[str, dict[bytes, bytes]]]) -> None:
    rows = []
    for visit_id, entry in entries:
        data = json.loads(entry[b"scan"])
        data.pop("day", None)  # entries buffered before grants carried their local day
        data["staff_id"] = int(entry[b"staff"]) if entry[b"staff"] else None
        data["slot_id"] = int(entry[b"slot"]) if entry[b"slot"] else None
        data["reused"] = entry[b"reused"] == b"1"
        rows.append((visit_id, data))
    # Rows deleted since the visit: the scan of a deleted code goes, other links are cleared
    # (as on_delete does), so one stale entry cannot block the stream.
    codes = _existing(LiveCode, {d["live_code_id"] for _, d in rows})
    staff = _existing(Staff, {d["staff_id"] for _, d in rows})
    slots = _existing(LandingSlot, {d["slot_id"] for _, d in rows})
    referrals = _existing(ReferralCode, {d.get("referral_id") for _, d in rows})
    scans, lease_ends = [], {}
    for visit_id, data in rows:
        if data["live_code_id"] not in codes:
            continue
        created_at = datetime.fromisoformat(data.pop("created_at"))
        data["staff_id"] = data["staff_id"] if data["staff_id"] in staff else None
        data["slot_id"] = data["slot_id"] if data["slot_id"] in slots else None
        data["referral_id"] = data.get("referral_id") if data.get("referral_id") in referrals \
            else None  # fmt: skip
        scans.append(Scan(visit_id=visit_id, created_at=created_at, **data))
        if data["slot_id"] is not None:
            end = created_at + SLOT_LEASE
            lease_ends[data["slot_id"]] = max(end, lease_ends.get(data["slot_id"], end))
    Scan.objects.bulk_create(scans, ignore_conflicts=True)
    for slot_id, end in sorted(lease_ends.items()):  # by pk: concurrent flushes never deadlock
        LandingSlot.objects.filter(pk=slot_id).exclude(leased_until__gte=end).update(
            leased_until=end
        )


def _existing(model: type[Model], ids: set[int | None]) -> set[int]:
    ids.discard(None)
    return set(model.objects.filter(pk__in=ids).values_list("pk", flat=True)) if ids else set()
