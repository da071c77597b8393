"""The landing visit (two-jump tracking): record the scan, pick a staff member, lease one of
their slots so the add that follows joins this exact scan. No WeCom call on this path."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from channels_app.lock_objects import landing_slot_lease_lock
from channels_app.models import LandingSlot, LiveCode, PoolMember, ReferralCode, Scan, Store
from channels_app.services.assignment import staff_assign
from channels_app.services.publishing import SLOT_LEASE
from contacts.models import Staff
from scrm.db import insert_returning_pk

logger = logging.getLogger(__name__)

RETURN_WINDOW = timedelta(minutes=30)  # the same device within this keeps its staff member
TOP_UP_DEBOUNCE_SECONDS = 2
UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")
BOT_RE = re.compile(r"bot|crawl|spider|slurp|preview|facebookexternalhit|curl|wget", re.I)
TABLET_RE = re.compile(r"ipad|tablet|(android(?!.*mobile))", re.I)
MOBILE_RE = re.compile(r"mobi|iphone|ipod|android|harmonyos|micromessenger", re.I)


def device_class(user_agent: str) -> str:
    if not user_agent:
        return Scan.Device.UNKNOWN
    if BOT_RE.search(user_agent):
        return Scan.Device.BOT
    if TABLET_RE.search(user_agent):
        return Scan.Device.TABLET
    if MOBILE_RE.search(user_agent):
        return Scan.Device.MOBILE
    return Scan.Device.DESKTOP


def _keyed_hash(purpose: str, value: str) -> str:
    """HMAC with a secret salt: equal inputs match, the raw IP cannot be recovered."""
    key = (settings.SCAN_HASH_SALT + purpose).encode()
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:32]


@dataclass
class LandingResult:
    scan: Scan
    staff: Staff | None
    slot: LandingSlot | None


def _lease(live_code: LiveCode, staff: Staff, now: datetime) -> LandingSlot | None:
    """Lease one of the member's slots: a free one, or when every slot is leased the one leased
    longest ago (that earlier visitor loses exactness, never the add; the top-up task adds
    slots)."""
    slot = landing_slot_lease_lock(live_code_id=live_code.pk, staff_id=staff.pk)
    if slot is None:  # every slot is being leased by a concurrent visit right now
        slot = (
            LandingSlot.objects.filter(live_code=live_code, staff=staff)
            .exclude(config_id="")
            .order_by(F("leased_until").asc(nulls_first=True), "pk")
            .first()
        )
    if slot is not None:
        LandingSlot.objects.filter(pk=slot.pk).update(leased_until=now + SLOT_LEASE)
    return slot


def _returning(live_code: LiveCode, device_key: str, now: datetime) -> Scan | None:
    """The device's recent scan, if it still holds its slot (no other scan leased it since).
    Most visitors are new: the lookup reads ids only, and staff and slot load on a hit."""
    previous = (
        Scan.objects.filter(
            live_code=live_code,
            device_key=device_key,
            created_at__gte=now - RETURN_WINDOW,
            slot__isnull=False,
        )
        .only("pk", "created_at", "staff_id", "slot_id", "store_id")
        .order_by("-created_at")
        .first()
    )
    if previous is None or previous.staff_id is None:
        return None
    if previous.staff.status != Staff.Status.ACTIVE:
        return None
    newer = Scan.objects.filter(slot=previous.slot_id, created_at__gt=previous.created_at).exists()
    return None if newer else previous


@transaction.atomic
def landing_visit(
    *,
    live_code: LiveCode,
    params: dict[str, str],
    user_agent: str,
    referrer_url: str,
    ip: str,
    store: Store | None = None,
    referral: ReferralCode | None = None,
    members: Sequence[PoolMember] | None = None,
) -> LandingResult:
    """Record one visit of a landing code: the device's earlier assignment if it comes back
    within RETURN_WINDOW, else a new one (staff_assign, given `members` if the caller has the
    pool loaded), a leased slot, and the Scan."""
    now = timezone.now()
    device_key = _keyed_hash("device", f"{ip}|{user_agent}")
    previous = _returning(live_code, device_key, now)
    if previous is not None and (store is None or previous.store_id == store.pk):
        staff, slot = previous.staff, previous.slot
        LandingSlot.objects.filter(pk=slot.pk).update(leased_until=now + SLOT_LEASE)
    else:
        staff = staff_assign(live_code=live_code, now=now, store=store, members=members)
        slot = _lease(live_code, staff, now) if staff is not None else None
    channel = live_code.channel
    utm = {name: (params.get(name) or getattr(channel, name, "") or "")[:64] for name in UTM_FIELDS}
    scan = Scan(
        corp_id=live_code.corp_id,
        live_code=live_code,
        device=device_class(user_agent),
        in_wechat="micromessenger" in user_agent.lower(),
        referrer_url=referrer_url[:512],
        ip_hash=_keyed_hash("ip", ip) if ip else "",
        device_key=device_key,
        staff=staff,
        slot=slot,
        store=store,
        referral=referral,
        reused=previous is not None and staff is previous.staff,
        **utm,
    )
    insert_returning_pk(scan)  # the ORM's INSERT compiler costs more than the statement
    if staff is not None:
        _top_up_after_commit(live_code.pk, staff.pk)
    return LandingResult(scan=scan, staff=staff, slot=slot)


def _top_up_after_commit(live_code_id: int, staff_id: int) -> None:
    """After commit (outside the counter's lock): when the staff member is short of free slots,
    queue a top-up. Checked at most once per member every TOP_UP_DEBOUNCE_SECONDS: a busy code
    would otherwise count slots and queue a task on every visit."""

    def top_up_if_short() -> None:
        from channels_app.services.publishing import SLOTS_PER_STAFF
        from channels_app.tasks import landing_slots_top_up_task

        if not cache.add(f"landing-top-up:{live_code_id}:{staff_id}", 1, TOP_UP_DEBOUNCE_SECONDS):
            return  # checked moments ago
        free = (
            LandingSlot.objects.filter(live_code_id=live_code_id, staff_id=staff_id)
            .exclude(config_id="")
            .exclude(leased_until__gt=timezone.now())
            .count()
        )
        if free < SLOTS_PER_STAFF - 1:
            try:
                landing_slots_top_up_task.delay(live_code_id, staff_id)
            except Exception:  # broker down: the visit stands, the oldest lease is reused
                logger.exception("could not queue a landing slot top-up for code %s", live_code_id)

    transaction.on_commit(top_up_if_short)
