"""The landing visit (two-jump tracking): record the scan, pick a staff member, lease one of
their slots so the add that follows joins this exact scan. No WeCom call on this path."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from time import monotonic
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Model
from django.utils import timezone
from redis.exceptions import RedisError

from channels_app.assignment import members_on_duty
from channels_app.landing_redis import LandingRedis, landing_redis
from channels_app.lock_objects import landing_slot_lease_lock
from channels_app.models import (
    DailyCounter,
    LandingSlot,
    LiveCode,
    PoolMember,
    ReferralCode,
    Scan,
    Store,
)
from channels_app.selectors import LandingConfig
from channels_app.services.assignment import (
    daily_counters_read,
    local_now,
    staff_assign,
    staff_ranked,
)
from channels_app.services.publishing import SLOT_LEASE, SLOTS_PER_STAFF
from channels_app.tasks import landing_scans_flush_task, landing_slots_top_up_task
from contacts.models import Staff
from scrm.db import insert_returning_pk
from scrm.debounce import QueueWindow

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
    scan: Scan | None  # None on the Redis path: the scan is written by the next flush
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


def landing_visit(
    *,
    config: LandingConfig,
    params: dict[str, str],
    user_agent: str,
    referrer_url: str,
    ip: str,
    store: Store | None = None,
    referral: ReferralCode | None = None,
) -> LandingResult:
    """Record one visit of a landing code: the device's earlier assignment if it comes back
    within RETURN_WINDOW, else a new one within caps and shifts, a leased slot, and the scan.

    Landing-mode visits without a store take the Redis path when LANDING_REDIS_URL is set
    (see channels_app.landing_redis; the scan reaches the database in the next flush);
    everything else, and every visit while Redis fails, takes the database path.
    """
    live_code = config.live_code
    store_redis = landing_redis()
    if store_redis is not None and store is None and live_code.mode == LiveCode.Mode.LANDING:
        try:
            return _visit_redis(store_redis, config, params=params, user_agent=user_agent,
                                referrer_url=referrer_url, ip=ip, referral=referral)  # fmt: skip
        except RedisError:
            logger.exception("landing code %s: Redis failed, visit recorded in the database",
                             live_code.slug)  # fmt: skip
    return _visit_db(live_code, params=params, user_agent=user_agent, referrer_url=referrer_url,
                     ip=ip, store=store, referral=referral,
                     members=config.members if store is None else None)  # fmt: skip


def _scan_fields(
    live_code: LiveCode, params: dict[str, str], user_agent: str, referrer_url: str, ip: str
) -> dict[str, Any]:
    """A scan's columns that do not depend on the assignment."""
    channel = live_code.channel
    utm = {name: (params.get(name) or getattr(channel, name, "") or "")[:64] for name in UTM_FIELDS}
    return {
        "corp_id": live_code.corp_id,
        "live_code_id": live_code.pk,
        "device": device_class(user_agent),
        "in_wechat": "micromessenger" in user_agent.lower(),
        "referrer_url": referrer_url[:512],
        "ip_hash": _keyed_hash("ip", ip) if ip else "",
        **utm,
    }


@transaction.atomic
def _visit_db(
    live_code: LiveCode,
    *,
    params: dict[str, str],
    user_agent: str,
    referrer_url: str,
    ip: str,
    store: Store | None,
    referral: ReferralCode | None,
    members: Sequence[PoolMember] | None,
) -> LandingResult:
    now = timezone.now()
    device_key = _keyed_hash("device", f"{ip}|{user_agent}")
    previous = _returning(live_code, device_key, now)
    if previous is not None and (store is None or previous.store_id == store.pk):
        staff, slot = previous.staff, previous.slot
        LandingSlot.objects.filter(pk=slot.pk).update(leased_until=now + SLOT_LEASE)
    else:
        staff = staff_assign(live_code=live_code, now=now, store=store, members=members)
        slot = _lease(live_code, staff, now) if staff is not None else None
    scan = Scan(
        **_scan_fields(live_code, params, user_agent, referrer_url, ip),
        created_at=now,
        device_key=device_key,
        staff=staff,
        slot=slot,
        store=store,
        referral=referral,
        reused=previous is not None and staff is previous.staff,
    )
    insert_returning_pk(scan)  # the ORM's INSERT compiler costs more than the statement
    if staff is not None:
        _top_up_after_commit(live_code.pk, staff.pk)
    return LandingResult(scan=scan, staff=staff, slot=slot)


