"""The scans of the landing codes, in time order, as the landing page records them
(channels_app.services.landing, the database store's rules):

- a visit picks a member of the code's pool and leases the member's slot whose lease ends
  first (30 minutes); when every slot is leased, the top-up has added one (up to 30 per
  member), so an add always joins the scan that leased its slot (`landing_scan_for_slot`:
  the latest scan of the slot before the add);
- a device that comes back within 30 minutes keeps its member and renews its slot
  (`reused`); others come back days later as new visits (the same device_key: fewer
  visitors than scans);
- a few visits find nobody to take them (the busy page): no staff member, no slot;
- each scan of a landing add is the customer's own visit, 5 seconds to 20 minutes before
  the add, in WeChat on a phone.

Scans are written with ids in time order; `visit_id` is the Redis stream entry id
("<ms>-<seq>") that the production path (LANDING_REDIS_URL) records.
"""

from __future__ import annotations

import heapq
import math
import random
from array import array
from bisect import bisect_right
from collections.abc import Iterator
from operator import itemgetter

from bench.reports.bulk import NULL, CopyBuffer
from bench.reports.catalog import CORP_PK, SLOTS_MAX_PER_STAFF, Catalog, hex_id, slot_new
from bench.reports.clock import Clock, split_exact, times_of_day
from bench.reports.lifecycles import Lifecycles

LEASE = 30 * 60  # channels_app.services.publishing.SLOT_LEASE
RETURN_SHARE = 0.08  # visits that are the same device again within 30 minutes
OLD_DEVICE_SHARE = 0.10  # visits by a device seen on an earlier visit, over an hour ago
BUSY_SHARE = 0.005  # the busy page: nobody in the pool could take the visitor
DEVICE_RING = 20_000  # recent anonymous devices a later visit may come from
ADD_BITS = 22  # add indexes below 4 million (scale 3); times in ms above them
# (device, in WeChat) by share of visits: phones in WeChat above all.
DEVICES = (
    [("mobile", "t")] * 76 + [("mobile", "f")] * 12 + [("tablet", "f")] * 3
    + [("desktop", "f")] * 6 + [("bot", "f")] * 1 + [("unknown", "f")] * 2
)  # fmt: skip
REFERRERS = {
    "xhs": "https://www.xiaohongshu.com/",
    "dy": "https://www.douyin.com/",
    "gzh": "https://mp.weixin.qq.com/",
    "sph": "https://channels.weixin.qq.com/",
}
COLUMNS = ("id", "corp_id", "live_code_id", "created_at", "visit_id", "utm_source",
           "utm_medium", "utm_campaign", "utm_content", "utm_term", "device", "in_wechat",
           "referrer_url", "ip_hash", "device_key", "staff_id", "slot_id", "store_id",
           "referral_id", "reused")  # fmt: skip


class ScanWriter:
    def __init__(self, cursor, clock: Clock, catalog: Catalog, rng: random.Random) -> None:
        self.buffer = CopyBuffer(cursor, "channels_app_scan", COLUMNS)
        self.clock = clock
        self.catalog = catalog
        self.rng = rng
        self.next_id = 1
        self.last_ms = -1
        self.seq = 0
        self.ring: list[tuple[int, int]] = []  # (device, last visit in µs)
        self.counts = {"linked": 0, "new": 0, "returning": 0, "old_device": 0, "busy": 0,
                       "stolen_leases": 0}  # fmt: skip

    def lease(self, code: int, staff: int, seconds: int) -> list[int]:
        slots = self.catalog.slots[(code, staff)]
        slot = min(slots, key=itemgetter(1))
        if slot[1] > seconds:
            if len(slots) < SLOTS_MAX_PER_STAFF:
                slot = [slot_new(self.catalog), 0, seconds - 1]  # the top-up made one just now
                slots.append(slot)
            else:  # the oldest lease is taken over, as the product does: an add may miss it
                self.counts["stolen_leases"] += 1
        slot[1] = seconds + LEASE
        return slot

    def write(self, micros: int, code: int, device: int, staff: int, slot: int, *,
              reused: bool = False, kind: str = "mobile", wechat: str = "t") -> int:  # fmt: skip
        scan_id = self.next_id
        self.next_id += 1
        ms = micros // 1000
        self.seq = self.seq + 1 if ms == self.last_ms else 0
        self.last_ms = ms
        source, medium, campaign = self.catalog.channel_utm[self.catalog.code_channel[code]]
        rng = self.rng
        content = f"cr{rng.randint(1, 40):02d}" if rng.random() < 0.4 else ""
        referrer = REFERRERS.get(source, "") if wechat == "f" and rng.random() < 0.5 else ""
        staff_text = staff or NULL
        slot_text = slot or NULL
        self.buffer.add(
            f"{scan_id}\t{CORP_PK}\t{code}\t{self.clock.text_us(micros)}\t{ms}-{self.seq}\t"
            f"{source}\t{medium}\t{campaign}\t{content}\t\t{kind}\t{wechat}\t{referrer}\t"
            f"{hex_id(device, 17)}\t{hex_id(device, 29)}\t{staff_text}\t{slot_text}\t"
            f"{NULL}\t{NULL}\t{'t' if reused else 'f'}\n"
        )
        return scan_id


