"""The landing visit (two-jump tracking): record the scan, pick a staff member, lease one of
their slots so the add that follows joins this exact scan. No WeCom call on this path.

The rules live here, once; the store a visit runs on (channels_app.landing_store: the database,
or Redis when LANDING_REDIS_URL is set) only implements the atomic mechanism."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from time import monotonic
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from redis.exceptions import RedisError

from channels_app.assignment import members_on_duty
from channels_app.landing_db import database_store
from channels_app.landing_redis import landing_redis
from channels_app.landing_store import LandingStore, Outcome, VisitRequest
from channels_app.models import LandingSlot, LiveCode, ReferralCode, Scan, Store
from channels_app.selectors import LandingConfig
from channels_app.services.assignment import local_now, pool_members, staff_ranked
from channels_app.services.landing_limits import landing_quota_return, landing_quota_take
from channels_app.services.publishing import SLOT_LEASE, SLOTS_PER_STAFF
from channels_app.tasks import landing_slots_top_up_task
from contacts.models import Staff
from scrm.input_guard import text_storable
from scrm.lru import LRU

logger = logging.getLogger(__name__)

RETURN_WINDOW = timedelta(minutes=30)  # the same device within this keeps its staff member
# Rankings one visit may try: a busy answer with loads that moved (visits claiming at the same
# time) ranks again; the last try records the visit as busy whatever the loads.
RANKINGS_PER_VISIT = 4
TOP_UP_DEBOUNCE_SECONDS = 2
TOP_UPS_TRACKED = 4096  # (code, member) debounce stamps kept per process
UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")
# Self-declared robots, link previews and HTTP tools: they get the page without an assignment
# (see landing_visit). "bot" not after "cu": CUBOT is a phone brand (Android UA model names).
BOT_RE = re.compile(
    r"(?<!cu)bot|crawl|spider|slurp|preview|facebookexternalhit|whatsapp|embedly|"
    r"curl|wget|python-requests|python-urllib|python-httpx|aiohttp|go-http-client|okhttp|"
    r"java/|libwww|httpclient|headlesschrome|phantomjs|scrapy|node-fetch|axios/|postman",
    re.I,
)
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


def is_bot(user_agent: str) -> bool:
    """A robot, a link preview or an HTTP tool, by its own User-Agent; none is one too (every
    browser and WeChat send one)."""
    return not user_agent.strip() or BOT_RE.search(user_agent) is not None


def _keyed_hash(purpose: str, value: str) -> str:
    """HMAC with a secret salt: equal inputs match, the raw IP cannot be recovered."""
    key = (settings.SCAN_HASH_SALT + purpose).encode()
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:32]


@dataclass
class LandingResult:
    scan: Scan | None  # None on the Redis store: the scan is written by the next flush
    staff: Staff | None
    slot: LandingSlot | None
    claimed: bool = False  # a new assignment: a member's capacity taken
    bot: bool = False  # a robot's visit: nothing recorded, nobody assigned


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

    Landing-mode visits without a store run on the Redis store when LANDING_REDIS_URL is set
    (the scan reaches the database in the next flush); everything else, and every visit
    while Redis fails, runs on the database store. The rules are the same on both, and so
    are these two, decided before any store is asked:

    - A robot (is_bot: a crawler, a link preview, an HTTP tool, no User-Agent) gets a result
      with `bot` set and nothing else: no Scan row, no assignment, no slot, no cap counted.
      Reports count scans, and a preview of a link shared in a chat must not add to them.
    - Rate limits (services.landing_limits) refuse a visit with LandingRateLimited before it
      can take capacity; a visit that took none gives its count back."""
    live_code = config.live_code
    if is_bot(user_agent):
        return LandingResult(scan=None, staff=None, slot=None, bot=True)
    ip_hash = _keyed_hash("ip", ip) if ip else ""
    counted = landing_quota_take(live_code_id=live_code.pk, ip_hash=ip_hash)
    try:
        result = _visit(config, params, user_agent, referrer_url, ip, ip_hash, store, referral)
    except BaseException:
        landing_quota_return(counted)
        raise
    if not result.claimed:
        landing_quota_return(counted)
    return result


def _visit(
    config: LandingConfig,
    params: dict[str, str],
    user_agent: str,
    referrer_url: str,
    ip: str,
    ip_hash: str,
    store: Store | None,
    referral: ReferralCode | None,
) -> LandingResult:
    live_code = config.live_code
    now = timezone.now()
    moment = local_now(live_code, now)
    if store is None:
        members, keepers = config.members, config.active_staff_ids
    else:
        members = tuple(pool_members(live_code, store))
        keepers = frozenset(m.staff_id for m in members if m.staff.status == Staff.Status.ACTIVE)
    device_key = _keyed_hash("device", f"{ip}|{user_agent}")
    visit = VisitRequest(
        live_code=live_code, members=members, keepers=keepers, day=moment.date(), now=now,
        device_key=device_key, lease=SLOT_LEASE, return_window=RETURN_WINDOW,
        slots=config.slots, store_id=store.pk if store else None,
        scan={**_scan_fields(live_code, params, user_agent, referrer_url, ip_hash),
              "device_key": device_key, "referral_id": referral.pk if referral else None,
              "store_id": store.pk if store else None},
    )  # fmt: skip
    on_duty = None
    if config.shifts or config.specials:
        on_duty = members_on_duty(config.shifts, config.specials, moment)
    store_redis = landing_redis()
    if store_redis is not None and store is None and live_code.mode == LiveCode.Mode.LANDING:
        try:
            return _visit_on(store_redis, visit, config, on_duty)
        except RedisError:
            logger.exception("landing code %s: Redis failed, visit recorded in the database",
                             live_code.slug)  # fmt: skip
    return _visit_on(database_store, visit, config, on_duty)


