"""GET /api/v1/reports/quality/: the corp's latest channel quality ranking (each channel's
score, rank and parts) and the ranks of the hours before it; the same selector as the page."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics import quality
from analytics.quality import HISTORY_DAYS, HISTORY_SHOWN_DAYS, PARTS, quality_overview
from scrm.api_filters import StrictQuerySerializer
from scrm.api_tenancy import CorpField, CorpRolePermission
from scrm.wecom import tenancy


class QualityQuerySerializer(StrictQuerySerializer):
    corp = CorpField(action=tenancy.READ, help_text=_("the corp's WeCom corp ID"))
    days = serializers.IntegerField(
        min_value=0, max_value=HISTORY_DAYS, default=HISTORY_SHOWN_DAYS,
        help_text=_("days of hourly history before the latest ranking"),
    )  # fmt: skip


class QualityPartSerializer(serializers.Serializer):
    name = serializers.ChoiceField(choices=[name for name, _label in PARTS])
    value = serializers.DecimalField(
        max_digits=18, decimal_places=4, allow_null=True, coerce_to_string=False,
        help_text=_("the raw figure (reply_speed: median minutes); null: no data"),
    )  # fmt: skip
    normalised = serializers.DecimalField(
        max_digits=6, decimal_places=4, coerce_to_string=False,
        help_text=_("0..1 across the corp's channels"),
    )  # fmt: skip
    weight = serializers.IntegerField()


class QualityRowSerializer(serializers.Serializer):
    rank = serializers.IntegerField()
    channel = serializers.IntegerField(help_text=_("the channel's id"))
    name = serializers.CharField()
    score = serializers.DecimalField(max_digits=7, decimal_places=2, coerce_to_string=False)
    new_customers = serializers.IntegerField()
    top = serializers.BooleanField(help_text=_("within the corp's top N"))
    parts = QualityPartSerializer(many=True)


class QualityHistorySerializer(serializers.Serializer):
    computed_at = serializers.DateTimeField()
    channel = serializers.IntegerField(source="channel_id")
    rank = serializers.IntegerField()
    score = serializers.DecimalField(max_digits=7, decimal_places=2, coerce_to_string=False)


class QualitySerializer(serializers.Serializer):
    computed_at = serializers.DateTimeField(allow_null=True, help_text=_("null: never ranked"))
    first = serializers.DateField(allow_null=True)
    last = serializers.DateField(allow_null=True)
    top_n = serializers.IntegerField()
    weights = serializers.DictField(child=serializers.IntegerField())
    rows = QualityRowSerializer(many=True)
    history = QualityHistorySerializer(many=True)


@extend_schema(
    tags=["reports"],
    parameters=[QualityQuerySerializer],
    responses={
        200: QualitySerializer,
        400: OpenApiResponse(description="a parameter is missing, unknown or out of range"),
    },
    description=_("Channel quality ranking: the latest hour's ranking and the ranks before it.")
    + "\n\n"
    + (quality.__doc__ or ""),
)
class QualityReportView(APIView):
    permission_classes = [CorpRolePermission]

    def get(self, request: Request) -> Response:
        query = QualityQuerySerializer(data=request.query_params, context={"request": request})
        query.is_valid(raise_exception=True)
        data = query.validated_data
        overview = quality_overview(corp=data["corp"], history_days=data["days"])
        return Response(QualitySerializer(overview).data)
