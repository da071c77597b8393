"""GET /api/v1/reports/anomalies/: the anomaly page's list as JSON (analytics.anomalies), the
open ones and the acknowledged ones, each with its figures and evidence links."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics import anomalies as rules
from analytics.anomalies import Anomaly, AnomalyError, AnomalyParams, Kind, anomalies_list
from scrm.api_filters import StrictQuerySerializer
from scrm.api_tenancy import CorpField, CorpRolePermission
from scrm.wecom import tenancy


class AnomalyQuerySerializer(StrictQuerySerializer):
    corp = CorpField(action=tenancy.READ, help_text=_("the corp's WeCom corp ID"))

    def get_fields(self) -> dict[str, serializers.Field]:
        # `from` is a Python keyword, so these two cannot be declared as class attributes.
        return {
            **super().get_fields(),
            "from": serializers.DateField(help_text=_("first local day of the daily checks")),
            "to": serializers.DateField(help_text=_("last local day of the daily checks")),
        }

    def params(self) -> AnomalyParams:
        data = self.validated_data
        params = AnomalyParams(
            corp=data["corp"], first=data["from"], last=data["to"], now=timezone.now()
        )
        try:
            params.validate()
        except AnomalyError as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        return params


class EvidenceSerializer(serializers.Serializer):
    label = serializers.CharField()
    url = serializers.CharField(help_text=_("the admin's list or page, filtered"))


class AcknowledgementSerializer(serializers.Serializer):
    by = serializers.CharField(allow_null=True)
    at = serializers.DateTimeField()
    note = serializers.CharField(allow_blank=True)


class AnomalySerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=Kind.choices)
    key = serializers.CharField(help_text=_("identifies the occurrence (to acknowledge it)"))
    subject = serializers.CharField(allow_blank=True)
    day = serializers.DateField(allow_null=True, help_text=_("the local day (daily checks)"))
    since = serializers.DateTimeField(allow_null=True, help_text=_("since when (the others)"))
    figures = serializers.DictField(help_text=_("kind-specific counts and rates"))
    evidence = EvidenceSerializer(many=True)
    acknowledged = AcknowledgementSerializer(allow_null=True)


class AnomalyListSerializer(serializers.Serializer):
    computed_at = serializers.DateTimeField()
    anomalies = AnomalySerializer(many=True)


def _plain(value: Any) -> Any:
    """A figure as JSON: rates as numbers, times and days as ISO strings."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _row(anomaly: Anomaly) -> dict[str, Any]:
    ack = anomaly.ack
    return {
        "kind": anomaly.kind,
        "key": anomaly.key,
        "subject": anomaly.subject,
        "day": anomaly.day,
        "since": anomaly.since,
        "figures": {name: _plain(value) for name, value in anomaly.figures.items()},
        "evidence": [{"label": label, "url": url} for label, url in anomaly.evidence],
        "acknowledged": {"by": str(ack.acknowledged_by) if ack.acknowledged_by else None,
                         "at": ack.acknowledged_at, "note": ack.note} if ack else None,
    }  # fmt: skip


@extend_schema(
    tags=["reports"],
    parameters=[AnomalyQuerySerializer],
    responses={200: AnomalyListSerializer},
    description=_(
        "Anomalies of a corp: the daily checks of the days from..to (adds far below scans, "
        "adds without scans, WeCom's empty answers, calibration deviations) and the checks of "
        "now (dead staff QRs, callback backlog and failures, staff who left still in a pool); "
        "open ones first, then the acknowledged ones."
    )
    + "\n\n"
    + "The rules"
    + (rules.__doc__ or "").split("The rules", 1)[-1],
)
class AnomalyListView(APIView):
    permission_classes = [CorpRolePermission]

    def get(self, request: Request) -> Response:
        query = AnomalyQuerySerializer(data=request.query_params, context={"request": request})
        query.is_valid(raise_exception=True)
        result = anomalies_list(params=query.params())
        return Response(
            AnomalyListSerializer(
                {
                    "computed_at": result.params.now,
                    "anomalies": [_row(a) for a in (*result.open, *result.acknowledged)],
                }
            ).data
        )