def _visit_on(
    store: LandingStore,
    visit: VisitRequest,
    config: LandingConfig,
    on_duty: frozenset[int] | None,
) -> LandingResult:
    """Rank the members on the store's loads and let the store attempt the visit. A busy
    answer is final only when the ranking already used the store's current loads (else a
    member capped since the ranking may have let backups in): rank again on them."""
    loads = store.loads(visit)
    record_busy = False
    for attempt in range(RANKINGS_PER_VISIT):
        ranked = staff_ranked(visit.live_code, visit.members, loads, on_duty)
        outcome = store.attempt(visit, ranked, record_busy=record_busy)
        if outcome.kind in ("claim", "renew"):
            return _result(store, visit, config, outcome)
        record_busy = attempt == RANKINGS_PER_VISIT - 2 or (
            outcome.kind == "busy" and _same_loads(outcome.loads, loads, visit)
        )
        loads = outcome.loads
    raise RedisError("landing visit did not settle")  # only the Redis store answers "rerank"


def _same_loads(fresh: dict[int, int], used: dict[int, int], visit: VisitRequest) -> bool:
    return all(fresh.get(s) == used.get(s) for s in visit.staff_ids)


def _result(
    store: LandingStore, visit: VisitRequest, config: LandingConfig, outcome: Outcome
) -> LandingResult:
    staff = None
    if outcome.staff_id is not None:
        staff = config.staff_by_id.get(outcome.staff_id) or next(
            (m.staff for m in visit.members if m.staff_id == outcome.staff_id), None
        )  # a store's member may be newer than the cached config
    slot = outcome.slot
    if slot is None and outcome.slot_id is not None:
        slot = _slot_of(config, outcome.slot_id)
    if outcome.kind == "claim" and staff is not None:
        _top_up_if_short(store, visit.live_code.pk, staff.pk, outcome.free_slots)
    claimed = outcome.kind == "claim" and staff is not None
    return LandingResult(scan=outcome.scan, staff=staff, slot=slot, claimed=claimed)


def _slot_of(config: LandingConfig, slot_id: int) -> LandingSlot | None:
    """A slot of the cached config; one published since the config was read, from the
    database."""
    slot = config.slots.get(slot_id)
    if slot is None:
        slot = LandingSlot.objects.filter(pk=slot_id, live_code=config.live_code).first()
    return slot


def _scan_fields(
    live_code: LiveCode, params: dict[str, str], user_agent: str, referrer_url: str, ip_hash: str
) -> dict[str, Any]:
    """A scan's columns that do not depend on the assignment."""
    channel = live_code.channel
    utm = {name: (params.get(name) or getattr(channel, name, "") or "")[:64] for name in UTM_FIELDS}
    return {
        "corp_id": live_code.corp_id,
        "live_code_id": live_code.pk,
        "device": device_class(user_agent),
        "in_wechat": "micromessenger" in user_agent.lower(),
        # A header the visitor's client wrote: one PostgreSQL cannot store (NUL) is dropped.
        "referrer_url": referrer_url[:512] if text_storable(referrer_url) else "",
        "ip_hash": ip_hash,
        **utm,
    }


# -- slot top-ups ------------------------------------------------------------------------------

# (code id, staff id) -> monotonic time before which the member's slots are not checked again.
_top_up_checked: LRU[tuple[int, int], float] = LRU(TOP_UPS_TRACKED)


def landing_process_state_clear() -> None:
    """Forget this process's landing state (tests: ids are reused)."""
    _top_up_checked.clear()
    store_redis = landing_redis()
    if store_redis is not None:
        store_redis.process_state_clear()


def _top_up_due(live_code_id: int, staff_id: int) -> bool:
    """True at most once per member and process every TOP_UP_DEBOUNCE_SECONDS: a busy code
    would otherwise check its slots and queue a top-up on every visit. (The top-up itself is
    idempotent: it creates slots only while the member is short of free ones.)"""
    now = monotonic()
    key = (live_code_id, staff_id)
    if (_top_up_checked.get(key) or 0.0) > now:
        return False
    _top_up_checked[key] = now + TOP_UP_DEBOUNCE_SECONDS
    return True


def _top_up_if_short(
    store: LandingStore, live_code_id: int, staff_id: int, free: int | None
) -> None:
    """After commit (outside the counter's lock): when the member claimed is short of free
    slots, queue a top-up (checked at most once per member every TOP_UP_DEBOUNCE_SECONDS).
    `free` is the store's count after the visit when it had it at hand. Not through
    transaction.on_commit outside a transaction: it opens a database connection (and with
    CONN_HEALTH_CHECKS runs a query), which a Redis-store visit must not."""
    if free is not None and free >= SLOTS_PER_STAFF - 1:
        return

    def top_up_if_short() -> None:
        if not _top_up_due(live_code_id, staff_id):
            return  # checked moments ago
        count = free
        if count is None:
            count = store.free_slots(live_code_id=live_code_id, staff_id=staff_id,
                                     now=timezone.now())  # fmt: skip
        if count < SLOTS_PER_STAFF - 1:
            _top_up_queue(live_code_id, staff_id)

    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(top_up_if_short)
    else:
        top_up_if_short()


def _top_up_queue(live_code_id: int, staff_id: int) -> None:
    try:
        landing_slots_top_up_task.delay(live_code_id, staff_id)
    except Exception:  # broker down: the visit stands, the oldest lease is reused
        logger.exception("could not queue a landing slot top-up for code %s", live_code_id)
