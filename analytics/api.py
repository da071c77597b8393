"""The report API (/api/v1/reports/): the same report classes the pages use, as JSON. Thin: a
query serializer validates the parameters, the report computes, a serializer renders money as
decimal strings and rates as numbers in 0..1 (or null)."""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics import budget
from analytics.api_exports import (
    ANSWER_FORMATS,
    FORMAT_HELP,
    FormatIsAParameter,
    report_answer,
    report_responses,
)
from analytics.budget import ADVICE_LABELS, budget_advice
from analytics.models import WINDOWS, Touch
from analytics.reports import ChannelReport, DailyReport, ReportParams
from analytics.reports import base as definitions
from analytics.reports.base import GROUPS, ReportError, ReportResult
from analytics.selectors import DrillDownError, drill_down_rows
from channels_app.models import Channel
from scrm.api_filters import StrictQuerySerializer
from scrm.api_tenancy import CorpField, CorpRolePermission
from scrm.wecom import tenancy

DEFINITIONS = definitions.__doc__ or ""
BUDGET_DOC = budget.__doc__ or ""


class ReportQuerySerializer(StrictQuerySerializer):
    # Only the corps the user may read: another corp is "unknown", as if it did not exist.
    corp = CorpField(action=tenancy.READ, help_text=_("the corp's WeCom corp ID"))
    window = serializers.ChoiceField(
        choices=WINDOWS, default=30, help_text=_("days after the first add that count")
    )
    channel_type = serializers.ChoiceField(choices=Channel.Type.choices, required=False)
    channel_group = serializers.CharField(max_length=64, required=False, default="")
    touch = serializers.ChoiceField(
        choices=Touch.choices,
        default=Touch.ANY,
        help_text=_("credit adds, deletions and removals to their own add or the first touch"),
    )
    channel = serializers.IntegerField(
        min_value=1, required=False, help_text=_("drill-down: only this channel (its id)")
    )
    live_code = serializers.IntegerField(
        min_value=1, required=False, help_text=_("drill-down: only this live code (its id)")
    )
    format = serializers.ChoiceField(choices=ANSWER_FORMATS, default="json", help_text=FORMAT_HELP)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        try:
            drill_down_rows(corp=attrs["corp"], channel_id=attrs.get("channel"),
                            live_code_id=attrs.get("live_code"))  # fmt: skip
        except DrillDownError as exc:
            raise ValidationError({exc.field: str(exc)}) from exc
        return attrs

    def get_fields(self) -> dict[str, serializers.Field]:
        # `from` is a Python keyword, so these two cannot be declared as class attributes.
        return {
            **super().get_fields(),
            "from": serializers.DateField(help_text=_("first local day of the period")),
            "to": serializers.DateField(help_text=_("last local day of the period, included")),
        }

    def params(self, **extra: Any) -> ReportParams:
        values: dict[str, Any] = dict(self.validated_data)
        values["first"], values["last"] = values.pop("from"), values.pop("to")
        values.pop("format", None)
        try:
            params = ReportParams(**values, **extra)
            params.validate()
        except ReportError as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        return params


class ChannelReportQuerySerializer(ReportQuerySerializer):
    group_by = serializers.ChoiceField(choices=GROUPS, default="channel")


class ReportRowSerializer(serializers.Serializer):
    key = serializers.JSONField(help_text=_("the group's id (channel type, or day); null: none"))
    name = serializers.CharField()
    scans = serializers.IntegerField()
    visitors = serializers.IntegerField()
    adds = serializers.IntegerField()
    new_customers = serializers.IntegerField()
    lost = serializers.IntegerField()
    removed = serializers.IntegerField()
    net_adds = serializers.IntegerField()
    scan_to_add = serializers.DecimalField(max_digits=12, decimal_places=4, allow_null=True,
                                           coerce_to_string=False)  # fmt: skip
    consult_72h_rate = serializers.DecimalField(max_digits=12, decimal_places=4, allow_null=True,
                                                coerce_to_string=False)  # fmt: skip
    retained_30d_rate = serializers.DecimalField(max_digits=12, decimal_places=4, allow_null=True,
                                                 coerce_to_string=False)  # fmt: skip
    pending_30d = serializers.IntegerField()
    revenue = serializers.DecimalField(max_digits=18, decimal_places=2)
    orders = serializers.IntegerField()
    buyers = serializers.IntegerField()
    repurchase_rate = serializers.DecimalField(max_digits=12, decimal_places=4, allow_null=True,
                                               coerce_to_string=False)  # fmt: skip
    cost = serializers.DecimalField(max_digits=18, decimal_places=2, allow_null=True)
    cost_per_new_customer = serializers.DecimalField(max_digits=18, decimal_places=2,
                                                     allow_null=True)  # fmt: skip
    roi = serializers.DecimalField(max_digits=12, decimal_places=4, allow_null=True,
                                   coerce_to_string=False)  # fmt: skip

    def to_representation(self, instance: dict[str, Any]) -> dict[str, Any]:
        data = super().to_representation(instance)
        if isinstance(instance.get("key"), date):
            data["key"] = instance["key"].isoformat()
        return data


