"""REST API of channels, costs, live codes, scans, referral codes and attributions (/api/v1/).

Thin: serializers validate, services do the WeCom work (publish, referral codes), selectors and
the FilterSets of channels_app/filters.py read. Corps appear only as their corp_id: no secret of
a Corp is ever serialized. Every view is scoped by scrm.api_tenancy: rows of the user's corps
only (another corp's is a 404), writes by admins and operators of the row's corp, and the
corps, channels and codes a write names are looked up among those the user may write.
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, models, transaction
from django.db.models import Exists, OuterRef, Prefetch, ProtectedError, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import mixins, renderers, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings

from channels_app.filters import (
    AttributionFilter,
    ChannelCostFilter,
    ChannelFilter,
    LiveCodeFilter,
    ReferralCodeFilter,
    ScanFilter,
)
from channels_app.models import (
    Attribution,
    Channel,
    ChannelCost,
    LiveCode,
    PoolMember,
    ReferralCode,
    Scan,
    ScheduleRule,
)
from channels_app.selectors import (
    channels_with_today,
    live_codes_with_today,
    referrer_leaderboard,
)
from channels_app.services.costs import channel_cost_create, channel_costs_create
from channels_app.services.live_codes import live_code_create, live_code_update
from channels_app.services.publishing import (
    PublishError,
    errcode_message,
    live_code_publish,
    live_codes_status_set,
)
from channels_app.services.referrals import referral_code_get_or_create, referral_link
from contacts.models import ExternalContact, Staff
from scrm.api_docs import (
    DetailSerializer,
    RowErrorsSerializer,
    WeComFailureSerializer,
    one_or_list,
)
from scrm.api_filters import StrictQuerySerializer
from scrm.api_tenancy import (
    CorpField,
    CorpScopedMixin,
    PersonalFieldsMixin,
    ScopedPrimaryKeyRelatedField,
    writable_corps,
)
from scrm.csv_import import RowError
from scrm.wecom import tenancy
from scrm.wecom.client import WeComError
from scrm.wecom.models import Corp

BULK_MAX_ROWS = 1000  # per request: ~150 KB of JSON held in memory, then one bulk INSERT


def landing_url(request: HttpRequest, slug: str) -> str:
    return request.build_absolute_uri(reverse("channels_app:landing", kwargs={"slug": slug}))


def _publish_failed(exc: PublishError | WeComError) -> Response:
    if isinstance(exc, PublishError):
        return Response({"detail": exc.message, "errcode": exc.errcode}, status=400)
    # Not turned into a PublishError by the service (e.g. follow_user_list): WeCom's fault.
    return Response({"detail": errcode_message(exc), "errcode": exc.errcode}, status=502)


class BooleanField(serializers.BooleanField):
    # DRF reads a boolean missing from a form-encoded body as an unticked checkbox (False);
    # missing should mean the model default (a channel is active, a code skips verification).
    default_empty_html = serializers.empty


class ModelSerializer(serializers.ModelSerializer):
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.BooleanField: BooleanField,
    }
    integrity_error = _("The same value was saved meanwhile by someone else; reload and retry.")
    integrity_field = api_settings.NON_FIELD_ERRORS_KEY

    def save(self, **kwargs: Any) -> models.Model:
        # Uniqueness validators read before writing: a concurrent write meets the constraint.
        try:
            with transaction.atomic():
                return super().save(**kwargs)
        except IntegrityError as exc:
            raise ValidationError({self.integrity_field: [self.integrity_error]}) from exc


def _check_corp_unchanged(serializer: serializers.Serializer, corp: Corp | None) -> None:
    instance = serializer.instance
    if instance is not None and corp is not None and corp.pk != instance.corp_id:
        raise ValidationError({"corp": [_("A row cannot move to another corp.")]})


@contextmanager
def service_errors() -> Iterator[None]:
    """A service's ValidationError answered as the serializer's own (400, errors by field)."""
    try:
        yield
    except DjangoValidationError as exc:
        detail = serializers.as_serializer_error(exc)
        if NON_FIELD_ERRORS in detail:
            detail[api_settings.NON_FIELD_ERRORS_KEY] = detail.pop(NON_FIELD_ERRORS)
        raise ValidationError(detail) from exc


class ReloadAfterSaveMixin:
    """Answer a write with the row as the list shows it (today's figures, prefetched pool)."""

    def perform_create(self, serializer: serializers.Serializer) -> None:
        serializer.instance = self.get_queryset().get(pk=serializer.save().pk)

    def perform_update(self, serializer: serializers.Serializer) -> None:
        serializer.instance = self.get_queryset().get(pk=serializer.save().pk)


# -- channels ----------------------------------------------------------------------------------


class ChannelSerializer(ModelSerializer):
    corp = CorpField()
    scans_today = serializers.IntegerField(read_only=True)
    adds_today = serializers.IntegerField(read_only=True)
    live_code_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Channel
        fields = [
            "id", "corp", "name", "code", "channel_type", "category",
            "utm_source", "utm_medium", "utm_campaign", "utm_content", "is_active", "notes",
            "scans_today", "adds_today", "live_code_count", "created_at",
        ]  # fmt: skip
        validators = [
            serializers.UniqueTogetherValidator(
                queryset=Channel.objects.all(),
                fields=["corp", "code"],
                message=_("This corp already has a channel with this code."),
            )
        ]

    integrity_error = _("This corp already has a channel with this code.")
    integrity_field = "code"

    def validate(self, attrs: dict) -> dict:
        _check_corp_unchanged(self, attrs.get("corp"))
        return attrs


class ChannelViewSet(CorpScopedMixin, ReloadAfterSaveMixin, viewsets.ModelViewSet):
    """渠道 with today's scans and adds (today: the channel's corp's local day) and number of
    live codes."""

    # The model, for the schema; get_queryset() reads the corps' time zones.
    queryset = Channel.objects.none()
    serializer_class = ChannelSerializer
    filterset_class = ChannelFilter

    def get_queryset(self) -> QuerySet[Channel]:
        return channels_with_today().order_by("corp", "code")

    def perform_destroy(self, instance: Channel) -> None:
        try:
            instance.delete()
        except ProtectedError as exc:
            codes = sorted(o.slug for o in exc.protected_objects if isinstance(o, LiveCode))
            raise ValidationError(
                {
                    "detail": _(
                        "The channel still has live codes or group codes; move them to another "
                        "channel or delete them first."
                    ),
                    "live_codes": codes,
                }
            ) from exc


# -- channel costs -----------------------------------------------------------------------------


class ChannelCostListSerializer(serializers.ListSerializer):
    def to_internal_value(self, data: Any) -> list[dict]:
        # Resolve every (corp, channel code) of the batch in one query, not one per row.
        if isinstance(data, list) and len(data) <= (self.max_length or len(data)):
            rows = [row for row in data if isinstance(row, dict)]
            corp_ids = {str(row.get("corp")) for row in rows}
            codes = {str(row.get("channel")) for row in rows}
            # Only the corps where the user may write: another corp is "unknown".
            corps = writable_corps(self.context).filter(corp_id__in=corp_ids)
            channels = Channel.objects.select_related("corp").filter(corp__in=corps, code__in=codes)
            self.context["channels"] = {(c.corp.corp_id, c.code): c for c in channels}
            self.context["corps"] = {corp.corp_id: corp for corp in corps}
        return super().to_internal_value(data)

    def create(self, validated_data: list[dict]) -> list[ChannelCost]:
        return channel_costs_create(costs=[ChannelCost(**row) for row in validated_data])


class ChannelCostSerializer(ModelSerializer):
    corp = serializers.CharField(source="corp.corp_id", max_length=64)
    channel = serializers.CharField(source="channel.code", max_length=32)

    class Meta:
        model = ChannelCost
        fields = ["id", "corp", "channel", "start_date", "end_date", "amount", "currency",
                  "note", "created_at"]  # fmt: skip
        list_serializer_class = ChannelCostListSerializer

    def create(self, validated_data: dict) -> ChannelCost:
        validated_data.pop("corp")  # the channel's own (validate() checked it)
        return channel_cost_create(**validated_data)

    def _corp(self, corp_id: str) -> Corp:
        corps = self.context.get("corps")
        if corps is not None:
            corp = corps.get(corp_id)
        else:
            corp = writable_corps(self.context).filter(corp_id=corp_id).first()
        if corp is None:
            raise ValidationError({"corp": [_("Unknown corp: %(corp)s") % {"corp": corp_id}]})
        return corp

    def _channel(self, corp: Corp, code: str) -> Channel:
        channels = self.context.get("channels")
        if channels is not None:
            channel = channels.get((corp.corp_id, code))
        else:
            channel = Channel.objects.select_related("corp").filter(corp=corp, code=code).first()
        if channel is None:
            raise ValidationError(
                {"channel": [_("The corp has no channel with code %(code)s.") % {"code": code}]}
            )
        return channel

    def validate_currency(self, value: str) -> str:
        if not re.fullmatch(r"[A-Z]{3}", value.upper()):
            raise ValidationError(_("Use a three-letter currency code such as CNY."))
        return value.upper()

    def validate(self, attrs: dict) -> dict:
        instance: ChannelCost | None = self.instance
        corp = self._corp(attrs["corp"]["corp_id"]) if "corp" in attrs else instance.corp
        _check_corp_unchanged(self, corp)
        attrs["corp"] = corp
        if "channel" in attrs:
            attrs["channel"] = self._channel(corp, attrs["channel"]["code"])
        candidate = copy.copy(instance) if instance is not None else ChannelCost()
        for name, value in attrs.items():
            setattr(candidate, name, value)
        try:
            candidate.clean()
        except DjangoValidationError as exc:
            raise ValidationError(serializers.as_serializer_error(exc)) from exc
        return attrs


def row_errors(errors: dict | list) -> list[dict]:
    """A ListSerializer's errors ({row index: that row's errors}, or {non_field_errors: [...]}
    for the batch itself) as a flat list of RowError dicts {row, field, message}, in input
    order, as /api/v1/conversions/ answers: `row` is the 0-based index in the list sent (None
    for the request as a whole), `field` is non_field_errors for a whole row or the request."""
    if isinstance(errors, list):  # DRF's older format, one entry per input row
        errors = dict(enumerate(errors))
    flat = []
    for key, detail in errors.items():
        row = key if isinstance(key, int) else None
        for field, messages in detail.items() if isinstance(detail, dict) else [(key, detail)]:
            field = field if isinstance(field, str) else api_settings.NON_FIELD_ERRORS_KEY
            for message in messages if isinstance(messages, list) else [messages]:
                flat.append(RowError(row, field, message).as_dict())
    return flat


class ChannelCostViewSet(CorpScopedMixin, viewsets.ModelViewSet):
    """Spend per channel and date range. POST a list of up to 1,000 rows to add them at once:
    all rows are validated and either all are written or none (errors listed per row)."""

    serializer_class = ChannelCostSerializer
    filterset_class = ChannelCostFilter

    def get_queryset(self) -> QuerySet[ChannelCost]:
        return ChannelCost.objects.select_related("corp", "channel").order_by("-start_date", "pk")

    @extend_schema(
        description=(
            f"One cost (an object) or up to {BULK_MAX_ROWS:,} at once (a JSON list): a list is "
            "validated whole and written all or nothing (errors by row). "
            f"提交一条（对象）或一个列表（JSON，至多 {BULK_MAX_ROWS:,} 条）：列表整体校验，"
            "全部写入或全部不写。"
        ),
        request={
            "application/json": one_or_list("ChannelCostOneOrList", ChannelCostSerializer),
            # A form carries one row.
            "application/x-www-form-urlencoded": ChannelCostSerializer,
            "multipart/form-data": ChannelCostSerializer,
        },
        responses={
            201: one_or_list("ChannelCostOneOrList", ChannelCostSerializer),
            400: OpenApiResponse(
                RowErrorsSerializer,
                description="A list sent: its errors by row, nothing written. One object sent: "
                "its errors by field ({field: [message]}), as everywhere else.",
            ),
        },
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if not isinstance(request.data, list):
            return super().create(request, *args, **kwargs)
        serializer = self.get_serializer(
            data=request.data, many=True, max_length=BULK_MAX_ROWS, allow_empty=False
        )
        if not serializer.is_valid():
            return Response({"errors": row_errors(serializer.errors)}, status=400)
        with transaction.atomic():
            serializer.save()
        return Response(serializer.data, status=status.HTTP_201_CREATED)


# -- live codes --------------------------------------------------------------------------------


class PoolMemberSerializer(ModelSerializer):
    staff = serializers.CharField(source="staff.userid", max_length=64)
    staff_name = serializers.CharField(source="staff.name", read_only=True)

    class Meta:
        model = PoolMember
        fields = ["id", "staff", "staff_name", "weight", "daily_cap", "is_backup", "is_enabled"]


class ScheduleRuleSerializer(ModelSerializer):
    members = serializers.SerializerMethodField()

    class Meta:
        model = ScheduleRule
        fields = ["id", "name", "weekdays", "start_time", "end_time", "members"]

    def get_members(self, rule: ScheduleRule) -> list[str]:
        return [member.staff.userid for member in rule.members.all()]


class LiveCodeSerializer(ModelSerializer):
    corp = CorpField()
    channel = ScopedPrimaryKeyRelatedField(queryset=Channel.objects.all())
    channel_code = serializers.CharField(source="channel.code", read_only=True)
    tag_ids = serializers.ListField(child=serializers.CharField(max_length=64), required=False)
    welcome_attachments = serializers.ListField(child=serializers.DictField(), required=False)
    pool = PoolMemberSerializer(many=True, required=False)
    schedules = ScheduleRuleSerializer(many=True, read_only=True)
    scans_today = serializers.IntegerField(read_only=True)
    adds_today = serializers.IntegerField(read_only=True)
    assigned_today = serializers.IntegerField(read_only=True)
    cap_used_today = serializers.IntegerField(read_only=True)
    cap_today = serializers.IntegerField(read_only=True)
    landing_url = serializers.SerializerMethodField()

    class Meta:
        model = LiveCode
        fields = [
            "id", "corp", "channel", "channel_code", "name", "public_title", "language", "slug",
            "mode", "status",
            "strategy", "penalize_slow_reply", "skip_verify", "auto_accept_from",
            "auto_accept_to", "is_exclusive", "tag_ids", "welcome_text", "welcome_attachments",
            "daily_target", "total_target", "pool", "schedules",
            "config_id", "qr_code", "state", "published_users", "published_at", "sync_error",
            "imported", "scans_today", "adds_today", "assigned_today", "cap_used_today",
            "cap_today", "landing_url", "created_at", "updated_at",
        ]  # fmt: skip
        # What WeCom holds is written by publishing only; status moves by publish and pause.
        read_only_fields = ["status", "config_id", "qr_code", "state", "published_users",
                            "published_at", "sync_error", "imported"]  # fmt: skip

    def get_landing_url(self, live_code: LiveCode) -> str | None:
        request = self.context.get("request")
        return landing_url(request, live_code.slug) if request is not None else None

    def _resolve_pool(self, corp: Corp, rows: list[dict]) -> None:
        userids = [row["staff"]["userid"] for row in rows]
        twice = sorted(userid for userid, n in Counter(userids).items() if n > 1)
        if twice:
            message = _("Listed twice: %(ids)s")
            raise ValidationError({"pool": [message % {"ids": ", ".join(twice)}]})
        staff = {s.userid: s for s in Staff.objects.filter(corp=corp, userid__in=userids)}
        unknown = [userid for userid in userids if userid not in staff]
        if unknown:
            message = _("No staff with UserID %(ids)s in corp %(corp)s.")
            raise ValidationError(
                {"pool": [message % {"ids": ", ".join(unknown), "corp": corp.corp_id}]}
            )
        for row in rows:
            row["staff"] = staff[row["staff"]["userid"]]

    def validate(self, attrs: dict) -> dict:
        """The pool's UserIDs become staff of the code's corp; the services check the rest (at
        most 9 attachments, a channel of the same corp, both window ends, a published code's
        mode) and their errors are answered as this serializer's."""
        instance: LiveCode | None = self.instance
        _check_corp_unchanged(self, attrs.get("corp"))
        if "pool" in attrs:
            self._resolve_pool(attrs.get("corp") or instance.corp, attrs["pool"])
        return attrs

    def create(self, validated_data: dict) -> LiveCode:
        pool = validated_data.pop("pool", [])
        with service_errors():
            return live_code_create(**validated_data, pool=pool)

    def update(self, instance: LiveCode, validated_data: dict) -> LiveCode:
        """Saves the edited fields only (a publish finishing meanwhile keeps its config_id and
        QR) and never republishes; a pool change re-syncs an active native code's WeCom list."""
        pool = validated_data.pop("pool", None)
        with service_errors():
            return live_code_update(live_code=instance, changes=validated_data, pool=pool)


class PNGRenderer(renderers.BaseRenderer):
    media_type = "image/png"
    format = "png"
    charset = None
    render_style = "binary"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context=None):
        return data if isinstance(data, bytes) else b""  # errors carry no image


class LiveCodeViewSet(CorpScopedMixin, ReloadAfterSaveMixin, viewsets.ModelViewSet):
    """活码 with pool, shifts and today's figures (today: the code's corp's local day). Edits
    save only; POST publish/ pushes the code to WeCom (a native code keeps its config_id and
    printed QR), pause/ pauses it."""

    # The model, for the schema; get_queryset() reads the corps' time zones.
    queryset = LiveCode.objects.none()
    serializer_class = LiveCodeSerializer
    filterset_class = LiveCodeFilter

    def get_queryset(self) -> QuerySet[LiveCode]:
        pool = PoolMember.objects.select_related("staff")
        shifts = ScheduleRule.objects.prefetch_related(Prefetch("members", queryset=pool))
        return live_codes_with_today().prefetch_related(
            Prefetch("pool", queryset=pool), Prefetch("schedules", queryset=shifts)
        )

    def perform_destroy(self, instance: LiveCode) -> None:
        if instance.published_at is not None:
            message = _("A published code keeps its history and WeCom contact way; pause it.")
            raise ValidationError({"detail": message})
        instance.delete()

    @extend_schema(
        request=None,
        responses={
            200: LiveCodeSerializer,
            400: OpenApiResponse(WeComFailureSerializer, description="WeCom refused the code"),
            502: OpenApiResponse(WeComFailureSerializer, description="WeCom failed"),
        },
    )
    @action(detail=True, methods=["post"])
    def publish(self, request: Request, pk: str | None = None) -> Response:
        live_code = self.get_object()
        try:
            live_code_publish(live_code=live_code)
        except (PublishError, WeComError) as exc:
            return _publish_failed(exc)
        return Response(self.get_serializer(self.get_queryset().get(pk=live_code.pk)).data)

    @extend_schema(
        request=None,
        responses={
            200: LiveCodeSerializer,
            400: OpenApiResponse(DetailSerializer, description="The code is not active"),
        },
    )
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        """Stops landing scans and staff-list syncs; publish again to resume. A native code's
        printed QR still reaches WeCom: adds through it are still attributed."""
        live_code = self.get_object()
        if live_code.status not in (LiveCode.Status.ACTIVE, LiveCode.Status.PAUSED):
            raise ValidationError({"detail": _("Only an active code can be paused.")})
        live_codes_status_set(live_code_ids=[live_code.pk], status=LiveCode.Status.PAUSED)
        return Response(self.get_serializer(self.get_queryset().get(pk=live_code.pk)).data)

    @extend_schema(
        operation_id="live_codes_qr_png",
        # ?format= would only pick how errors are rendered: not a parameter worth offering.
        parameters=[OpenApiParameter("format", exclude=True)],
        responses={
            (200, "image/png"): OpenApiResponse(OpenApiTypes.BINARY, description="The QR image"),
            302: OpenApiResponse(description="A native code: redirect to WeCom's QR image"),
            (400, "application/json"): OpenApiResponse(
                DetailSerializer, description="The link cannot be drawn as a QR code"
            ),
            (404, "application/json"): OpenApiResponse(
                DetailSerializer, description="No such code, or a code not yet published"
            ),
        },
    )
    def qr_png(self, request: Request, pk: str | None = None) -> HttpResponse | Response:
        """GET live-codes/<id>/qr.png: a landing code's link as a PNG; for a native code,
        WeCom's own QR image."""
        live_code = self.get_object()
        # A draft's QR would be printed before it works (the admin shows none either).
        if live_code.published_at is None or (
            live_code.mode == LiveCode.Mode.NATIVE and not live_code.qr_code
        ):
            return Response({"detail": _("Publish the code first.")}, status=404)
        if live_code.mode == LiveCode.Mode.NATIVE:
            return HttpResponseRedirect(live_code.qr_code)
        from channels_app.qr import QrRenderError, qr_png  # imported when first needed

        try:
            image = qr_png(landing_url(request, live_code.slug))
        except QrRenderError as exc:
            return Response({"detail": str(exc)}, status=400)
        response = HttpResponse(image, "image/png")
        response["Content-Disposition"] = f'inline; filename="{live_code.slug}.png"'
        return response


# -- scans and attributions (read-only) --------------------------------------------------------


class ScanSerializer(PersonalFieldsMixin, ModelSerializer):
    """A scan without its ip_hash and device_key: they identify a visitor's device; for a
    manager, without the referrer URL too (a page's address can carry a phone number)."""

    personal_fields = ("referrer_url",)

    corp = serializers.CharField(source="corp.corp_id", read_only=True)
    live_code_slug = serializers.CharField(source="live_code.slug", read_only=True)
    channel = serializers.CharField(source="live_code.channel.code", read_only=True)
    staff = serializers.CharField(source="staff.userid", allow_null=True, read_only=True)
    store = serializers.CharField(source="store.code", allow_null=True, read_only=True)
    has_add = serializers.BooleanField(read_only=True)

    class Meta:
        model = Scan
        fields = [
            "id", "corp", "live_code", "live_code_slug", "channel", "created_at",
            "utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term",
            "device", "in_wechat", "referrer_url", "staff", "store", "referral", "reused",
            "has_add",
        ]  # fmt: skip
        read_only_fields = fields


class ScanViewSet(CorpScopedMixin, viewsets.ReadOnlyModelViewSet):
    """Visits of tracked links, newest first. ?from=/?to= are local days of the corp (?corp=),
    else of each scan's own corp."""

    serializer_class = ScanSerializer
    filterset_class = ScanFilter

    def get_queryset(self) -> QuerySet[Scan]:
        return (
            Scan.objects.select_related("corp", "live_code__channel", "staff", "store")
            .annotate(has_add=Exists(Attribution.objects.filter(scan=OuterRef("pk"))))
            .order_by("-created_at", "-pk")
        )


class AttributionSerializer(ModelSerializer):
    corp = serializers.CharField(source="corp.corp_id", read_only=True)
    customer = serializers.CharField(source="external_contact.external_userid", read_only=True)
    customer_name = serializers.CharField(source="external_contact.name", read_only=True)
    staff = serializers.CharField(source="staff.userid", read_only=True)
    live_code_slug = serializers.CharField(source="live_code.slug", allow_null=True, read_only=True)
    channel = serializers.CharField(source="channel.code", allow_null=True, read_only=True)
    referrer = serializers.CharField(
        source="referrer.external_userid", allow_null=True, read_only=True
    )
    store = serializers.CharField(source="store.code", allow_null=True, read_only=True)

    class Meta:
        model = Attribution
        fields = [
            "id", "corp", "customer", "customer_name", "staff", "live_code", "live_code_slug",
            "channel", "scan", "referrer", "store", "state", "state_kind", "added_at",
            "is_first_touch",
        ]  # fmt: skip
        read_only_fields = fields


class AttributionViewSet(CorpScopedMixin, viewsets.ReadOnlyModelViewSet):
    """Adds resolved to code, channel, scan or referrer. ?state_kind=foreign lists adds whose
    state is not ours (other tools, codes not imported yet) for reconciling. ?from=/?to= are
    local days of the corp (?corp=), else of each add's own corp."""

    serializer_class = AttributionSerializer
    filterset_class = AttributionFilter

    def get_queryset(self) -> QuerySet[Attribution]:
        return Attribution.objects.select_related(
            "corp", "external_contact", "staff", "live_code", "channel", "referrer", "store"
        ).order_by("-added_at", "-pk")


# -- referral codes ----------------------------------------------------------------------------


class ReferralCodeSerializer(ModelSerializer):
    corp = serializers.CharField(source="corp.corp_id", read_only=True)
    live_code_slug = serializers.CharField(source="live_code.slug", read_only=True)
    referrer = serializers.CharField(source="referrer.external_userid", read_only=True)
    referrer_name = serializers.CharField(source="referrer.name", read_only=True)
    link = serializers.SerializerMethodField()

    class Meta:
        model = ReferralCode
        fields = ["id", "corp", "live_code", "live_code_slug", "referrer", "referrer_name",
                  "token", "link", "qr_code", "created_at"]  # fmt: skip
        read_only_fields = fields

    def get_link(self, referral: ReferralCode) -> str:
        return referral_link(referral, self.context["request"].build_absolute_uri("/"))


class ReferralCodeCreateSerializer(serializers.Serializer):
    live_code = ScopedPrimaryKeyRelatedField(queryset=LiveCode.objects.select_related("corp"))
    referrer = serializers.CharField(max_length=64, help_text=_("the customer's external UserID"))

    def validate(self, attrs: dict) -> dict:
        live_code: LiveCode = attrs["live_code"]
        referrer = ExternalContact.objects.filter(
            corp=live_code.corp, external_userid=attrs["referrer"]
        ).first()
        if referrer is None:
            message = _("No customer with external UserID %(id)s in corp %(corp)s.")
            raise ValidationError(
                {"referrer": [message % {"id": attrs["referrer"], "corp": live_code.corp.corp_id}]}
            )
        return {**attrs, "referrer": referrer}


class LeaderboardQuerySerializer(StrictQuerySerializer):
    corp = CorpField(action=tenancy.READ)
    since = serializers.DateField(required=False, help_text=_("a local day of the corp"))
    limit = serializers.IntegerField(min_value=1, max_value=200, default=50)


class ReferralCodeViewSet(
    CorpScopedMixin,
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """老带新 codes. POST {live_code, referrer} returns the referrer's code, made once: a link
    for any code, and for a native code a WeCom QR of its own."""

    serializer_class = ReferralCodeSerializer
    filterset_class = ReferralCodeFilter

    def get_queryset(self) -> QuerySet[ReferralCode]:
        return ReferralCode.objects.select_related("corp", "live_code", "referrer").order_by(
            "-created_at", "-pk"
        )

    @extend_schema(
        request=ReferralCodeCreateSerializer,
        responses={
            201: ReferralCodeSerializer,
            400: OpenApiResponse(
                WeComFailureSerializer,
                description="WeCom refused the referrer's QR (or errors by field)",
            ),
            502: OpenApiResponse(WeComFailureSerializer, description="WeCom failed"),
        },
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        given = ReferralCodeCreateSerializer(
            data=request.data, context=self.get_serializer_context()
        )
        given.is_valid(raise_exception=True)
        try:
            referral = referral_code_get_or_create(**given.validated_data)
        except (PublishError, WeComError) as exc:
            return _publish_failed(exc)
        data = self.get_serializer(self.get_queryset().get(pk=referral.pk)).data
        return Response(data, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[LeaderboardQuerySerializer],
        responses=inline_serializer(
            "ReferrerLeaderboard",
            {
                "corp": serializers.CharField(),
                "results": inline_serializer(
                    "ReferrerLeaderboardRow",
                    {
                        "referrer": serializers.CharField(help_text="external UserID"),
                        "name": serializers.CharField(),
                        "new_customers": serializers.IntegerField(),
                    },
                    many=True,
                ),
            },
        ),
    )
    @action(detail=False, methods=["get"])
    def leaderboard(self, request: Request) -> Response:
        """?corp=<corp_id>&since=YYYY-MM-DD: referrers by new customers (first adds)."""
        params = LeaderboardQuerySerializer(
            data=request.query_params, context=self.get_serializer_context()
        )
        params.is_valid(raise_exception=True)
        corp: Corp = params.validated_data["corp"]
        since: date | None = params.validated_data.get("since")
        rows = referrer_leaderboard(
            corp=corp,
            since=since,
            limit=params.validated_data["limit"],
        )
        return Response(
            {
                "corp": corp.corp_id,
                "results": [
                    {
                        "referrer": row["referrer__external_userid"],
                        "name": row["referrer__name"],
                        "new_customers": row["new_customers"],
                    }
                    for row in rows
                ],
            }
        )
