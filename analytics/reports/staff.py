"""The staff report: one row per staff member with the channel report's figures (adds, lost,
removed and net credited to the staff member of each add, or of the customer's first touch
with touch=first; new customers, consults and revenue to the first touch's staff member),
and the staff member's own figures:

- staff_initiated_adds: adds the staff member initiated (WeCom's oper_userid is the member's
  own userid); an add the customer initiated, one shared by a colleague or assigned by an
  admin (add_way 201, 202), and one whose initiator WeCom has not told yet do not count.
  initiated_share = staff_initiated_adds / adds; initiated_alert: the share is above the
  corp's threshold (decision settings, default 0.10).
- caps_used: over the period, what the member's daily caps were checked against (visits
  assigned on landing codes, adds on native codes) / the sum of those caps, over the days and
  codes where the member had a cap and a counter (a visit or an add that day); caps as they
  were when the day was rebuilt. caps_max_day: the highest single day's use of one code's
  cap. Null without a cap.
- avg_reply_minutes: the member's average first reply in minutes, as WeCom's behaviour data
  (get_user_behavior_data) last gave it: recent, not per period; the totals row has none.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from django.db.models import ExpressionWrapper, F, FloatField, Max, Sum
from django.db.models.functions import Cast
from django.utils.translation import gettext_lazy as _

from analytics.models import DailyCapUse, decision_settings_for
from analytics.reports.base import RATE, ReportParams, ReportResult, derive, ratio
from analytics.reports.channels import ChannelReport
from contacts.models import Staff

# (name, label, kind) as base.FIGURES; "flag" is a yes/no, "minutes" a number of minutes.
STAFF_FIGURES: tuple[tuple[str, Any, str], ...] = (
    ("staff_initiated_adds", _("adds initiated by staff"), "count"),
    ("initiated_share", _("share initiated by staff"), "rate"),
    ("initiated_alert", _("above the alert share"), "flag"),
    ("caps_used", _("caps used"), "rate"),
    ("caps_max_day", _("cap used, highest day"), "rate"),
    ("avg_reply_minutes", _("avg. first reply (min)"), "minutes"),
)
# What the staff page shows of each member, in this order (the API and the exports give all).
PAGE_FIGURES = (
    "adds", "new_customers", "lost", "removed", "net_adds", "staff_initiated_adds",
    "initiated_share", "caps_used", "caps_max_day", "avg_reply_minutes", "consult_72h_rate",
    "revenue",
)  # fmt: skip
MINUTE = Decimal("0.1")
CAP_SUMS = {
    "cap_used": Sum("used"),
    "cap": Sum("cap"),
    "cap_max_day": Max(
        ExpressionWrapper(Cast("used", FloatField()) / F("cap"), output_field=FloatField())
    ),
}


@dataclass(frozen=True)
class StaffReportResult(ReportResult):
    alert_share: Decimal = Decimal("0.100")  # the corp's threshold of initiated_share


class StaffReport(ChannelReport):
    """Rows per staff member (whatever params.group_by says), with STAFF_FIGURES."""

    def __init__(self, params: ReportParams) -> None:
        super().__init__(replace(params, group_by="staff"))
        self._reply: dict[int, float | None] = {}

    def _sums(self, *, grouped: bool) -> dict[Any, dict[str, Any]]:
        sums = super()._sums(grouped=grouped)
        if grouped:
            caps = self._grouped(DailyCapUse, "staff_id", **CAP_SUMS)
        else:
            caps = {None: self._aggregate(DailyCapUse, **CAP_SUMS)}
        for key, figures in caps.items():
            if figures["cap"]:  # a member with caps and no adds still gets a row
                sums[key].update(figures)
        return sums

    def _derive(self, figures: dict[str, Any]) -> dict[str, Any]:
        initiated = figures.get("staff_initiated_adds", 0)
        max_day = figures.get("cap_max_day")
        return {
            **derive(figures),
            "staff_initiated_adds": initiated,
            "initiated_share": ratio(initiated, figures["adds"]),
            "caps_used": ratio(figures.get("cap_used"), figures.get("cap")),
            "caps_max_day": None if max_day is None else Decimal(max_day).quantize(RATE),
        }

    def _names(self, keys: list[Any]) -> Any:
        # The names' one query reads the reply times too.
        ids = [key for key in keys if key is not None]
        rows = Staff.objects.filter(corp=self.params.corp, pk__in=ids).values_list(
            "pk", "name", "userid", "avg_reply_minutes"
        )
        found = {}
        for pk, name, userid, reply in rows:
            found[pk] = name or userid
            self._reply[pk] = reply
        unknown = _("(unknown)")
        return lambda key: found.get(key, str(unknown))

    def calculate(self) -> StaffReportResult:
        result = super().calculate()
        alert_share = decision_settings_for(self.params.corp).staff_initiated_alert_share
        for row in [*result.rows, result.totals]:
            share = row["initiated_share"]
            row["initiated_alert"] = share is not None and share > alert_share
            reply = self._reply.get(row.get("key"))
            row["avg_reply_minutes"] = None if reply is None else Decimal(reply).quantize(MINUTE)
        return StaffReportResult(
            result.params, result.rows, result.totals, result.computed_at,
            result.days_not_computed, alert_share=alert_share,
        )  # fmt: skip
