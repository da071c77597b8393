"""GET /api/v1/reports/staff/: the staff report (analytics.reports.staff), with the channel
report's parameters (but group_by: it is always by staff member) and its conventions: money as
decimal strings, rates as numbers in 0..1 or null, `format=csv|xlsx` for the same rows as a
file."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.api import DEFINITIONS, ReportQuerySerializer, ReportRowSerializer
from analytics.api_exports import FormatIsAParameter, report_answer, report_responses
from analytics.reports import StaffReport
from analytics.reports import staff as staff_definitions
from analytics.reports.staff import StaffReportResult
from scrm.api_tenancy import CorpRolePermission


def _rate(help_text: Any) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=12, decimal_places=4, allow_null=True,
                                    coerce_to_string=False, help_text=help_text)  # fmt: skip


class StaffRowSerializer(ReportRowSerializer):
    staff_initiated_adds = serializers.IntegerField(
        help_text=_("adds the staff member initiated (oper_userid is the member's own userid)")
    )
    initiated_share = _rate(_("staff_initiated_adds / adds; null without adds"))
    initiated_alert = serializers.BooleanField(
        help_text=_("initiated_share is above the corp's alert share")
    )
    caps_used = _rate(_("cap used / daily caps, over the period; null without a cap"))
    caps_max_day = _rate(_("the highest single day's use of one live code's cap"))
    avg_reply_minutes = serializers.DecimalField(
        max_digits=12, decimal_places=1, allow_null=True, coerce_to_string=False,
        help_text=_("average first reply in minutes, as WeCom last gave it (not per period)"),
    )  # fmt: skip


class StaffTotalsSerializer(StaffRowSerializer):
    key = None
    name = None


class StaffReportSerializer(serializers.Serializer):
    computed_at = serializers.DateTimeField(
        allow_null=True, help_text=_("the oldest rebuild of the period's days; null: never")
    )
    days_not_computed = serializers.ListField(child=serializers.DateField())
    window = serializers.IntegerField()
    alert_share = serializers.DecimalField(
        max_digits=4, decimal_places=3, coerce_to_string=False,
        help_text=_("the corp's threshold of initiated_share (decision settings)"),
    )  # fmt: skip
    rows = StaffRowSerializer(many=True)
    totals = StaffTotalsSerializer()


def _json(result: StaffReportResult) -> Response:
    return Response(
        StaffReportSerializer(
            {
                "computed_at": result.computed_at,
                "days_not_computed": result.days_not_computed,
                "window": result.params.window,
                "alert_share": result.alert_share,
                "rows": result.rows,
                "totals": result.totals,
            }
        ).data
    )


@extend_schema(
    tags=["reports"],
    parameters=[ReportQuerySerializer],
    responses=report_responses(StaffReportSerializer),
    description=_("Staff report: one row per staff member, with totals.")
    + "\n\n"
    + DEFINITIONS
    + "\n"
    + (staff_definitions.__doc__ or ""),
)
class StaffReportView(APIView):
    # ?format= names the answer (json, csv, xlsx), not a renderer: see analytics.api_exports.
    content_negotiation_class = FormatIsAParameter
    renderer_classes = [JSONRenderer]
    permission_classes = [CorpRolePermission]

    def get(self, request: Request) -> Any:
        query = ReportQuerySerializer(data=request.query_params, context={"request": request})
        query.is_valid(raise_exception=True)
        result = StaffReport(query.params(group_by="staff")).calculate()
        return report_answer(request, result, query.validated_data["format"], lambda: _json(result))
