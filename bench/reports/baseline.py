"""The channel report computed on read from the raw tables: the speed baseline of the product's
rollups, and the cross-check of its figures.

One GROUP BY query per figure family, each with a GROUPING SETS total (so distinct visitors are
counted once in the totals, not summed over channels):

| family | from | figures | | --- | --- | --- | - scans: channels_app_scan x live code: scans,
visitors (distinct device_key); - adds: relation history adds x attribution: adds, adds through
landing codes; - new customers: first sources x the first add's attribution, and the relation
history: new_customers, retained 30 days, pending; - deletions: relation history deletions x the
attribution of the relation's latest add before each: lost, removed; - conversions: first
sources x conversions: consults within 72 h, revenue, orders, buyers, repeat buyers of the
window; - cost: channel costs.

Definitions (the product's): a day is the corp's local day; the period is first..last inclusive.
adds: add events in the period, by their own attribution. new_customers: customers whose first
add (first source) is in the period, credited with channel, code and staff of that add. lost /
removed: deletions by the customer / by the staff member in the period, credited to the channel
of the relation's latest add at or before the deletion. net_adds = adds - lost - removed.
scan_to_add = adds through landing codes / scans. consult_72h_rate: share of new customers with
a consult within 72 hours after their first add. retained_30d_rate: of the new customers first
added at least 30 days before the as-of time (the product's rollups were computed then: their 30
days are over), the share with a live relation with the corp (any staff member) 30 days after
their first add; the others are pending_30d. Window N: revenue = orders minus refunds (refunds
negative whatever sign was sent) whose time is within N days after the customer's first add,
orders, buyers (customers with an order) and repurchase_rate = buyers with 2+ orders / buyers.
cost: each ChannelCost spread evenly over the days of its range, summed over the period's days;
cost_per_new_customer = cost / new_customers; roi = revenue / cost. A rate is None when its
denominator is 0. The first add's own second is inside every window, its edge is not.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from decimal import Decimal
from zoneinfo import ZoneInfo

CENT = Decimal("0.01")

SCANS = """
    SELECT lc.channel_id, GROUPING(lc.channel_id) AS is_total,
           count(*) AS scans, count(DISTINCT s.device_key) AS visitors
    FROM channels_app_scan s
    JOIN channels_app_livecode lc ON lc.id = s.live_code_id
    WHERE s.corp_id = %(corp)s AND s.created_at >= %(start)s AND s.created_at < %(end)s
    GROUP BY GROUPING SETS ((lc.channel_id), ())
"""
ADDS = """
    SELECT a.channel_id, GROUPING(a.channel_id) AS is_total, count(*) AS adds,
           count(*) FILTER (WHERE lc.mode = 'landing') AS landing_adds
    FROM contacts_relationevent e
    JOIN channels_app_attribution a ON a.corp_id = e.corp_id AND a.add_event_id = e.id
    LEFT JOIN channels_app_livecode lc ON lc.id = a.live_code_id
    WHERE e.corp_id = %(corp)s AND e.kind = 'added'
      AND e.occurred_at >= %(start)s AND e.occurred_at < %(end)s
    GROUP BY GROUPING SETS ((a.channel_id), ())
"""
# Live 30 days after the first add: some add of the customer (any relation) at or before that
# moment with no removal of its relation between the two (a removal in the add's own second
# wins, as in follow_relation_project).
NEW_CUSTOMERS = """
    SELECT c.channel_id, GROUPING(c.channel_id) AS is_total, count(*) AS new_customers,
           count(*) FILTER (WHERE c.mature) AS mature,
           count(*) FILTER (WHERE c.mature AND EXISTS (
               SELECT 1 FROM contacts_relationevent ad
               WHERE ad.corp_id = c.corp_id AND ad.external_contact_id = c.external_contact_id
                 AND ad.kind = 'added' AND ad.occurred_at <= c.retained_at
                 AND NOT EXISTS (
                     SELECT 1 FROM contacts_relationevent rm
                     WHERE rm.corp_id = ad.corp_id
                       AND rm.follow_relation_id = ad.follow_relation_id
                       AND rm.kind IN ('deleted_by_customer', 'deleted_by_staff', 'transferred')
                       AND rm.occurred_at >= ad.occurred_at AND rm.occurred_at <= c.retained_at))
           ) AS retained
    FROM (
        SELECT a.channel_id, fs.corp_id, fs.external_contact_id,
               fs.added_at <= %(mature_until)s AS mature,
               fs.added_at + make_interval(secs => %(retention_s)s) AS retained_at
        FROM contacts_firstsource fs
        JOIN channels_app_attribution a
          ON a.corp_id = fs.corp_id AND a.add_event_id = fs.add_event_id
        WHERE fs.corp_id = %(corp)s AND fs.added_at >= %(start)s AND fs.added_at < %(end)s
    ) c
    GROUP BY GROUPING SETS ((c.channel_id), ())
