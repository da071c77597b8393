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
