"""Four weeks of the demo corp's past, planned: who added which live code when, who deleted the
staff member or was removed, who consulted, ordered and was refunded, and what each channel
cost. Pure and deterministic (one seeded random.Random), from the day the history ends, the
corp's time zone and the codes' staff; scrm.demo_history writes it through the services.

The channels differ the way operators see them differ: a Douyin feed ad brings many cheap
customers of whom four in ten delete within days and few buy; a Moments ad's customers start
ordering only in their second week (a 7-day ROI undervalues it, a 30-day one does not); a
Xiaohongshu note's tracked link converts a little over half its scans into customers who consult
and buy well; a store's cashier code brings few customers who mostly buy. 20-40% consult
within 72 hours; some orders are refunded; a few orders reach the business's system days late
(`late`: imported after the rest, dated inside their window). Weekends and hours differ by
channel, and one day the Douyin ad's adds spike.
"""

from __future__ import annotations

import random
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal

from scrm.wecom.sandbox.simulate import customer_name

HISTORY_DAYS = 28  # the local days before the anchor day; the anchor day itself is live
SEED = 12  # of the seeds tried, one whose 7 weekday alignments all show refunds and removals
# Seeded customers' external_userid: "wm" as WeCom's, then a mark the sandbox's random ids
# (lowercase base32, no 0) never contain, even compared case-insensitively (SQLite's LIKE), so
# a later run finds the history it wrote.
PREFIX = "wm0Demo"
ID_ALPHABET = string.ascii_letters + string.digits
SLOTS_PER_STAFF = 3  # channels_app.services.publishing.SLOTS_PER_STAFF
SLOT_LEASE = timedelta(minutes=30)  # channels_app.services.publishing.SLOT_LEASE
LATE_ORDER_SHARE = 0.08
LATE_BY = timedelta(days=2)  # a late order is at least this old when it arrives
LATE_NOTE = "补录：订单系统晚到的订单"
REPEAT_ORDER_SHARE = 0.15
SECOND_TOUCH_SHARE = 0.05  # kept customers who later add a second member by another code
LATER_CONSULT_SHARE = 0.04  # consult after the first 72 hours

# Weights of the 24 local hours.
MOMENTS_HOURS = (1, 0, 0, 0, 0, 0, 1, 2, 4, 4, 3, 4, 7, 6, 4, 3, 3, 4, 6, 9, 10, 9, 6, 3)
FEED_HOURS = (4, 3, 1, 1, 0, 0, 1, 1, 2, 2, 2, 3, 5, 4, 3, 3, 3, 4, 6, 8, 10, 11, 10, 7)
NOTE_HOURS = (1, 1, 0, 0, 0, 0, 0, 1, 2, 3, 3, 4, 5, 4, 3, 3, 3, 4, 5, 7, 9, 9, 7, 3)
STORE_HOURS = (0,) * 10 + (3, 5, 7, 5, 4, 4, 5, 7, 8, 7, 5, 2) + (0, 0)  # open 10:00-22:00


@dataclass(frozen=True)
class ChannelProfile:
    code: str
    per_day: float  # adds a weekday (scans for a landing code)
    weekend: float  # Saturday and Sunday multiply per_day by this
    hours: tuple[int, ...]
    lost: float  # share who delete the staff member, mostly within days (流失)
    removed: float  # share the staff member removes (spam, competitors)
    consult: float  # share consulting within 72 hours
    buy: float  # share of the customers kept who order
    first_order_days: tuple[float, float]
    prices: tuple[int, ...]
    refund: float  # share of orders refunded
    scan_to_add: float | None = None  # landing codes: share of scans that add
    spike: tuple[int, float] | None = None  # (day index, multiplier)


PROFILES = (
    ChannelProfile("pyq_0012", 7, 1.2, MOMENTS_HOURS, lost=0.30, removed=0.02, consult=0.25,
                   buy=0.20, first_order_days=(6, 20), prices=(299, 399, 499), refund=0.15),
    ChannelProfile("xhs_618", 9, 1.4, NOTE_HOURS, lost=0.12, removed=0.01, consult=0.38,
                   buy=0.18, first_order_days=(1, 10), prices=(299, 399, 599), refund=0.12,
                   scan_to_add=0.55),
    ChannelProfile("dy_ad_07", 9, 1.3, FEED_HOURS, lost=0.42, removed=0.04, consult=0.24,
                   buy=0.07, first_order_days=(0, 5), prices=(59, 99, 129), refund=0.30,
                   spike=(20, 2.5)),
    ChannelProfile("store_nj01", 3, 1.8, STORE_HOURS, lost=0.05, removed=0.01, consult=0.30,
                   buy=0.40, first_order_days=(0, 3), prices=(199, 399, 699, 999), refund=0.10),
)  # fmt: skip

