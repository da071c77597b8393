"""What happens to each customer, decided before any row is written: the first add (time,
code, staff), a second relation with another staff member, a deletion followed by a re-add,
a final deletion, and how many consults, orders and refunds. Kept in typed arrays (about 30
bytes per add), so the scan pass can lease slots in time order and the customer pass can
write every table from the same facts.

Customers are numbered in the order of their first add (ExternalContact ids grow with
"first seen", as in the product). Events never reach the window's end (the data describes
the past) and a customer's events on one relation never share a second.
"""

from __future__ import annotations

import math
import random
from array import array
from bisect import bisect_left
from dataclasses import dataclass, field

from bench.reports.catalog import Catalog
from bench.reports.clock import DAY, Clock, split_exact, times_of_day

# Adds without a live code: a customer searching the staff member's phone number (2),
# a shared card (3), phone contacts (5), a WeChat contact (6); half of them carry a state
# made elsewhere (a code built by hand in WeCom, another tool), kept as "foreign".
NO_CODE_SHARE = 0.02
NO_CODE_WAYS = (2, 3, 5, 6)
FOREIGN_STATES = ("xhs_note_2024", "wx_menu", "gzh_article_12", "ad_manual_03", "vip_event")
BACKFILLED_SHARE = 0.01  # native and code-less first adds found by the nightly calibration
RE_ADD_SAME_CODE = 0.7  # else through no code at all (add_way 0: "after a mutual delete")
SECOND_SAME_CHANNEL = 0.6
DELETED_BY_CUSTOMER = 1
DELETED_BY_STAFF = 2
FLAG_BACKFILLED = 1
FLAG_FOREIGN = 2


@dataclass(frozen=True)
class Counts:
    customers: int
    adds: int
    deletions: int
    re_adds: int
    scans: int
    conversions: int

    @classmethod
    def scaled(cls, scale: float) -> Counts:
        def n(value: int) -> int:
            return max(1, round(value * scale))

        return cls(n(1_000_000), n(1_300_000), n(300_000), n(60_000), n(3_000_000), n(200_000))


@dataclass
class Lifecycles:
    first_at: array = field(default_factory=lambda: array("q"))  # per customer
    add_offsets: array = field(default_factory=lambda: array("i", [0]))  # N + 1
    add_at: array = field(default_factory=lambda: array("q"))
    add_code: array = field(default_factory=lambda: array("h"))  # 0: no live code
    add_staff: array = field(default_factory=lambda: array("h"))
    add_rel: array = field(default_factory=lambda: array("b"))  # 0 first relation, 1 second
    add_way: array = field(default_factory=lambda: array("b"))
    add_flags: array = field(default_factory=lambda: array("b"))
    # Filled by the scan pass for landing adds: the slot leased and the scan that leased it.
    add_slot: array = field(default_factory=lambda: array("i"))
    add_scan: array = field(default_factory=lambda: array("i"))
    del_offsets: array = field(default_factory=lambda: array("i", [0]))
    del_at: array = field(default_factory=lambda: array("q"))
    del_rel: array = field(default_factory=lambda: array("b"))
    del_kind: array = field(default_factory=lambda: array("b"))
    consults: bytearray = field(default_factory=bytearray)
    orders: bytearray = field(default_factory=bytearray)
    refunds: bytearray = field(default_factory=bytearray)
    unmatched: int = 0

    @property
    def customers(self) -> int:
        return len(self.first_at)


def _delay(rng: random.Random, median: float, minimum: float) -> int:
    """A log-normal delay in seconds: most are near the median, a long tail later."""
    return int(max(minimum, rng.lognormvariate(math.log(median), 1.0)))


def lifecycles_build(
    *, clock: Clock, catalog: Catalog, rng: random.Random, counts: Counts, weights: list[float]
) -> Lifecycles:
    life = Lifecycles()
    n = counts.customers
    for day, count in enumerate(split_exact(n, weights)):
        life.first_at.extend(times_of_day(clock, day, count, rng))
    # Roles go to customers first added at least three days before the end, so that their
    # later events fit in the window (99% of them at full size).
    eligible = bisect_left(life.first_at, clock.end - 3 * DAY)
    re_adds = counts.re_adds
    seconds = counts.adds - n - re_adds
    finals = counts.deletions - re_adds
    if min(re_adds, seconds, finals) < 0 or max(re_adds, seconds, finals) > eligible:
        raise ValueError(f"counts do not fit {n} customers: {counts}")
    roles = bytearray(n)
    for bit, k in ((1, re_adds), (2, seconds), (4, finals)):
        for i in rng.sample(range(eligible), k):
            roles[i] |= bit
    drawn = rng.choices(catalog.code_ids, cum_weights=catalog.code_cum, k=n)
    end = clock.end
    for i in range(n):
        _customer(life, catalog, rng, life.first_at[i], drawn[i], roles[i], end)
    life.add_slot = array("i", bytes(4 * len(life.add_at)))
    life.add_scan = array("i", bytes(4 * len(life.add_at)))
    _conversions_assign(life, rng, counts.conversions)
    return life