"""
DELETIONS = """
    SELECT latest.channel_id, GROUPING(latest.channel_id) AS is_total,
           count(*) FILTER (WHERE d.kind = 'deleted_by_customer') AS lost,
           count(*) FILTER (WHERE d.kind = 'deleted_by_staff') AS removed
    FROM contacts_relationevent d
    LEFT JOIN LATERAL (
        SELECT a.channel_id
        FROM contacts_relationevent ad
        JOIN channels_app_attribution a ON a.corp_id = ad.corp_id AND a.add_event_id = ad.id
        WHERE ad.corp_id = d.corp_id AND ad.follow_relation_id = d.follow_relation_id
          AND ad.kind = 'added' AND ad.occurred_at <= d.occurred_at
        ORDER BY ad.occurred_at DESC, ad.id DESC
        LIMIT 1
    ) latest ON true
    WHERE d.corp_id = %(corp)s AND d.kind IN ('deleted_by_customer', 'deleted_by_staff')
      AND d.occurred_at >= %(start)s AND d.occurred_at < %(end)s
    GROUP BY GROUPING SETS ((latest.channel_id), ())
"""
CONVERSIONS = """
    WITH cohort AS (
        SELECT fs.external_contact_id, fs.added_at, a.channel_id,
               fs.added_at + make_interval(secs => %(window_s)s) AS window_end,
               fs.added_at + make_interval(hours => 72) AS consult_end
        FROM contacts_firstsource fs
        JOIN channels_app_attribution a
          ON a.corp_id = fs.corp_id AND a.add_event_id = fs.add_event_id
        WHERE fs.corp_id = %(corp)s AND fs.added_at >= %(start)s AND fs.added_at < %(end)s
    ), per_customer AS (
        SELECT c.channel_id,
               bool_or(cv.kind = 'consult' AND cv.occurred_at < c.consult_end) AS consulted,
               sum(CASE cv.kind WHEN 'order' THEN cv.amount WHEN 'refund' THEN -abs(cv.amount)
                   END) FILTER (WHERE cv.occurred_at < c.window_end) AS revenue,
               count(*) FILTER (WHERE cv.kind = 'order' AND cv.occurred_at < c.window_end)
                   AS orders
        FROM cohort c
        JOIN contacts_conversionevent cv
          ON cv.corp_id = %(corp)s AND cv.external_contact_id = c.external_contact_id
         AND cv.occurred_at >= c.added_at
         AND cv.occurred_at < GREATEST(c.window_end, c.consult_end)
        GROUP BY c.channel_id, c.external_contact_id
    )
    SELECT channel_id, GROUPING(channel_id) AS is_total,
           count(*) FILTER (WHERE consulted) AS consulted,
           COALESCE(sum(revenue), 0) AS revenue, COALESCE(sum(orders), 0) AS orders,
           count(*) FILTER (WHERE orders > 0) AS buyers,
           count(*) FILTER (WHERE orders >= 2) AS repeat_buyers
    FROM per_customer
    GROUP BY GROUPING SETS ((channel_id), ())
"""
# A cost's share of the period: its daily amount times the days of its range in the period.
COST = """
    SELECT cc.channel_id, GROUPING(cc.channel_id) AS is_total,
           sum(cc.amount * (LEAST(cc.end_date, %(last)s) - GREATEST(cc.start_date, %(first)s) + 1)
               / (cc.end_date - cc.start_date + 1)) AS cost
    FROM channels_app_channelcost cc
    WHERE cc.corp_id = %(corp)s AND cc.start_date <= %(last)s AND cc.end_date >= %(first)s
    GROUP BY GROUPING SETS ((cc.channel_id), ())
