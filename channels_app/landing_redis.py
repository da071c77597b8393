"""The landing page's Redis path: daily counters, slot leases and returning devices kept in
Redis, and scans appended to a Redis stream that services.landing.landing_scans_flush writes to
the database in batches. A visit is then one Redis round trip (a Lua script) and no database
statement, so a burst behind a Moments ad is limited by Python, not by row locks and commits.

Enabled by LANDING_REDIS_URL (a standalone Redis, not a cluster: the scripts derive key names;
its data should survive a restart: appendonly or RDB). Without it, or when Redis fails, visits
take the database path (lock_objects and services.assignment), whose DailyCounter rows stay
the day's record either way: the flush raises them to Redis's counts, and Redis's counters
start from them. (The one gap: after a Redis outage in the middle of a day, Redis's count is
raised to the database's, which misses the visits the database path took while Redis still
held claims not yet flushed; a member may take that many visits over its cap.)

Keys, all under `scrm:landing:`:
  cnt:<code>:<day>      hash staff id -> visits assigned that local day (the cap's counter)
  slots:<code>:<staff>  sorted set slot id -> end of its lease (epoch seconds, 0 = never leased)
  hold:<slot>           the device key holding the slot's lease (expires with the lease)
  dev:<code>:<device>   "staff|slot" of the device's last visit (expires after RETURN_WINDOW)
  scans                 stream of scans not yet in the database
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import redis
from django.conf import settings

PREFIX = "scrm:landing:"
STREAM = PREFIX + "scans"
COUNTER_TTL_SECONDS = 3 * 24 * 3600

# One visit, all or nothing, so a cap holds under any concurrency and no assignment goes
# without its scan:
# 1. a returning device whose slot is still its own (and whose member may still take visitors)
#    keeps member and slot: the lease is renewed;
# 2. else, when a ranked member has no counter yet, nothing is done: the caller seeds the
#    day's counters from the database and calls again;
# 3. else the first ranked member below its cap is counted and its slot leased longest ago is
#    leased; when every ranked member is capped, nothing is done unless the busy scan is to be
#    recorded (the caller first re-ranks with the counters returned);
# then the device is remembered and the scan appended to the stream.
# KEYS: cnt, dev, stream. ARGV: slots prefix, hold prefix, device key, now, lease seconds,
# return window seconds, scan JSON, ",staff ids a returning device may keep,", "1" to record
# a busy scan, the ranked members as "staff id:cap or -1,..." (one argument: cheaper to send).
# Returns {kind, staff, slot, free slots left or -1, stream id, counts as "staff:n,..."}: the
# ranked members' counts after a claim, the whole day's on "busy" (one string: far cheaper for
# the client to parse than a nested reply).
_VISIT = """
local function counters(key)
  local flat, parts = redis.call('HGETALL', key), {}
  for i = 1, #flat, 2 do parts[#parts + 1] = flat[i] .. ':' .. flat[i + 1] end
  return table.concat(parts, ',')
end
local now, lease = tonumber(ARGV[4]), tonumber(ARGV[5])
local lease_ms, window_ms = math.floor(lease * 1000), math.floor(tonumber(ARGV[6]) * 1000)
local previous = redis.call('GET', KEYS[2])
if previous then
  local staff, slot = string.match(previous, '^([^|]*)|([^|]*)$')
  if staff and string.find(ARGV[8], ',' .. staff .. ',', 1, true)
      and redis.call('GET', ARGV[2] .. slot) == ARGV[3]
      and redis.call('ZSCORE', ARGV[1] .. staff, slot) then
    redis.call('ZADD', ARGV[1] .. staff, now + lease, slot)
    redis.call('PEXPIRE', ARGV[2] .. slot, lease_ms)
    redis.call('PEXPIRE', KEYS[2], window_ms)
    local id = redis.call('XADD', KEYS[3], '*', 'scan', ARGV[7], 'staff', staff, 'slot', slot,
                          'reused', '1')
    return {'renew', staff, slot, -1, id, ''}
  end