# (channel, first day, last day, amount, note); days relative to the anchor day (0 = the
# first live day: the ads' budget for the week that starts then is booked already).
COSTS = (
    ("pyq_0012", -28, -22, 3200, "朋友圈广告 第1周"),
    ("pyq_0012", -21, -15, 3600, "朋友圈广告 第2周"),
    ("pyq_0012", -14, -8, 2800, "朋友圈广告 第3周"),
    ("pyq_0012", -7, -1, 3000, "朋友圈广告 第4周"),
    ("pyq_0012", 0, 6, 3000, "朋友圈广告 本周预算"),
    ("dy_ad_07", -28, -22, 2600, "抖音信息流 第1周"),
    ("dy_ad_07", -21, -15, 3000, "抖音信息流 第2周"),
    ("dy_ad_07", -14, -8, 3800, "抖音信息流 第3周（加投）"),
    ("dy_ad_07", -7, -1, 3200, "抖音信息流 第4周"),
    ("dy_ad_07", 0, 6, 3000, "抖音信息流 本周预算"),
    ("xhs_618", -28, -1, 4800, "小红书笔记投放（4 篇）"),
    ("xhs_618", -14, -8, 1500, "薯条加热"),
    ("store_nj01", -28, -1, 3000, "收银台立牌印刷与收银员激励"),
)


@dataclass(frozen=True)
class Touch:
    """An add: the customer adds `userid` through the channel's code (a landing code: the slot
    its scan leased, the index among the member's slots)."""

    code: str
    userid: str
    at: datetime
    slot: int | None = None


@dataclass(frozen=True)
class Ending:
    external_userid: str
    userid: str
    kind: str  # deleted_by_customer or deleted_by_staff (RelationEvent.Kind values)
    at: datetime


@dataclass(frozen=True)
class PlannedScan:
    visit_id: str
    code: str
    at: datetime
    userid: str
    slot: int
    utm_content: str
    device: str
    in_wechat: bool
    referrer_url: str


@dataclass(frozen=True)
class PlannedConversion:
    external_id: str
    kind: str  # consult, order or refund (ConversionEvent.Kind values)
    occurred_at: datetime
    external_userid: str
    unionid: str
    amount: Decimal | None = None
    note: str = ""
    late: bool = False


@dataclass(frozen=True)
class PlannedCost:
    code: str
    start_date: date
    end_date: date
    amount: Decimal
    note: str


@dataclass
class PlannedCustomer:
    external_userid: str
    name: str
    gender: int
    unionid: str
    touches: list[Touch] = field(default_factory=list)


@dataclass
class Plan:
    """Everything in it happens before `cutoff`, the start of the anchor day: that day is left
    to the live feed, and a plan made again on a later day holds exactly the same rows."""

    anchor: date
    cutoff: datetime
    customers: list[PlannedCustomer] = field(default_factory=list)
    endings: list[Ending] = field(default_factory=list)
    scans: list[PlannedScan] = field(default_factory=list)
    conversions: list[PlannedConversion] = field(default_factory=list)
    costs: list[PlannedCost] = field(default_factory=list)


def _local(day: date, hour: int, rng: random.Random, tz: tzinfo) -> datetime:
    moment = datetime.combine(day, time(hour, rng.randrange(60), rng.randrange(60)), tzinfo=tz)
    return moment.astimezone(UTC)


def _count(rng: random.Random, mean: float) -> int:
    return max(0, round(rng.gauss(mean, mean**0.5)))