# The day's assignments per code as the last visit of this process saw them: the ranking's
# input. Slightly stale under concurrency, which only nudges the balance: the cap itself is
# checked by the script on Redis's own count.
_recent_counts: dict[tuple[int, date], dict[int, int]] = {}


def _visit_redis(
    store_redis: LandingRedis,
    config: LandingConfig,
    *,
    params: dict[str, str],
    user_agent: str,
    referrer_url: str,
    ip: str,
    referral: ReferralCode | None,
) -> LandingResult:
    """One Redis round trip (landing_redis._VISIT). The database is read only when a member has
    no counter for the day yet (its first visit of the day: the counter's seed)."""
    live_code = config.live_code
    now = timezone.now()
    moment = local_now(live_code, now)
    day = moment.date()
    device_key = _keyed_hash("device", f"{ip}|{user_agent}")
    fields = _scan_fields(live_code, params, user_agent, referrer_url, ip)
    fields.update(device_key=device_key, created_at=now.isoformat(), day=day.isoformat(),
                  referral_id=referral.pk if referral else None)  # fmt: skip
    _seed_slots(store_redis, config)
    on_duty = None
    if config.shifts or config.specials:
        on_duty = members_on_duty(config.shifts, config.specials, moment)
    key = (live_code.pk, day)
    scan_json = json.dumps(fields, separators=(",", ":"))
    record_busy = False
    for _attempt in range(4):
        assigned = _recent_counts.get(key, {})
        ranked = staff_ranked(live_code, config.members, assigned, on_duty)
        visit = store_redis.visit(
            live_code_id=live_code.pk, day=day, device=device_key, now=now.timestamp(),
            lease_seconds=SLOT_LEASE.total_seconds(), return_seconds=RETURN_WINDOW.total_seconds(),
            scan_json=scan_json, keepers=config.active_staff_ids,
            ranked=[(c.staff_id, c.cap) for c in ranked], record_busy=record_busy,
        )  # fmt: skip
        if visit.kind == "seed":
            _recent_counts[key] = _seed_counters(store_redis, live_code, day, config)
        elif visit.kind == "busy":
            # Ranked on this process's last counts: rank again on Redis's before saying busy
            # (and seed first if Redis lost the day's counters).
            fresh = visit.counters
            if any(m.staff_id not in fresh for m in config.members):
                fresh = _seed_counters(store_redis, live_code, day, config)
            record_busy = fresh == assigned
            _recent_counts[key] = fresh
        else:
            _recent_counts[key] = {**assigned, **visit.counters}
            break
    else:  # counts kept changing under this visit: let the database path take it
        raise RedisError("landing visit did not settle on Redis's counters")
    _flush_soon()
    staff = config.staff_by_id.get(visit.staff_id) if visit.staff_id else None
    slot = _slot_of(config, visit.slot_id) if visit.slot_id else None
    short = 0 <= visit.free_slots < SLOTS_PER_STAFF - 1
    if staff is not None and short and _top_up_due(live_code.pk, staff.pk):
        _top_up_queue(live_code.pk, staff.pk)
    return LandingResult(scan=None, staff=staff, slot=slot)


def landing_process_state_clear() -> None:
    """Forget this process's recent counts and seeded slots (tests: ids are reused)."""
    _recent_counts.clear()
    _slots_seeded.clear()
    _top_up_checked.clear()