def _later(rng: random.Random, at: int, delay: int, end: int) -> int:
    """`at + delay`, or a random moment before the end when that is past it."""
    if at + delay < end - 1:
        return at + delay
    room = end - 2 - at
    return at + 1 + (int(rng.random() * room) if room > 0 else 0)


def _customer(
    life: Lifecycles,
    catalog: Catalog,
    rng: random.Random,
    t0: int,
    code: int,
    role: int,
    end: int,
) -> None:
    flags = 0
    way = 1  # scanned a QR code
    if rng.random() < NO_CODE_SHARE:
        code, way = 0, rng.choice(NO_CODE_WAYS)
        staff = rng.choice(catalog.staff_ids)
        flags = FLAG_FOREIGN if rng.random() < 0.5 else 0
    else:
        staff = rng.choice(catalog.code_pool[code])
    if (code == 0 or not catalog.code_landing[code]) and rng.random() < BACKFILLED_SHARE:
        flags |= FLAG_BACKFILLED
    adds = [(t0, code, staff, 0, way, flags)]
    deletions = []
    first_last = t0  # the first relation's latest event
    if role & 1:  # deleted, then added again by the same customer and staff member
        deleted = _later(rng, t0, _delay(rng, 2 * DAY, 600), end)
        kind = DELETED_BY_CUSTOMER if rng.random() < 0.8 else DELETED_BY_STAFF
        deletions.append((deleted, 0, kind))
        again = _later(rng, deleted, _delay(rng, 5 * DAY, 3600), end)
        if code and rng.random() < RE_ADD_SAME_CODE:
            adds.append((again, code, staff, 0, 1, 0))
        else:
            adds.append((again, 0, staff, 0, 0, 0))
        first_last = again
    second_last = 0
    if role & 2:  # a second relation, with another staff member
        second = _later(rng, t0, _delay(rng, 12 * DAY, 3600), end)
        code2, staff2 = _second_code(catalog, rng, code, staff)
        adds.append((second, code2, staff2, 1, 1 if code2 else rng.choice(NO_CODE_WAYS), 0))
        second_last = second
    if role & 4:  # a final deletion, of the second relation or the first
        rel, base = (1, second_last) if second_last and rng.random() < 0.5 else (0, first_last)
        kind = DELETED_BY_CUSTOMER if rng.random() < 0.85 else DELETED_BY_STAFF
        deletions.append((_later(rng, base, _delay(rng, 6 * DAY, 600), end), rel, kind))
    if len(adds) > 1:
        adds.sort()
    for at, add_code, add_staff, rel, add_way, add_flags in adds:
        life.add_at.append(at)
        life.add_code.append(add_code)
        life.add_staff.append(add_staff)
        life.add_rel.append(rel)
        life.add_way.append(add_way)
        life.add_flags.append(add_flags)
    life.add_offsets.append(len(life.add_at))
    for at, rel, kind in sorted(deletions):
        life.del_at.append(at)
        life.del_rel.append(rel)
        life.del_kind.append(kind)
    life.del_offsets.append(len(life.del_at))


def _second_code(catalog: Catalog, rng: random.Random, code: int, staff: int) -> tuple[int, int]:
    """Another code of the same channel (another poster of the campaign) or any code by
    popularity, and a member of its pool other than the first staff member."""
    siblings = catalog.channel_codes[catalog.code_channel[code]] if code else []
    if len(siblings) > 1 and rng.random() < SECOND_SAME_CHANNEL:
        code2 = rng.choice([c for c in siblings if c != code])
    elif rng.random() < NO_CODE_SHARE:
        other = staff
        while other == staff:
            other = rng.choice(catalog.staff_ids)
        return 0, other
    else:
        code2 = rng.choices(catalog.code_ids, cum_weights=catalog.code_cum)[0]
    return code2, rng.choice([s for s in catalog.code_pool[code2] if s != staff])


def _conversions_assign(life: Lifecycles, rng: random.Random, total: int) -> None:
    """Exactly `total` conversions: 1% unmatched (an external_userid no customer has), 35%
    consults (one each), 6% refunds (of orders), the rest orders among buyers who order 1.35
    times on average."""
    n = life.customers
    life.consults = bytearray(n)
    life.orders = bytearray(n)
    life.refunds = bytearray(n)
    life.unmatched = round(total * 0.01)
    consults = min(n, round(total * 0.35))
    refunds = round(total * 0.06)
    orders = total - life.unmatched - consults - refunds
    buyers = min(n, max(1, round(orders / 1.35)))
    for i in rng.sample(range(n), consults):
        life.consults[i] = 1
    buyer_list = rng.sample(range(n), buyers)
    for i in buyer_list:
        life.orders[i] = 1
    for i in rng.choices(buyer_list, k=orders - buyers):
        if life.orders[i] < 9:
            life.orders[i] += 1
        else:  # a rare long tail of repeat buyers stops at 9 orders; give it to another
            life.orders[rng.choice(buyer_list)] += 1
    placed = 0
    while placed < refunds:
        i = rng.choice(buyer_list)
        if life.refunds[i] < life.orders[i]:
            life.refunds[i] += 1
            placed += 1