def scans_write(
    cursor,
    *,
    clock: Clock,
    catalog: Catalog,
    life: Lifecycles,
    rng: random.Random,
    total: int,
    weights: list[float],
) -> dict[str, int]:
    """Write `total` scans (those of landing adds among them) and record, for each landing
    add, its slot and scan in `life`. Returns counts by kind of visit."""
    if len(life.add_at) >= 1 << ADD_BITS:
        raise ValueError("too many adds for the scan keys: lower --scale")
    writer = ScanWriter(cursor, clock, catalog, rng)
    linked = _linked(catalog, life, rng)
    others = max(0, total - len(linked))
    returns = round(others * RETURN_SHARE)
    base = others - returns
    spawns = bytearray(base)
    for k in rng.sample(range(base), returns):
        spawns[k] = 1
    pending: list[tuple[int, int, int, int, int, int]] = []  # returns: (µs, n, code, ...)
    next_device = life.customers + 1
    k = 0
    for micros, kind, payload in heapq.merge(
        _base_visits(clock, catalog, rng, base, weights), _linked_visits(linked)
    ):
        while pending and pending[0][0] <= micros:
            _return_visit(writer, heapq.heappop(pending))
        if kind == 1:  # the scan of landing add `payload`
            code, staff = life.add_code[payload], life.add_staff[payload]
            slot = writer.lease(code, staff, micros // 1_000_000)
            device = bisect_right(life.add_offsets, payload)  # the customer's own phone
            life.add_slot[payload] = slot[0]
            life.add_scan[payload] = writer.write(micros, code, device, staff, slot[0])
            writer.counts["linked"] += 1
            continue
        code = payload
        device, next_device = _visitor(writer, micros, next_device)
        device_kind, wechat = rng.choice(DEVICES)
        if rng.random() < BUSY_SHARE:
            writer.write(micros, code, device, 0, 0, kind=device_kind, wechat=wechat)
            writer.counts["busy"] += 1
            slot = None
            staff = 0
        else:
            staff = rng.choice(catalog.code_pool[code])
            slot = writer.lease(code, staff, micros // 1_000_000)
            writer.write(micros, code, device, staff, slot[0], kind=device_kind, wechat=wechat)
            writer.counts["new"] += 1
        if spawns[k]:
            later = min(micros + rng.randint(60, 25 * 60) * 1_000_000, clock.end * 1_000_000 - 1)
            heapq.heappush(pending, (later, k, code, device, staff, slot[0] if slot else 0))
        k += 1
    while pending:
        _return_visit(writer, heapq.heappop(pending))
    writer.buffer.flush()
    writer.counts["total"] = writer.next_id - 1
    return writer.counts


def _linked(catalog: Catalog, life: Lifecycles, rng: random.Random) -> array:
    """Every landing add's scan as one sortable integer, (milliseconds << 22) | add index,
    in time order: the customer's own visit a log-normal 5 s to 20 min (median 90 s) before
    the add. 8 bytes a scan, where tuples would take 130."""
    keys = array("q")
    landing = catalog.code_landing
    for j, code in enumerate(life.add_code):
        if code and landing[code]:
            delay = min(1_200_000, max(5_000, int(rng.lognormvariate(math.log(90_000), 0.9))))
            keys.append((life.add_at[j] * 1000 - delay) << ADD_BITS | j)
    return array("q", sorted(keys))


def _linked_visits(keys: array) -> Iterator[tuple[int, int, int]]:
    """(µs, 1, add index) in time order."""
    mask = (1 << ADD_BITS) - 1
    for key in keys:
        yield (key >> ADD_BITS) * 1000 + (key & 999), 1, key & mask


def _base_visits(
    clock: Clock, catalog: Catalog, rng: random.Random, count: int, weights: list[float]
) -> Iterator[tuple[int, int, int]]:
    """(µs, 0, code) of the visits that lead to no add, day by day in time order."""
    for day, n in enumerate(split_exact(count, weights)):
        codes = rng.choices(catalog.landing_ids, cum_weights=catalog.landing_cum, k=n)
        times = sorted(
            s * 1_000_000 + rng.randrange(1_000_000) for s in times_of_day(clock, day, n, rng)
        )
        for micros, code in zip(times, codes, strict=True):
            yield micros, 0, code


def _visitor(writer: ScanWriter, micros: int, next_device: int) -> tuple[int, int]:
    """A device seen more than an hour ago (some visitors come back days later), else a
    new one; returns (device, next new device number)."""
    ring = writer.ring
    if ring and writer.rng.random() < OLD_DEVICE_SHARE:
        device, seen = ring[writer.rng.randrange(len(ring))]
        if seen < micros - 3600 * 1_000_000:
            writer.counts["old_device"] += 1
            return device, next_device
    device = next_device
    if len(ring) < DEVICE_RING:
        ring.append((device, micros))
    else:
        ring[writer.rng.randrange(DEVICE_RING)] = (device, micros)
    return device, next_device + 1


def _return_visit(writer: ScanWriter, visit: tuple[int, int, int, int, int, int]) -> None:
    """The same device within 30 minutes: it keeps its member and renews its slot (a visit
    that found nobody tries again as a new visit)."""
    micros, _k, code, device, staff, slot_id = visit
    if staff:
        slot = next(s for s in writer.catalog.slots[(code, staff)] if s[0] == slot_id)
        slot[1] = micros // 1_000_000 + LEASE
        writer.write(micros, code, device, staff, slot_id, reused=True)
        writer.counts["returning"] += 1
        return
    staff = writer.rng.choice(writer.catalog.code_pool[code])
    slot = writer.lease(code, staff, micros // 1_000_000)
    writer.write(micros, code, device, staff, slot[0])
    writer.counts["new"] += 1
