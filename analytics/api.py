"""The report API (/api/v1/reports/): the same report classes the pages use, as JSON. Thin: a
query serializer validates the parameters, the report computes, a serializer renders money as
decimal strings and rates as numbers in 0..1 (or null)."""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema, extend_schema_field
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
from analytics.exports import cohort_export_response
from analytics.models import WINDOWS, Touch
from analytics.reports import ChannelReport, DailyReport, ReportParams, cohorts
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


# -- cohort matrices ---------------------------------------------------------------------------


class CohortQuerySerializer(ReportQuerySerializer):
    window = None  # the cohort matrix has its columns instead of a window
    touch = None  # and every customer is its first touch's
    period = serializers.ChoiceField(
        choices=cohorts.PERIODS, default="month",
        help_text=_("cohorts by local day, ISO week or calendar month; ages in 1, 7 or 30 days"),
    )  # fmt: skip
    metric = serializers.ChoiceField(
        choices=cohorts.METRICS, default="retention",
        help_text=_("retention: share still customers; revenue: cumulative revenue per "
                    "customer; buyers: cumulative share with an order"),
    )  # fmt: skip
    by = serializers.ChoiceField(
        choices=cohorts.GROUPS, default="none",
        help_text=_("one set of cohort rows per first-touch channel, live code or staff member"),
    )  # fmt: skip

    def params(self, **extra: Any) -> cohorts.CohortParams:  # type: ignore[override]
        values: dict[str, Any] = dict(self.validated_data)
        values["first"], values["last"] = values.pop("from"), values.pop("to")
        values.pop("format", None)
        try:
            params = cohorts.CohortParams(**values, **extra)
            params.validate()
        except ReportError as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        return params


@extend_schema_field(
    {"type": "array", "items": {"oneOf": [{"type": "number"}, {"type": "string"}],
                                "nullable": True}}
)  # fmt: skip
class CellsField(serializers.Field):
    """A row's cells: rates as numbers in 0..1, money as decimal strings; null: immature."""

    def to_representation(self, value: list[Any]) -> list[Any]:
        return [
            None if cell is None else str(cell) if self.context.get("money") else float(cell)
            for cell in value
        ]


class CohortRowSerializer(serializers.Serializer):
    cohort = serializers.DateField(help_text=_("the first day of the cohort's day, week or month"))
    first = serializers.DateField(help_text=_("the cohort's first day inside the period"))
    last = serializers.DateField(help_text=_("the cohort's last day inside the period"))
    key = serializers.IntegerField(
        allow_null=True, help_text=_("the channel, live code or staff id; null: none")
    )
    name = serializers.CharField()
    size = serializers.IntegerField(help_text=_("new customers of the cohort"))
    cells = CellsField(help_text=_("the metric per age column; null: not mature yet"))
    counts = CellsField(
        help_text=_("the cells' numerators: customers still customers, revenue to date, buyers")
    )


class CohortTotalsSerializer(serializers.Serializer):
    size = serializers.IntegerField()
    sizes = serializers.ListField(
        child=serializers.IntegerField(allow_null=True),
        help_text=_("per age: the customers of the cohorts mature at that age"),
    )
    cells = CellsField()
    counts = CellsField()


class CohortReportSerializer(serializers.Serializer):
    computed_at = serializers.DateTimeField(allow_null=True)
    days_not_computed = serializers.ListField(child=serializers.DateField())
    as_of = serializers.DateTimeField(help_text=_("the time maturity is judged at"))
    period = serializers.CharField()
    metric = serializers.CharField()
    by = serializers.CharField()
    columns = serializers.ListField(
        child=serializers.IntegerField(), help_text=_("the ages: periods since the first add")
    )
    rows = CohortRowSerializer(many=True)
    totals = CohortTotalsSerializer()


@extend_schema(
    tags=["reports"],
    parameters=[CohortQuerySerializer],
    responses=report_responses(CohortReportSerializer),
    description=_("Cohort matrix: rows are first-add cohorts, columns the ages since the add.")
    + "\n\n"
    + (cohorts.__doc__ or ""),
)
class CohortReportView(APIView):
    content_negotiation_class = FormatIsAParameter
    renderer_classes = [JSONRenderer]
    permission_classes = [CorpRolePermission]

    def get(self, request: Request) -> Any:
        query = CohortQuerySerializer(data=request.query_params, context={"request": request})
        query.is_valid(raise_exception=True)
        result = cohorts.CohortReport(query.params()).calculate()
        fmt = query.validated_data["format"]
        if fmt != "json":
            try:
                return cohort_export_response(result, fmt)
            except ReportError as exc:
                raise ValidationError({"format": str(exc)}) from exc
        money = result.params.metric == "revenue"
        return Response(
            CohortReportSerializer(
                {"computed_at": result.computed_at,
                 "days_not_computed": result.days_not_computed, "as_of": result.as_of,
                 "period": result.params.period, "metric": result.params.metric,
                 "by": result.params.by, "columns": result.columns, "rows": result.rows,
                 "totals": result.totals},
                context={"money": money},
            ).data
        )  # fmt: skip