def _slot_of(config: LandingConfig, slot_id: int) -> LandingSlot | None:
    """A slot of the cached config; one published since the config was read, from the
    database."""
    slot = config.slots.get(slot_id)
    if slot is None:
        slot = LandingSlot.objects.filter(pk=slot_id, live_code=config.live_code).first()
    return slot


def _seed_counters(
    store_redis: LandingRedis, live_code: LiveCode, day: date, config: LandingConfig
) -> dict[int, int]:
    """Give Redis the day's counters it lacks from the database (created there when
    missing), and read them back."""
    counters = daily_counters_read(live_code=live_code, members=config.members, day=day)
    counts = {staff_id: counter.assigned for staff_id, counter in counters.items()}
    store_redis.seed_counters(live_code_id=live_code.pk, day=day, counts=counts)
    return store_redis.counters(live_code_id=live_code.pk, day=day)


# The config each code's slots were last given to Redis from, per process.
_slots_seeded: dict[int, LandingConfig] = {}


def _seed_slots(store_redis: LandingRedis, config: LandingConfig) -> None:
    """Give Redis the code's published slots once per config read (every few seconds at most):
    new slots join the lease rotation, gone ones leave it; leases Redis holds are kept."""
    live_code = config.live_code
    if _slots_seeded.get(live_code.pk) is config:
        return
    by_staff: dict[int, list[tuple[int, float]]] = {m.staff_id: [] for m in config.members}
    for slot in config.slots.values():
        if slot.staff_id in by_staff:
            lease_end = slot.leased_until.timestamp() if slot.leased_until else 0.0
            by_staff[slot.staff_id].append((slot.pk, lease_end))
    store_redis.seed_slots(live_code_id=live_code.pk, slots_by_staff=by_staff)
    _slots_seeded[live_code.pk] = config


# One flush of buffered scans per process and LANDING_FLUSH_DELAY.
flush_window = QueueWindow()


def _flush_soon() -> None:
    """Queue a flush of the buffered scans (debounced per process); with Celery eager (the
    embedded default, tests), flush now."""
    delay = settings.LANDING_FLUSH_DELAY
    try:
        if landing_scans_flush_task.app.conf.task_always_eager:
            landing_scans_flush()
        else:
            flush_window.queue(landing_scans_flush_task, delay)
    except Exception:  # the broker or the flush failed: the scans wait in Redis for the beat
        logger.warning("could not flush landing scans now; the beat flush will", exc_info=True)


def landing_scans_flush(*, batch_size: int = 500) -> int:
    """Write the scans buffered in Redis to the database; the number of stream entries written
    (an entry another flush wrote too counts, and adds no row).

    Idempotent and safe to run concurrently: a scan's stream entry id is its unique visit_id,
    so a batch written twice adds nothing, and entries leave the stream only after their batch
    committed. Each batch also raises DailyCounter.assigned to Redis's count and Redis's count
    to the database's (counts taken on the database path while Redis was away), and extends
    the slots' leases, so the admin, the reports and the database path see what Redis saw.
    Called by the debounced task, the beat, and attribution before it joins an add to the scan
    that leased its slot.
    """
    store_redis = landing_redis()
    if store_redis is None:
        return 0
    written = 0
    while True:
        entries = store_redis.pending_scans(batch_size)
        if not entries:
            return written
        with transaction.atomic():
            _scans_write(store_redis, entries)
            visit_ids = [visit_id for visit_id, _ in entries]
            transaction.on_commit(lambda ids=visit_ids: store_redis.forget_scans(ids))
        written += len(entries)
        if len(entries) < batch_size:
            return written