class BudgetAdviceSerializer(serializers.Serializer):
    median_reply_minutes = serializers.DecimalField(
        max_digits=10, decimal_places=1, allow_null=True, coerce_to_string=False,
        help_text=_("median first-reply time of the staff of the channel's new customers"),
    )  # fmt: skip
    advice = serializers.ChoiceField(
        choices=list(ADVICE_LABELS.items()), allow_null=True,
        help_text=_("reduce, increase or keep the budget; null without a reply time"),
    )  # fmt: skip
    current_share = serializers.DecimalField(max_digits=12, decimal_places=4, allow_null=True,
                                             coerce_to_string=False)  # fmt: skip
    suggested_share = serializers.DecimalField(max_digits=12, decimal_places=4, allow_null=True,
                                               coerce_to_string=False)  # fmt: skip


class ChannelReportRowSerializer(ReportRowSerializer):
    budget_advice = BudgetAdviceSerializer(
        allow_null=True, required=False, default=None,
        help_text=_("group_by=channel only (null otherwise): never applied automatically"),
    )  # fmt: skip


class ReportTotalsSerializer(ReportRowSerializer):
    key = None
    name = None


class ReportSerializer(serializers.Serializer):
    computed_at = serializers.DateTimeField(
        allow_null=True, help_text=_("the oldest rebuild of the period's days; null: never")
    )
    days_not_computed = serializers.ListField(child=serializers.DateField())
    window = serializers.IntegerField()
    rows = ReportRowSerializer(many=True)
    totals = ReportTotalsSerializer()


class ChannelReportSerializer(ReportSerializer):
    rows = ChannelReportRowSerializer(many=True)


def _answer(
    request: Request, result: ReportResult, fmt: str, serializer: type = ReportSerializer
) -> Any:
    return report_answer(request, result, fmt, lambda: _json(result, serializer))


def _json(result: ReportResult, serializer: type) -> Response:
    return Response(
        serializer(
            {
                "computed_at": result.computed_at,
                "days_not_computed": result.days_not_computed,
                "window": result.params.window,
                "rows": result.rows,
                "totals": result.totals,
            }
        ).data
    )


@extend_schema(
    tags=["reports"],
    parameters=[ChannelReportQuerySerializer],
    responses=report_responses(ChannelReportSerializer),
    description=_(
        "Channel report: one row per channel, live code, staff member or channel type "
        "(group_by), with totals."
    )
    + "\n\n"
    + DEFINITIONS
    + "\n\n"
    + BUDGET_DOC,
)
class ChannelReportView(APIView):
    # ?format= names the answer (json, csv, xlsx), not a renderer: see analytics.api_exports.
    content_negotiation_class = FormatIsAParameter
    renderer_classes = [JSONRenderer]
    permission_classes = [CorpRolePermission]

    def get(self, request: Request) -> Any:
        query = ChannelReportQuerySerializer(
            data=request.query_params, context={"request": request}
        )
        query.is_valid(raise_exception=True)
        report = ChannelReport(query.params())
        result = report.calculate()
        if report.params.group_by == "channel" and query.validated_data["format"] == "json":
            advice = budget_advice(report, result)
            rows = [{**row, "budget_advice": advice.get(row["key"])} for row in result.rows]
            result = dataclasses.replace(result, rows=rows)
        return _answer(request, result, query.validated_data["format"], ChannelReportSerializer)


@extend_schema(
    tags=["reports"],
    parameters=[ReportQuerySerializer],
    responses=report_responses(ReportSerializer),
    description=_("Daily trend: the same figures per local day of the period.")
    + "\n\n"
    + DEFINITIONS,
)
class DailyReportView(APIView):
    content_negotiation_class = FormatIsAParameter
    renderer_classes = [JSONRenderer]
    permission_classes = [CorpRolePermission]

    def get(self, request: Request) -> Any:
        query = ReportQuerySerializer(data=request.query_params, context={"request": request})
        query.is_valid(raise_exception=True)
        result = DailyReport(query.params()).calculate()
        return _answer(request, result, query.validated_data["format"])
