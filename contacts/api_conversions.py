"""/api/v1/conversions/: send conversions (POST a JSON list) and read them back (GET).

POST [{"corp_id": ..., "external_id": ..., "kind": "order", "amount": "199.00",
       "occurred_at": "2024-06-18T20:30:00+08:00", "external_userid": ...}, ...]
  201 {"created": n, "duplicates": m, "matched": k, "unmatched": u}
  400 {"errors": [{"row": i, "field": f, "message": m}]}: nothing was written. `row` is the
      row's index in the list (0-based), null for the request as a whole.
At most 1,000 rows per request. Reading lists the conversions of the user's corps; sending
needs the admin or operator role in each row's corp (another corp's corp_id is "Unknown
corp.", and a row is matched only to that corp's customers).
"""

from __future__ import annotations

from django.urls import path
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.exceptions import ParseError
from rest_framework.request import Request
from rest_framework.response import Response

from contacts.conversions import (
    MAX_ROWS_PER_REQUEST,
    ConversionEventFilter,
    ConversionImportError,
    conversion_list,
    conversions_import,
)
from contacts.models import ConversionEvent
from scrm.api_docs import RowErrorsSerializer
from scrm.api_tenancy import CorpScopedMixin, PersonalFieldsMixin
from scrm.csv_import import RowError
from scrm.input_guard import RowsJSONParser
from scrm.wecom import tenancy


class ConversionSerializer(PersonalFieldsMixin, serializers.ModelSerializer):
    corp = serializers.CharField(source="corp.corp_id")
    matched = serializers.SerializerMethodField()

    # Not for a manager: the unionid (one person across every app of the WeChat platform) and
    # the note (the business's free text: a phone number, an address).
    personal_fields = ("unionid", "note")

    class Meta:
        model = ConversionEvent
        fields = [
            "id",
            "corp",
            "external_id",
            "kind",
            "custom_name",
            "amount",
            "currency",
            "occurred_at",
            "external_userid",
            "unionid",
            "matched",
            "external_contact",
            "matched_at",
            "note",
            "created_at",
        ]

    def get_matched(self, obj: ConversionEvent) -> bool:
        return obj.external_contact_id is not None


class ConversionRowSerializer(serializers.Serializer):
    """One row sent, for the schema only: conversions_import validates the rows (the same
    columns as the admin's CSV, contacts.conversions.FIELDS)."""

    corp_id = serializers.CharField()
    external_id = serializers.CharField(
        max_length=64, help_text="the row's id in your system: a row sent again is a duplicate"
    )
    kind = serializers.ChoiceField(choices=ConversionEvent.Kind.choices)
    custom_name = serializers.CharField(max_length=64, required=False, allow_blank=True)
    amount = serializers.DecimalField(
        max_digits=14,
        decimal_places=2,
        required=False,
        allow_null=True,
        help_text="required for orders and refunds; an order is never negative",
    )
    currency = serializers.CharField(max_length=3, required=False, help_text="default CNY")
    occurred_at = serializers.DateTimeField(
        help_text="ISO-8601; without an offset, in the corp's time zone"
    )
    external_userid = serializers.CharField(
        max_length=64, required=False, allow_blank=True, help_text="this or unionid, or both"
    )
    unionid = serializers.CharField(max_length=64, required=False, allow_blank=True)
    note = serializers.CharField(max_length=255, required=False, allow_blank=True)


class ConversionListView(CorpScopedMixin, generics.ListAPIView):
    serializer_class = ConversionSerializer
    filterset_class = ConversionEventFilter
    parser_classes = [RowsJSONParser]  # too deep: a 400; bad text: an error per row and field

    def get_queryset(self):
        # The filter backend applies ConversionEventFilter to the selector's queryset.
        return conversion_list()

    @extend_schema(
        description=(
            f"Up to {MAX_ROWS_PER_REQUEST:,} rows a request, written all or none; a row sent "
            "again (same corp_id and external_id, same content) is a duplicate. Needs the "
            "admin or operator role in each row's corp. "
            f"一次至多 {MAX_ROWS_PER_REQUEST:,} 行，全部写入或全部不写。"
        ),
        request=ConversionRowSerializer(many=True),
        responses={
            201: inline_serializer(
                "ConversionImportResult",
                {
                    "created": serializers.IntegerField(),
                    "duplicates": serializers.IntegerField(),
                    "matched": serializers.IntegerField(help_text="created and matched at once"),
                    "unmatched": serializers.IntegerField(),
                },
            ),
            400: OpenApiResponse(RowErrorsSerializer, description="Nothing was written"),
        },
    )
    def post(self, request: Request) -> Response:
        try:
            rows = request.data
        except ParseError as exc:
            error = RowError(None, "", str(exc.detail))
            return Response({"errors": [error.as_dict()]}, status=status.HTTP_400_BAD_REQUEST)
        try:
            corps = tenancy.corps_for_user(request.user, tenancy.WRITE)
            result = conversions_import(rows=rows, actor=request.user, source="api", corps=corps)
        except ConversionImportError as exc:
            return Response({"errors": exc.as_list()}, status=status.HTTP_400_BAD_REQUEST)
        return Response(result.as_dict(), status=status.HTTP_201_CREATED)


# Included from contacts/urls.py under "conversions/".
urlpatterns = [path("", ConversionListView.as_view(), name="conversion-list")]