def _scans_write(store_redis: LandingRedis, entries: list[tuple[str, dict[bytes, bytes]]]) -> None:
    rows = []
    for visit_id, entry in entries:
        data = json.loads(entry[b"scan"])
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
    scans, counted, lease_ends = [], set(), {}
    for visit_id, data in rows:
        if data["live_code_id"] not in codes:
            continue
        created_at = datetime.fromisoformat(data.pop("created_at"))
        day = date.fromisoformat(data.pop("day"))
        data["staff_id"] = data["staff_id"] if data["staff_id"] in staff else None
        data["slot_id"] = data["slot_id"] if data["slot_id"] in slots else None
        data["referral_id"] = data.get("referral_id") if data.get("referral_id") in referrals \
            else None  # fmt: skip
        scans.append(Scan(visit_id=visit_id, created_at=created_at, **data))
        if data["staff_id"] is not None:
            counted.add((data["corp_id"], data["live_code_id"], day))
        if data["slot_id"] is not None:
            end = created_at + SLOT_LEASE
            lease_ends[data["slot_id"]] = max(end, lease_ends.get(data["slot_id"], end))
    Scan.objects.bulk_create(scans, ignore_conflicts=True)
    for corp_id, live_code_id, day in sorted(counted):
        counts = store_redis.counters(live_code_id=live_code_id, day=day)
        members = _existing(Staff, set(counts))  # a member deleted since has no counter row
        DailyCounter.objects.bulk_create(
            [DailyCounter(corp_id=corp_id, live_code_id=live_code_id, staff_id=s, day=day)
             for s in members],
            ignore_conflicts=True,
        )  # fmt: skip
        for staff_id in members:
            count = counts[staff_id]
            DailyCounter.objects.filter(live_code_id=live_code_id, staff_id=staff_id, day=day)\
                .exclude(assigned__gte=count).update(assigned=count)  # fmt: skip
        in_db = dict(
            DailyCounter.objects.filter(live_code_id=live_code_id, day=day).values_list(
                "staff_id", "assigned"
            )
        )
        store_redis.seed_counters(live_code_id=live_code_id, day=day, counts=in_db)
    for slot_id, end in lease_ends.items():
        LandingSlot.objects.filter(pk=slot_id).exclude(leased_until__gte=end).update(
            leased_until=end
        )


def _existing(model: type[Model], ids: set[int | None]) -> set[int]:
    ids.discard(None)
    return set(model.objects.filter(pk__in=ids).values_list("pk", flat=True)) if ids else set()


_top_up_checked: dict[tuple[int, int], float] = {}


def _top_up_due(live_code_id: int, staff_id: int) -> bool:
    """True at most once per member and process every TOP_UP_DEBOUNCE_SECONDS: a busy code
    would otherwise check its slots and queue a top-up on every visit. (The top-up itself is
    idempotent: it creates slots only while the member is short of free ones.)"""
    now = monotonic()
    key = (live_code_id, staff_id)
    if _top_up_checked.get(key, 0.0) > now:
        return False
    _top_up_checked[key] = now + TOP_UP_DEBOUNCE_SECONDS
    return True


def _top_up_queue(live_code_id: int, staff_id: int) -> None:
    try:
        landing_slots_top_up_task.delay(live_code_id, staff_id)
    except Exception:  # broker down: the visit stands, the oldest lease is reused
        logger.exception("could not queue a landing slot top-up for code %s", live_code_id)


def _top_up_after_commit(live_code_id: int, staff_id: int) -> None:
    """After commit (outside the counter's lock): when the staff member is short of free slots,
    queue a top-up (checked at most once per member every TOP_UP_DEBOUNCE_SECONDS)."""

    def top_up_if_short() -> None:
        if not _top_up_due(live_code_id, staff_id):
            return  # checked moments ago
        free = (
            LandingSlot.objects.filter(live_code_id=live_code_id, staff_id=staff_id)
            .exclude(config_id="")
            .exclude(leased_until__gt=timezone.now())
            .count()
        )
        if free < SLOTS_PER_STAFF - 1:
            _top_up_queue(live_code_id, staff_id)

    transaction.on_commit(top_up_if_short)
