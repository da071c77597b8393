"""The figures' definitions as the report pages print them ("指标说明"): the items of
analytics/reports/base.py's docstring, word for word, as translatable strings (gettext cannot
read a docstring). tests/analytics/test_report_pages.py fails when the two part ways: change
the docstring, then these and their translations."""

from django.utils.translation import gettext_lazy as _

DEFINITIONS = (
    _("Day: the corp's local day. Period: from..to inclusive."),
    _("scans: scans of landing codes in the period; visitors: distinct devices among them."),
    _(
        "adds: add events in the period (re-adds included), each credited to its own "
        "attribution (any touch, the default) or to the customer's first touch (touch=first); "
        "new_customers: customers whose first add falls in the period (first touch decides the "
        "channel, live code and staff)."
    ),
    _(
        "lost: deletions by the customer; removed: removals by the staff member (each credited "
        "to the add it ended); net_adds = adds - lost - removed."
    ),
    _(
        "scan_to_add: adds through landing codes / scans (null without scans: native codes "
        "have none)."
    ),
    _(
        "consult_72h_rate: share of new customers with a consult within 72 hours of their "
        "first add. A window starts at the first add (included) and ends N days or 72 hours "
        "later (excluded)."
    ),
    _(
        "retained_30d_rate: share of the new customers first added at least 30 days before the "
        "rollup was computed who still had a live relation with the corp 30 days after that "
        "add; pending_30d: the new customers whose 30 days are not over (not counted as lost)."
    ),
    _(
        "window N in {7, 15, 30}: revenue = orders minus refunds dated within N days after the "
        "first add, credited to the first touch; orders, buyers (customers with an order), "
        "repurchase_rate = buyers with 2 or more orders / buyers."
    ),
    _(
        "cost: the channels' spend spread evenly over the days of each cost's range, summed "
        "over the period (live codes and staff have no cost of their own: null); "
        "cost_per_new_customer = cost / new_customers; roi = revenue / cost (null when the "
        "cost is 0 or null)."
    ),
    _(
        "Rates are decimals in 0..1, or null when the denominator is 0; money is Decimal in "
        "the corp's currency."
    ),
)

# The staff report's own figures: the items of analytics/reports/staff.py's docstring.
STAFF_DEFINITIONS = (
    _(
        "staff_initiated_adds: adds the staff member initiated (WeCom's oper_userid is the "
        "member's own userid); an add the customer initiated, one shared by a colleague or "
        "assigned by an admin (add_way 201, 202), and one whose initiator WeCom has not told "
        "yet do not count. initiated_share = staff_initiated_adds / adds; initiated_alert: the "
        "share is above the corp's threshold (decision settings, default 0.10)."
    ),
    _(
        "caps_used: over the period, what the member's daily caps were checked against "
        "(visits assigned on landing codes, adds on native codes) / the sum of those caps, "
        "over the days and codes where the member had a cap and a counter (a visit or an add "
        "that day); caps as they were when the day was rebuilt. caps_max_day: the highest "
        "single day's use of one code's cap. Null without a cap."
    ),
    _(
        "avg_reply_minutes: the member's average first reply in minutes, as WeCom's behaviour "
        "data (get_user_behavior_data) last gave it: recent, not per period; the totals row "
        "has none."
    ),
)


# The cohort report's definitions (analytics/reports/cohorts.py's docstring, word for word).
COHORT_DEFINITIONS = (
    _(
        "Rows: first-add cohorts, customers whose first add falls on a corp-local day of "
        "from..to (the channel report's new_customers), bucketed by the local day, the "
        "ISO week (Monday to Sunday) or the calendar month of that add; a bucket at "
        "either end of the period holds only its days inside the period. size: the "
        "cohort's customers."
    ),
    _(
        "Columns: ages, counted from each customer's own first add in periods of 1 day "
        "(day), 7 days (week) or 30 days (month); column k covers the first k+1 periods: "
        "from the first add (included) to (k+1) periods later (excluded), as the channel "
        "report's windows do (column N-1 by day is window N; column 0 by week is the "
        "7-day window, by month the 30-day one)."
    ),
    _(
        "retention: share of the cohort still a customer at the end of column k: a live "
        "relation with the corp at that moment; a customer is no longer one from the "
        "moment its last live relation ended, if it has none now (one who left and came "
        "back counts in between)."
    ),
    _(
        "revenue: cumulative revenue per customer (LTV): orders minus refunds (refunds "
        "negative whatever their sign) dated within column k's span, over the cohort's "
        "size."
    ),
    _("buyers: cumulative share of the cohort with an order within column k's span."),
    _(
        "A cell is null (immature) while some customer of the cohort has not reached the "
        "end of its span at the as-of time; the columns run as far as the period's first "
        "day allows, up to 120 days, 104 weeks or 36 months."
    ),
)