end
local members, caps = {}, {}
for member, cap in string.gmatch(ARGV[10], '(%d+):(-?%d+)') do
  members[#members + 1] = member
  caps[#caps + 1] = tonumber(cap)
end
local counts = {}
if #members > 0 then counts = redis.call('HMGET', KEYS[1], unpack(members)) end
for i = 1, #members do
  if not counts[i] then return {'seed', '', '', -1, '', ''} end
end
local staff = ''
for i = 1, #members do
  local n = tonumber(counts[i])
  if caps[i] < 0 or n < caps[i] then
    redis.call('HINCRBY', KEYS[1], members[i], 1)
    counts[i] = n + 1
    staff = members[i]
    break
  end
end
if staff == '' and ARGV[9] ~= '1' then
  return {'busy', '', '', -1, '', counters(KEYS[1])}
end
local slot, free = '', -1
if staff ~= '' then
  local first = redis.call('ZRANGE', ARGV[1] .. staff, 0, 0)
  if first[1] then
    slot = first[1]
    redis.call('ZADD', ARGV[1] .. staff, now + lease, slot)
    redis.call('SET', ARGV[2] .. slot, ARGV[3], 'PX', lease_ms)
    redis.call('SET', KEYS[2], staff .. '|' .. slot, 'PX', window_ms)
    free = redis.call('ZCOUNT', ARGV[1] .. staff, '-inf', now)
  end
end
local id = redis.call('XADD', KEYS[3], '*', 'scan', ARGV[7], 'staff', staff, 'slot', slot,
                      'reused', '0')
local ranked_counts = {}
for i = 1, #members do ranked_counts[i] = members[i] .. ':' .. counts[i] end
return {'claim', staff, slot, free, id, table.concat(ranked_counts, ',')}
"""

# Counters for members Redis does not know yet, from the database: never lowers a count.
# KEYS: cnt. ARGV: ttl, then (staff id, count) pairs.
_SEED_COUNTERS = """
for i = 2, #ARGV, 2 do
  local known = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '-1')
  if known < tonumber(ARGV[i + 1]) then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
"""

# A member's slots as published: new ones added with their lease, gone ones removed.
# KEYS: slots. ARGV: (slot id, lease end) pairs.
_SEED_SLOTS = """
local keep = {}
for i = 1, #ARGV, 2 do
  keep[ARGV[i]] = true
  redis.call('ZADD', KEYS[1], 'NX', ARGV[i + 1], ARGV[i])
end
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if not keep[member] then redis.call('ZREM', KEYS[1], member) end
end
return 1
"""


@dataclass(frozen=True)
class Visit:
    # "claim" (also a recorded busy visit: no staff), "renew" (a returning device), or, with
    # nothing done, "seed" (counters missing) or "busy" (every ranked member capped)
    kind: str
    staff_id: int | None
    slot_id: int | None
    free_slots: int  # the member's slots not leased after this visit's; -1 when not known
    visit_id: str  # the scan's stream entry id
    counters: dict[int, int]  # assignments by staff id: the ranked members' (claim), all (busy)


def _pair(item: bytes) -> tuple[int, int]:
    staff_id, count = item.split(b":")
    return int(staff_id), int(count)


class LandingRedis:
    """The scripts bound to one Redis client (thread-safe: redis-py pools connections)."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._visit = self.client.register_script(_VISIT)
        self._seed_counters = self.client.register_script(_SEED_COUNTERS)
        self._seed_slots = self.client.register_script(_SEED_SLOTS)

    @staticmethod
    def counter_key(live_code_id: int, day: date) -> str:
        return f"{PREFIX}cnt:{live_code_id}:{day.isoformat()}"

    @staticmethod
    def slots_key(live_code_id: int, staff_id: int) -> str:
        return f"{PREFIX}slots:{live_code_id}:{staff_id}"

    @staticmethod
    def device_key(live_code_id: int, device: str) -> str:
        return f"{PREFIX}dev:{live_code_id}:{device}"

    def visit(
        self,
        *,
        live_code_id: int,
        day: date,
        device: str,
        now: float,
        lease_seconds: float,
        return_seconds: float,
        scan_json: str,
        keepers: Sequence[int],
        ranked: list[tuple[int, int | None]],
        record_busy: bool,
    ) -> Visit:
        """One landing visit in one round trip (see _VISIT). `keepers`: the members a returning
        device may keep; `ranked`: (staff id, daily cap) in the order the strategy tries them."""
        keeper_set = "," + ",".join(map(str, keepers)) + ","
        packed_ranked = ",".join(f"{s}:{-1 if cap is None else cap}" for s, cap in ranked)
        args = [f"{PREFIX}slots:{live_code_id}:", PREFIX + "hold:", device, now, lease_seconds,
                return_seconds, scan_json, keeper_set, "1" if record_busy else "0",
                packed_ranked]  # fmt: skip
        keys = [self.counter_key(live_code_id, day), self.device_key(live_code_id, device), STREAM]
        kind, staff, slot, free, visit_id, packed = self._visit(keys=keys, args=args)
        return Visit(
            kind=kind.decode(),
            staff_id=int(staff) if staff else None,
            slot_id=int(slot) if slot else None,
            free_slots=int(free),
            visit_id=visit_id.decode(),
            counters=dict(_pair(item) for item in packed.split(b",")) if packed else {},
        )

    def seed_counters(self, *, live_code_id: int, day: date, counts: dict[int, int]) -> None:
        args: list = [COUNTER_TTL_SECONDS]
        for staff_id, count in counts.items():
            args += [staff_id, count]
        self._seed_counters(keys=[self.counter_key(live_code_id, day)], args=args)

    def seed_slots(
        self, *, live_code_id: int, slots_by_staff: dict[int, list[tuple[int, float]]]
    ) -> None:
        pipe = self.client.pipeline(transaction=False)
        for staff_id, slots in slots_by_staff.items():
            key = self.slots_key(live_code_id, staff_id)
            if slots:
                self._seed_slots(keys=[key], args=[v for pair in slots for v in pair], client=pipe)
            else:
                pipe.delete(key)
        pipe.execute()

    def counters(self, *, live_code_id: int, day: date) -> dict[int, int]:
        flat = self.client.hgetall(self.counter_key(live_code_id, day))
        return {int(k): int(v) for k, v in flat.items()}

    def pending_scans(self, count: int) -> list[tuple[str, dict[bytes, bytes]]]:
        return [(entry_id.decode(), fields) for entry_id, fields in
                self.client.xrange(STREAM, count=count)]  # fmt: skip

    def forget_scans(self, visit_ids: list[str]) -> None:
        if visit_ids:
            self.client.xdel(STREAM, *visit_ids)


_instance: LandingRedis | None = None
_instance_url = ""
_instance_lock = threading.Lock()


def landing_redis() -> LandingRedis | None:
    """The process's LandingRedis, or None when LANDING_REDIS_URL is not set."""
    global _instance, _instance_url
    url = settings.LANDING_REDIS_URL
    if not url:
        return None
    if _instance is None or _instance_url != url:
        with _instance_lock:
            if _instance is None or _instance_url != url:
                _instance, _instance_url = LandingRedis(url), url
    return _instance