class _Planner:
    def __init__(self, anchor: date, tz: tzinfo, pools: Mapping[str, Sequence[str]],
                 volume: float) -> None:  # fmt: skip
        self.anchor, self.tz, self.volume = anchor, tz, volume
        self.pools = {code: list(userids) for code, userids in pools.items() if userids}
        self.rng = random.Random(SEED)
        self.cutoff = datetime.combine(anchor, time.min, tzinfo=tz).astimezone(UTC)
        self.plan = Plan(anchor=anchor, cutoff=self.cutoff)
        self.leases: dict[tuple[str, int], datetime] = {}
        self.first_orders: set[str] = set()
        self.refunded: set[str] = set()  # orders with a refund: never late
        self.serial = 0

    def next_id(self, kind: str) -> str:
        self.serial += 1
        return f"demo-{self.anchor:%Y%m%d}-{kind}{self.serial:05d}"

    def run(self) -> Plan:
        profiles = [p for p in PROFILES if p.code in self.pools]
        for index in range(HISTORY_DAYS):
            day = self.anchor - timedelta(days=HISTORY_DAYS - index)
            for profile in profiles:
                mean = profile.per_day * self.volume
                mean *= profile.weekend if day.weekday() >= 5 else 1.0
                if profile.spike and profile.spike[0] == index:
                    mean *= profile.spike[1]
                # At least one add on the first day: later runs find the history by it.
                count = max(_count(self.rng, mean), int(index == 0 and profile is profiles[0]))
                if profile.scan_to_add is None:
                    for at in self._times(day, profile, count):
                        self._customer(profile, Touch(profile.code, self._staff(profile), at))
                else:
                    self._landing_day(day, profile, count)
        self.plan.customers.sort(key=lambda c: c.touches[0].at)
        self._late_orders()
        self.plan.costs = [
            PlannedCost(code, self.anchor + timedelta(days=first),
                        self.anchor + timedelta(days=last), Decimal(amount), note)
            for code, first, last, amount, note in COSTS
            if code in self.pools
        ]  # fmt: skip
        return self.plan

    def _times(self, day: date, profile: ChannelProfile, count: int) -> list[datetime]:
        hours = self.rng.choices(range(24), weights=profile.hours, k=count)
        return sorted(_local(day, hour, self.rng, self.tz) for hour in hours)

    def _staff(self, profile: ChannelProfile, but: str = "") -> str:
        return self.rng.choice([u for u in self.pools[profile.code] if u != but] or [""])

    def _landing_day(self, day: date, profile: ChannelProfile, scans: int) -> None:
        """Visits of the tracked link: each is given the member with the fewest scans that
        day and a free slot of theirs (leased 30 minutes); a share of visitors then add."""
        load = dict.fromkeys(self.pools[profile.code], 0)
        for at in self._times(day, profile, scans):
            userid = min(load, key=lambda u: (load[u], self.rng.random()))
            load[userid] += 1
            slots = [(self.leases.get((userid, s), self.cutoff - timedelta(days=99)), s)
                     for s in range(SLOTS_PER_STAFF)]  # fmt: skip
            free = [s for until, s in slots if until <= at]
            slot = free[0] if free else min(slots)[1]
            self.leases[(userid, slot)] = at + SLOT_LEASE
            device = self.rng.choices(["mobile", "desktop", "tablet"], weights=[85, 10, 5])[0]
            self.plan.scans.append(PlannedScan(
                visit_id=self.next_id("s"), code=profile.code, at=at, userid=userid, slot=slot,
                utm_content=self.rng.choice(["note_a", "note_b", "note_c"]), device=device,
                in_wechat=device == "mobile" and self.rng.random() < 0.35,
                referrer_url="https://www.xiaohongshu.com/" if self.rng.random() < 0.6 else "",
            ))  # fmt: skip
            added = at + timedelta(seconds=self.rng.randint(20, 240))
            if self.rng.random() < (profile.scan_to_add or 0) and added < self.cutoff:
                self._customer(profile, Touch(profile.code, userid, added, slot))

    def _customer(self, profile: ChannelProfile, touch: Touch) -> None:
        rng = self.rng
        customer = PlannedCustomer(
            external_userid=PREFIX + "".join(rng.choices(ID_ALPHABET, k=24)),
            name=customer_name(rng),
            gender=rng.choice([0, 1, 2]),
            unionid="o" + "".join(rng.choices(ID_ALPHABET, k=27)),
            touches=[touch],
        )
        self.plan.customers.append(customer)
        fate = rng.random()
        if fate < profile.lost:
            ended = touch.at + max(timedelta(minutes=10), timedelta(days=rng.expovariate(1 / 1.5)))
            self._ending(customer, touch, "deleted_by_customer", ended)
            self._consult(customer, profile, touch.at, ended, share=profile.consult * 0.6)
        elif fate < profile.lost + profile.removed:
            ended = touch.at + timedelta(days=rng.uniform(0.5, 10))
            self._ending(customer, touch, "deleted_by_staff", ended)
            self._consult(customer, profile, touch.at, ended, share=profile.consult * 0.3)
        else:
            self._consult(customer, profile, touch.at, self.cutoff, share=profile.consult)
            if rng.random() < profile.buy:
                self._orders(customer, profile, touch.at)
            if rng.random() < SECOND_TOUCH_SHARE:
                self._second_touch(customer, touch)

    def _ending(self, customer: PlannedCustomer, touch: Touch, kind: str, at: datetime) -> None:
        at = at.replace(microsecond=0)  # WeCom's times are whole seconds
        if at < self.cutoff:
            self.plan.endings.append(Ending(customer.external_userid, touch.userid, kind, at))

    def _conversion(self, customer: PlannedCustomer, kind: str, at: datetime,
                    amount: Decimal | None = None) -> PlannedConversion | None:  # fmt: skip
        at = at.replace(microsecond=0)
        if at >= self.cutoff:
            return None
        # A shop in a mini program knows the buyer by unionid only, matched once the
        # customer's details are known.
        by_unionid = kind != "consult" and self.rng.random() < 0.15
        conversion = PlannedConversion(
            external_id=self.next_id(kind[0]), kind=kind, occurred_at=at,
            external_userid="" if by_unionid else customer.external_userid,
            unionid=customer.unionid if by_unionid else "", amount=amount,
        )  # fmt: skip
        self.plan.conversions.append(conversion)
        return conversion

    def _consult(self, customer: PlannedCustomer, profile: ChannelProfile, added: datetime,
                 until: datetime, *, share: float) -> None:  # fmt: skip
        rng = self.rng
        if rng.random() < share:
            # Most ask within two hours of adding, some the next day, a few on the third.
            low, high = rng.choices([(2, 120), (120, 24 * 60), (24 * 60, 72 * 60)],
                                    weights=[6, 3, 1])[0]  # fmt: skip
            minutes = rng.uniform(low, high)
        elif rng.random() < LATER_CONSULT_SHARE:
            minutes = rng.uniform(4 * 24 * 60, 10 * 24 * 60)
        else:
            return
        at = added + timedelta(minutes=minutes)
        if at < until:
            self._conversion(customer, "consult", at)

    def _orders(self, customer: PlannedCustomer, profile: ChannelProfile, added: datetime) -> None:
        rng = self.rng
        at = self._order_time(profile, added, rng.uniform(*profile.first_order_days))
        orders = [at]
        if rng.random() < REPEAT_ORDER_SHARE:
            orders.append(self._order_time(profile, at, rng.uniform(5, 20)))
        for number, ordered in enumerate(orders):
            price = Decimal(rng.choice(profile.prices)) * rng.choice([1, 1, 1, 2])
            order = self._conversion(customer, "order", ordered, amount=price)
            if order is not None and number == 0:
                self.first_orders.add(order.external_id)  # within 20 days of the add
            if order is not None and rng.random() < profile.refund:
                partial = rng.random() < 0.25
                part = (price * Decimal("0.4")).quantize(Decimal(1)) if partial else price
                refunded = ordered + timedelta(days=rng.uniform(1, 7))
                if self._conversion(customer, "refund", refunded, amount=-part):
                    self.refunded.add(order.external_id)

    def _late_orders(self) -> None:
        """A few first orders (at least one), inside their customer's 30-day window, reach
        the business's system days after they were placed: marked late, imported after the
        rest."""
        conversions = self.plan.conversions
        candidates = [
            index for index, c in enumerate(conversions)
            if c.external_id in self.first_orders and c.external_id not in self.refunded
            and c.occurred_at < self.cutoff - LATE_BY
        ]  # fmt: skip
        count = min(len(candidates), max(1, round(len(candidates) * LATE_ORDER_SHARE)))
        for index in self.rng.sample(candidates, count):
            conversions[index] = replace(conversions[index], late=True, note=LATE_NOTE)

    def _order_time(self, profile: ChannelProfile, after: datetime, days_later: float) -> datetime:
        day = (after + timedelta(days=days_later)).astimezone(self.tz).date()
        at = _local(day, self.rng.choices(range(24), weights=profile.hours)[0], self.rng, self.tz)
        return (
            at
            if at > after + timedelta(minutes=10)
            else after + timedelta(minutes=self.rng.uniform(10, 180))
        )

    def _second_touch(self, customer: PlannedCustomer, first: Touch) -> None:
        """Later the customer adds another member through another channel's native code (a
        Xiaohongshu reader visits the store): a further relation, never a new first source."""
        choices = [p for p in PROFILES if p.code in self.pools and p.code != first.code
                   and p.scan_to_add is None]  # fmt: skip
        if not choices:
            return
        profile = self.rng.choice(choices)
        userid = self._staff(profile, but=first.userid)
        day = (first.at + timedelta(days=self.rng.uniform(1, 14))).astimezone(self.tz).date()
        at = _local(day, self.rng.choices(range(24), weights=profile.hours)[0], self.rng, self.tz)
        if userid and first.at < at < self.cutoff:
            customer.touches.append(Touch(profile.code, userid, at))


def plan_history(*, anchor: date, tz: tzinfo, pools: Mapping[str, Sequence[str]],
                 volume: float = 1.0) -> Plan:  # fmt: skip
    """The history of the HISTORY_DAYS local days before `anchor`, for the channels in
    `pools` (channel code -> the userids its live code hands customers to). The same
    arguments give the same plan."""
    return _Planner(anchor, tz, pools, volume).run()
