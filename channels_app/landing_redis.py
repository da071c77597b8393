"""The landing store on Redis (the fast path; see landing_store for the contract): a visit is
one Lua script that checks the returning device, claims a member, leases the slot and appends
the scan to a stream, so a burst behind a Moments ad costs no database statement. A task
(services.landing_scans.landing_scans_flush) writes the stream to the database in batches.

Enabled by LANDING_REDIS_URL (a standalone Redis, not a cluster: the scripts derive key names;
its data should survive a restart: appendonly or RDB). Without it, or when Redis fails, visits
take the database store.

Caps: Redis keeps no cap counter of its own. A capped member's capacity is *granted* from its
DailyCounter (the one authority) in chunks (lock_objects.daily_counter_grant), and the script
spends the grant one visit at a time. When the first ranked member with possible room has no
grant left, the script does nothing and answers "refill": Python reserves the next chunk and
calls it again; a member the database refuses is full for the day at that cap (a raised cap
asks again). So Redis can only spend what the database gave, and a visit on the database path
(a Redis outage) only takes what is left: together they never exceed a cap. What a grant
leaves unspent (Redis lost its data, a cap lowered mid-day) is never assigned that day.

Keys, all under settings.LANDING_REDIS_PREFIX (`scrm:landing:` by default):
  n:<code>:<day>        hash staff id -> the day's new assignments (the ranking's loads; seeded
                        from DailyCounter.assigned for members it lacks)
  g:<code>:<day>        hash staff id -> "left:cap": grant not yet spent, and the cap it was
                        granted under; left -1: the database refused more at that cap
  slots:<code>:<staff>  sorted set slot id -> end of its lease (epoch seconds, 0 = never leased)
  hold:<slot>           the device key of the slot's last lease
  last:<slot>           the stream id of the slot's last scan (landing_scan_for_slot reads it)
  dev:<code>:<device>   "staff|slot|time" of the device's last visit with a slot
  scans                 stream of scans not yet in the database
The lease and the return window are compared with the visit's own clock, never with Redis's
expiry: TTLs only clear keys nobody needs any more.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from datetime import date, datetime

import redis
from django.conf import settings
from redis.exceptions import RedisError

from channels_app.assignment import Candidate
from channels_app.landing_store import Outcome, VisitRequest
from channels_app.lock_objects import daily_counter_grant
from channels_app.services.assignment import counters_ensure, daily_counters_read
from scrm.debounce import QueueWindow
from scrm.lru import LRU

logger = logging.getLogger(__name__)

PREFIX = "scrm:landing:"  # the default of settings.LANDING_REDIS_PREFIX
DAY_TTL_SECONDS = 3 * 24 * 3600  # a day's loads and grants outlive the day
KEEP_MARGIN_SECONDS = 60  # device, hold and last keys outlive the lease and the return window
# Capacity reserved from a capped member's DailyCounter per grant: a tenth of its cap, at most
# GRANT_CHUNK_MAX, at least 1. A busy member then costs one UPDATE (and one more script call)
# every `chunk` visits instead of a statement per visit, while what a grant can leave unspent
# (a Redis outage or restart, a cap lowered mid-day) stays within a tenth of the cap.
GRANT_CHUNK_MAX = 10
# Script calls one visit may make: each "refill" either grants capacity or marks a member
# full, so a visit settles within a few; only concurrent visits spending each new grant
# first make it call again. Past this it takes the database store.
CALLS_PER_VISIT = 24
# Per process: loads of recent (code, day)s, and the slots each code last gave Redis.
LOADS_CACHED = 1024
SLOTS_CACHED = 1024
SLOT_SCANS_WALKED = 4  # landing_scan_for_slot: the slot's last buffered scans, newest first


def grant_chunk(cap: int) -> int:
    return max(1, min(GRANT_CHUNK_MAX, cap // 10))


# Shared by the scripts: a grant "left:cap" (none: 0 left), and a member's load as the ranking
# should see it (a member the database refused counts as at least at its cap).
_PRELUDE = """
local function grant_of(value)
  if not value then return 0, -1 end
  local left, cap = string.match(value, '^(-?%d+):(%d+)$')
  return tonumber(left), tonumber(cap)
end
local function load_of(n, grant)
  local left, cap = grant_of(grant)
  n = tonumber(n)
  if left < 0 and cap > n then return cap end
  return n