"""
FAMILIES = {
    "scans": SCANS,
    "adds": ADDS,
    "new_customers": NEW_CUSTOMERS,
    "deletions": DELETIONS,
    "conversions": CONVERSIONS,
    "cost": COST,
}
COUNTS = ("scans", "visitors", "adds", "landing_adds", "new_customers", "mature", "retained",
          "lost", "removed", "consulted", "orders", "buyers", "repeat_buyers")  # fmt: skip
TOTAL = "total"


@dataclass
class BaselineReport:
    first: date
    last: date
    window: int
    as_of: datetime
    rows: list[dict] = field(default_factory=list)
    totals: dict = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # per family

    @property
    def queries(self) -> int:
        return len(self.seconds) + 1  # the families and the channels' names


def _day_start(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, clock_time.min, tz).astimezone(UTC)


def channel_report(
    cursor,
    *,
    corp_pk: int,
    first: date,
    last: date,
    window: int = 30,
    as_of: datetime | None = None,
) -> BaselineReport:
    """The channel report of `corp_pk` over the local days first..last, figures per channel
    (key None: adds with no live code) and totals. `cursor` is any DB-API cursor on the
    database (psycopg2's, or Django's connection.cursor())."""
    cursor.execute("SELECT time_zone FROM wecom_corp WHERE id = %s", (corp_pk,))
    tz = ZoneInfo(cursor.fetchone()[0])
    as_of = as_of or datetime.now(tz)
    params = {
        "corp": corp_pk,
        "first": first,
        "last": last,
        "start": _day_start(first, tz),
        "end": _day_start(last + timedelta(days=1), tz),
        # the customer's 30 days are over at the as-of time
        "mature_until": as_of - timedelta(days=30),
        "retention_s": 30 * 86_400,
        "window_s": window * 86_400,
    }
    report = BaselineReport(first=first, last=last, window=window, as_of=as_of)
    figures: dict[object, dict] = {}
    for family, query in FAMILIES.items():
        started = time.perf_counter()
        cursor.execute(query, params)
        columns = [c[0] for c in cursor.description]
        for values in cursor.fetchall():
            record = dict(zip(columns, values, strict=True))
            key = TOTAL if record.pop("is_total") else record.pop("channel_id")
            record.pop("channel_id", None)
            figures.setdefault(key, {}).update(record)
        report.seconds[family] = time.perf_counter() - started
    cursor.execute("SELECT id, name FROM channels_app_channel WHERE corp_id = %s", (corp_pk,))
    names = dict(cursor.fetchall())
    totals = figures.pop(TOTAL, {})
    for key in sorted(figures, key=lambda k: (k is None, k)):
        report.rows.append(
            {"key": key, "name": names.get(key, "(no live code)"), **_derived(figures[key])}
        )
    report.totals = {"key": None, "name": TOTAL, **_derived(totals)}
    return report


def _ratio(numerator, denominator) -> float | None:
    return float(numerator) / float(denominator) if denominator else None


def _derived(raw: dict) -> dict:
    """The report's figures from a family's raw counts and sums."""
    f = {name: int(raw.get(name) or 0) for name in COUNTS}
    revenue = Decimal(raw.get("revenue") or 0).quantize(CENT)
    cost = Decimal(raw.get("cost") or 0).quantize(CENT)
    return {
        "scans": f["scans"],
        "visitors": f["visitors"],
        "adds": f["adds"],
        "new_customers": f["new_customers"],
        "lost": f["lost"],
        "removed": f["removed"],
        "net_adds": f["adds"] - f["lost"] - f["removed"],
        "scan_to_add": _ratio(f["landing_adds"], f["scans"]),
        "consult_72h_rate": _ratio(f["consulted"], f["new_customers"]),
        "retained_30d_rate": _ratio(f["retained"], f["mature"]),
        "pending_30d": f["new_customers"] - f["mature"],
        "revenue": revenue,
        "orders": f["orders"],
        "buyers": f["buyers"],
        "repurchase_rate": _ratio(f["repeat_buyers"], f["buyers"]),
        "cost": cost,
        "cost_per_new_customer": (cost / f["new_customers"]).quantize(CENT)
        if f["new_customers"]
        else None,
        "roi": _ratio(revenue, cost),
    }