end
local function all_loads(loads_key, grants_key)
  local flat, g, grants, parts = redis.call('HGETALL', loads_key),
                                 redis.call('HGETALL', grants_key), {}, {}
  for i = 1, #g, 2 do grants[g[i]] = g[i + 1] end
  for i = 1, #flat, 2 do
    parts[#parts + 1] = flat[i] .. ':' .. load_of(flat[i + 1], grants[flat[i]])
  end
  return table.concat(parts, ',')
end
"""

# One visit, all or nothing (the contract of landing_store):
# 1. a returning device whose slot is still its own (no later lease), within the return
#    window, whose member may keep visitors, renews the lease;
# 2. else, when a ranked member has no load yet, nothing is done: "seed";
# 3. else the first ranked member that is uncapped or has grant left at its cap is claimed
#    (its load counted, its grant spent) and its slot leased longest ago (never-leased first)
#    is leased; a member with no grant left, or one granted under another cap, stops the
#    visit: "refill"; a member refused at this cap is skipped. When nobody can be claimed,
#    nothing is done ("busy", with every member's load) unless the busy scan is to be recorded;
# then the scan is appended to the stream (with the slot's previous entry id) and the device,
# hold and last keys set.
# KEYS: loads, grants, device, stream. ARGV: slots prefix, hold prefix, last prefix, device
# key, now, lease seconds, return window seconds, keep ms, scan JSON, ",keepers,", "1" to
# record a busy scan, the ranked members as "staff id:cap or -1,..." (one argument: cheaper).
# Returns {kind, staff, slot, free slots left or -1, stream id, loads as "staff:n,..."}: every
# member's load after a claim or on "busy", not only the ranked ones' (a member this process
# stopped ranking at its cap may be granted more since), as one string (far cheaper for the
# client to parse than a nested reply).
_VISIT = (
    _PRELUDE
    + """
local now, lease = tonumber(ARGV[5]), tonumber(ARGV[6])
local window, keep_ms = tonumber(ARGV[7]), tonumber(ARGV[8])
local function record(staff, slot, reused)
  local prev = ''
  if slot ~= '' then prev = redis.call('GET', ARGV[3] .. slot) or '' end
  local id = redis.call('XADD', KEYS[4], '*', 'scan', ARGV[9], 'staff', staff, 'slot', slot,
                        'reused', reused, 'prev', prev)
  if slot ~= '' then
    redis.call('SET', ARGV[3] .. slot, id, 'PX', keep_ms)
    redis.call('SET', ARGV[2] .. slot, ARGV[4], 'PX', keep_ms)
    redis.call('SET', KEYS[3], staff .. '|' .. slot .. '|' .. ARGV[5], 'PX', keep_ms)
  end
  return id
end
local previous = redis.call('GET', KEYS[3])
if previous then
  local staff, slot, at = string.match(previous, '^(%d+)|(%d+)|(.+)$')
  if staff and now - tonumber(at) <= window
      and string.find(ARGV[10], ',' .. staff .. ',', 1, true)
      and redis.call('GET', ARGV[2] .. slot) == ARGV[4]
      and redis.call('ZSCORE', ARGV[1] .. staff, slot) then
    redis.call('ZADD', ARGV[1] .. staff, now + lease, slot)
    return {'renew', staff, slot, -1, record(staff, slot, '1'), ''}
  end
end
local members, caps = {}, {}
for member, cap in string.gmatch(ARGV[12], '(%d+):(-?%d+)') do
  members[#members + 1] = member
  caps[#caps + 1] = tonumber(cap)
end
local loads, grants = {}, {}
if #members > 0 then
  loads = redis.call('HMGET', KEYS[1], unpack(members))
  grants = redis.call('HMGET', KEYS[2], unpack(members))
end
for i = 1, #members do
  if not loads[i] then return {'seed', '', '', -1, '', ''} end
end
local chosen = 0
for i = 1, #members do
  if caps[i] < 0 then chosen = i break end
  local left, granted_cap = grant_of(grants[i])
  if granted_cap ~= caps[i] or left == 0 then return {'refill', members[i], '', -1, '', ''} end
  if left > 0 then
    redis.call('HSET', KEYS[2], members[i], (left - 1) .. ':' .. caps[i])
    chosen = i
    break
  end
end
if chosen == 0 and ARGV[11] ~= '1' then
  return {'busy', '', '', -1, '', all_loads(KEYS[1], KEYS[2])}
end
local staff, slot, free = '', '', -1
if chosen > 0 then
  staff = members[chosen]
  redis.call('HINCRBY', KEYS[1], staff, 1)
  local first = redis.call('ZRANGE', ARGV[1] .. staff, 0, 0)
  if first[1] then
    slot = first[1]
    redis.call('ZADD', ARGV[1] .. staff, now + lease, slot)
    free = redis.call('ZCOUNT', ARGV[1] .. staff, '-inf', now)
  end
end
return {'claim', staff, slot, free, record(staff, slot, '0'), all_loads(KEYS[1], KEYS[2])}
"""
)

# Loads for members Redis does not know yet, from the database; a load Redis knows is left
# alone. DailyCounter.assigned also counts grants not yet spent, so a known member (the only
# kind with a grant: the visit script seeds before it refills) read from it would look loaded
# by the unspent part: a concurrent visit that read the counters after another was granted a
# chunk would make the ranking drop the member at its cap with capacity left.
# KEYS: loads, grants. ARGV: ttl, then (staff id, load) pairs. Returns every member's load.
_SEED_LOADS = (
    _PRELUDE
    + """
for i = 2, #ARGV, 2 do
  redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return all_loads(KEYS[1], KEYS[2])
"""
)

# What the database granted a member: added to the grant left (capacity granted under another
# cap is still counted in the database, so it stays); 0 granted marks the member refused at
# this cap, unless a concurrent refill's grant is still there to spend.
# KEYS: grants. ARGV: staff id, granted, cap, ttl.
_GRANT = (
    _PRELUDE
    + """
local value = redis.call('HGET', KEYS[1], ARGV[1])
local left, cap = grant_of(value)
local granted = tonumber(ARGV[2])
if granted > 0 then
  if left < 0 then left = 0 end
  redis.call('HSET', KEYS[1], ARGV[1], (left + granted) .. ':' .. ARGV[3])
elseif not (cap == tonumber(ARGV[3]) and left > 0) then
  redis.call('HSET', KEYS[1], ARGV[1], '-1:' .. ARGV[3])
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return 1
"""
)

# A member's slots as published: new ones added, a later lease end (the database path's, in
# an outage) adopted, gone ones removed. KEYS: slots. ARGV: (lease end, slot id) pairs.
_SEED_SLOTS = """
local keep = {}
for i = 1, #ARGV, 2 do
  keep[ARGV[i + 1]] = true
  redis.call('ZADD', KEYS[1], 'GT', ARGV[i], ARGV[i + 1])
end
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if not keep[member] then redis.call('ZREM', KEYS[1], member) end
end
return 1
"""

# The slot's last scans still in the stream, newest first, following each entry's `prev`.
# KEYS: stream. ARGV: the slot's last key, how many at most.
_SLOT_SCANS = """
local found, id = {}, redis.call('GET', ARGV[1])
for _ = 1, tonumber(ARGV[2]) do
  if not id or id == '' then break end
  local entry = redis.call('XRANGE', KEYS[1], id, id)[1]
  if not entry then break end
  found[#found + 1] = entry
  id = nil
  for i = 1, #entry[2], 2 do
    if entry[2][i] == 'prev' then id = entry[2][i + 1] end
  end
end
return found
"""


def _unpack(packed: bytes) -> dict[int, int]:
    loads = {}
    for item in packed.split(b",") if packed else ():
        staff_id, load = item.split(b":")
        loads[int(staff_id)] = int(load)
    return loads


class RedisStore:
    """The scripts bound to one Redis client (thread-safe: redis-py pools connections), and
    this process's last-seen loads (the ranking's input between two visits)."""

    def __init__(self, url: str, prefix: str = PREFIX) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        # Every key starts with the prefix: a deployment (or a test run) may share the Redis.
        self.prefix = prefix
        self.stream = prefix + "scans"
        self._visit = self.client.register_script(_VISIT)
        self._seed_loads_script = self.client.register_script(_SEED_LOADS)
        self._grant = self.client.register_script(_GRANT)
        self._seed_slots_script = self.client.register_script(_SEED_SLOTS)
        self._slot_scans = self.client.register_script(_SLOT_SCANS)
        # (code id, day) -> every member's load as the last script call of this process
        # returned them: slightly stale under concurrency, which only nudges the balance (the
        # script checks what the ranking may not know: grants, refusals, missing loads).
        self._loads: LRU[tuple, dict[int, int]] = LRU(LOADS_CACHED)
        self._slots_seeded: LRU[int, object] = LRU(SLOTS_CACHED)

    def loads_key(self, live_code_id: int, day: date) -> str:
        return f"{self.prefix}n:{live_code_id}:{day}"

    def grants_key(self, live_code_id: int, day: date) -> str:
        return f"{self.prefix}g:{live_code_id}:{day}"

    def slots_key(self, live_code_id: int, staff_id: int) -> str:
        return f"{self.prefix}slots:{live_code_id}:{staff_id}"

    def loads(self, visit: VisitRequest) -> dict[int, int]:
        return self._loads.get((visit.live_code.pk, visit.day)) or {}

    def attempt(
        self, visit: VisitRequest, ranked: list[Candidate], *, record_busy: bool
    ) -> Outcome:
        live_code_id = visit.live_code.pk
        self._seed_slots(visit)
        caps = {c.staff_id: c.cap for c in ranked}
        packed_ranked = ",".join(f"{c.staff_id}:{-1 if c.cap is None else c.cap}" for c in ranked)
        keep_ms = int((max(visit.lease, visit.return_window).total_seconds()
                       + KEEP_MARGIN_SECONDS) * 1000)  # fmt: skip
        scan_json = json.dumps({**visit.scan, "created_at": visit.now.isoformat()},
                               separators=(",", ":"))  # fmt: skip
        keys = [self.loads_key(live_code_id, visit.day), self.grants_key(live_code_id, visit.day),
                f"{self.prefix}dev:{live_code_id}:{visit.device_key}", self.stream]  # fmt: skip
        args = [f"{self.prefix}slots:{live_code_id}:", self.prefix + "hold:", self.prefix + "last:",
                visit.device_key, visit.now.timestamp(), visit.lease.total_seconds(),
                visit.return_window.total_seconds(), keep_ms, scan_json,
                "," + ",".join(map(str, visit.keepers)) + ",", "1" if record_busy else "0",
                packed_ranked]  # fmt: skip
        for _call in range(CALLS_PER_VISIT):
            kind, staff, slot, free, _id, packed = self._visit(keys=keys, args=args)
            if kind == b"refill":
                self._refill(visit, int(staff), caps[int(staff)])
                continue
            if kind == b"seed":
                return Outcome("rerank", loads=self._seed_loads(visit))
            if kind != b"renew":  # every member's load ("renew" takes none)
                loads = _unpack(packed)
                self._loads[(live_code_id, visit.day)] = loads
                if kind == b"busy":
                    return Outcome("busy", loads=loads)
            _flush_soon()
            return Outcome(kind.decode(), staff_id=int(staff) if staff else None,
                           slot_id=int(slot) if slot else None,
                           free_slots=int(free) if int(free) >= 0 else None)  # fmt: skip
        raise RedisError("landing visit did not settle on Redis's grants")

    def free_slots(self, *, live_code_id: int, staff_id: int, now: datetime) -> int:
        return self.client.zcount(self.slots_key(live_code_id, staff_id), "-inf", now.timestamp())

    def _refill(self, visit: VisitRequest, staff_id: int, cap: int) -> None:
        """Reserve the member's next chunk from its DailyCounter and hand it to the script (0
        granted: refused at this cap)."""
        live_code = visit.live_code
        key = {"corp_id": live_code.corp_id, "live_code_id": live_code.pk, "staff_id": staff_id,
               "day": visit.day}  # fmt: skip
        granted = daily_counter_grant(**key, cap=cap, chunk=grant_chunk(cap))
        if not granted:  # refused, or the member joined the pool since the day was seeded
            counters_ensure(live_code=live_code, day=visit.day, staff_ids=[staff_id])
            granted = daily_counter_grant(**key, cap=cap, chunk=grant_chunk(cap))
        self._grant(keys=[self.grants_key(live_code.pk, visit.day)],
                    args=[staff_id, granted, cap, DAY_TTL_SECONDS])  # fmt: skip

    def _seed_loads(self, visit: VisitRequest) -> dict[int, int]:
        """Give Redis the day's loads it lacks from the database (DailyCounter.assigned, rows
        created when missing), and read every member's back."""
        live_code_id = visit.live_code.pk
        counters = daily_counters_read(live_code=visit.live_code, members=visit.members,
                                       day=visit.day)  # fmt: skip
        args: list = [DAY_TTL_SECONDS]
        for staff_id, counter in counters.items():
            args += [staff_id, counter.assigned]
        keys = [self.loads_key(live_code_id, visit.day), self.grants_key(live_code_id, visit.day)]
        packed = self._seed_loads_script(keys=keys, args=args)
        loads = _unpack(packed)
        self._loads[(live_code_id, visit.day)] = loads
        return loads

    def _seed_slots(self, visit: VisitRequest) -> None:
        """Give Redis the code's published slots once per config read: new slots join the
        lease rotation, gone ones leave it; leases Redis holds are kept (a later end from the
        database is adopted)."""
        live_code_id = visit.live_code.pk
        if self._slots_seeded.get(live_code_id) is visit.slots:
            return
        by_staff: dict[int, list[float]] = {m.staff_id: [] for m in visit.members}
        for slot in visit.slots.values():
            if slot.staff_id in by_staff:
                lease_end = slot.leased_until.timestamp() if slot.leased_until else 0.0
                by_staff[slot.staff_id] += [lease_end, slot.pk]
        pipe = self.client.pipeline(transaction=False)
        for staff_id, pairs in by_staff.items():
            key = self.slots_key(live_code_id, staff_id)
            if pairs:
                self._seed_slots_script(keys=[key], args=pairs, client=pipe)
            else:
                pipe.delete(key)
        pipe.execute()
        self._slots_seeded[live_code_id] = visit.slots

    # -- the buffer ---------------------------------------------------------------------------

    def pending_scans(self, count: int) -> list[tuple[str, dict[bytes, bytes]]]:
        return [(entry_id.decode(), fields) for entry_id, fields in
                self.client.xrange(self.stream, count=count)]  # fmt: skip

    def forget_scans(self, visit_ids: Sequence[str]) -> None:
        if visit_ids:
            self.client.xdel(self.stream, *visit_ids)

    def slot_scans(self, slot_id: int) -> list[tuple[str, dict[bytes, bytes]]]:
        """The slot's last scans still in the buffer (not yet written), newest first: one
        round trip, whatever else the buffer holds."""
        found = self._slot_scans(keys=[self.stream], args=[f"{self.prefix}last:{slot_id}",
                                                      SLOT_SCANS_WALKED])  # fmt: skip
        return [(entry_id.decode(), dict(zip(flat[::2], flat[1::2], strict=True)))
                for entry_id, flat in found]  # fmt: skip

    def process_state_clear(self) -> None:
        self._loads.clear()
        self._slots_seeded.clear()


# One flush of buffered scans per process and LANDING_FLUSH_DELAY.
flush_window = QueueWindow()


def _flush_soon() -> None:
    """Queue a flush of the buffered scans (debounced per process); with Celery eager (the
    embedded default, tests), flush now."""
    from channels_app.services.landing_scans import landing_scans_flush
    from channels_app.tasks import landing_scans_flush_task

    try:
        if landing_scans_flush_task.app.conf.task_always_eager:
            landing_scans_flush()
        else:
            flush_window.queue(landing_scans_flush_task, settings.LANDING_FLUSH_DELAY)
    except Exception:  # the broker or the flush failed: the scans wait in Redis for the beat
        logger.warning("could not flush landing scans now; the beat flush will", exc_info=True)


_instance: RedisStore | None = None
_instance_url = ""  # the prefix and URL the instance was made for
_instance_lock = threading.Lock()


def landing_redis() -> RedisStore | None:
    """The process's RedisStore, or None when LANDING_REDIS_URL is not set."""
    global _instance, _instance_url
    url = settings.LANDING_REDIS_URL
    if not url:
        return None
    made_for = f"{settings.LANDING_REDIS_PREFIX} {url}"
    if _instance is None or _instance_url != made_for:
        with _instance_lock:
            if _instance is None or _instance_url != made_for:
                _instance = RedisStore(url, settings.LANDING_REDIS_PREFIX)
                _instance_url = made_for
    return _instance
