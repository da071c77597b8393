"""FilterSets of the channels domain: one per list, shared by the API, pages and exports.
An invalid value (unknown choice, bad date, "maybe" for a boolean) is a form error, which the
API answers with 400 rather than ignoring the filter."""

from __future__ import annotations

from collections.abc import Callable

import django_filters
from django import forms
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils.translation import gettext_lazy as _

from channels_app.models import (
    STATE_KIND_CHOICES,
    Attribution,
    Channel,
    ChannelCost,
    LiveCode,
    ReferralCode,
    Scan,
)
from contacts.filters import LocalDayFilter

STATE_KINDS = STATE_KIND_CHOICES


class StrictBooleanField(forms.NullBooleanField):
    """Empty means "not filtered"; anything but true/false/1/0 is an error, not a silent no-op
    (forms.NullBooleanField turns unknown values into None)."""

    def to_python(self, value):
        if value in (None, ""):
            return None
        if str(value).lower() in ("true", "1"):
            return True
        if str(value).lower() in ("false", "0"):
            return False
        raise forms.ValidationError(_("Use true or false."), code="invalid")


class BooleanFilter(django_filters.BooleanFilter):
    field_class = StrictBooleanField

    def __init__(self, *args, **kwargs) -> None:
        # The select widget maps unknown values to None before the field sees them.
        kwargs.setdefault("widget", forms.TextInput)
        super().__init__(*args, **kwargs)


def date_range(lower: django_filters.Filter, upper: django_filters.Filter) -> Callable:
    """Add ?from= and ?to= (Python keywords, so not declarable as class attributes)."""

    def decorate(filterset: type[django_filters.FilterSet]) -> type[django_filters.FilterSet]:
        filterset.base_filters = {**filterset.base_filters, "from": lower, "to": upper}
        return filterset

    return decorate


def _live_code_q(prefix: str, value: str) -> Q:
    """A live code named by id or by slug (a slug may be all digits, so both are tried)."""
    by_slug = Q(**{f"{prefix}slug": value})
    # ASCII digits only ("²".isdigit() is true), and short enough for a 64-bit id.
    if value.isascii() and value.isdigit() and len(value) <= 18:
        return by_slug | Q(**{f"{prefix}pk": int(value)})
    return by_slug


class ChannelFilter(django_filters.FilterSet):
    corp = django_filters.CharFilter(field_name="corp__corp_id", label=_("corp ID"))
    channel_type = django_filters.ChoiceFilter(choices=Channel.Type.choices)
    category = django_filters.CharFilter()
    is_active = BooleanFilter()
    code = django_filters.CharFilter()
    search = django_filters.CharFilter(method="filter_search", label=_("name or code contains"))

    class Meta:
        model = Channel
        fields = ["corp", "channel_type", "category", "is_active", "code"]

    def filter_search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(Q(name__icontains=value) | Q(code__icontains=value))


@date_range(
    # Costs whose range overlaps [from, to]: ends on or after `from`, starts on or before `to`.
    django_filters.DateFilter(field_name="end_date", lookup_expr="gte", label=_("from")),
    django_filters.DateFilter(field_name="start_date", lookup_expr="lte", label=_("to")),
)
class ChannelCostFilter(django_filters.FilterSet):
    corp = django_filters.CharFilter(field_name="corp__corp_id", label=_("corp ID"))
    channel = django_filters.CharFilter(field_name="channel__code", label=_("channel code"))

    class Meta:
        model = ChannelCost
        fields = ["corp", "channel"]


class LiveCodeFilter(django_filters.FilterSet):
    corp = django_filters.CharFilter(field_name="corp__corp_id", label=_("corp ID"))
    channel = django_filters.CharFilter(field_name="channel__code", label=_("channel code"))
    mode = django_filters.ChoiceFilter(choices=LiveCode.Mode.choices)
    status = django_filters.ChoiceFilter(choices=LiveCode.Status.choices)
    strategy = django_filters.ChoiceFilter(choices=LiveCode.Strategy.choices)
    search = django_filters.CharFilter(method="filter_search", label=_("name, slug or state"))

    class Meta:
        model = LiveCode
        fields = ["corp", "channel", "mode", "status", "strategy"]

    def filter_search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(
            Q(name__icontains=value) | Q(slug__icontains=value) | Q(state__icontains=value)
        )


@date_range(
    LocalDayFilter(field_name="created_at", label=_("from (local day)")),
    LocalDayFilter(field_name="created_at", upper=True, label=_("to (local day)")),
)
class ScanFilter(django_filters.FilterSet):
    corp = django_filters.CharFilter(field_name="corp__corp_id", label=_("corp ID"))
    live_code = django_filters.CharFilter(
        method="filter_live_code", label=_("live code id or slug")
    )
    channel = django_filters.CharFilter(field_name="live_code__channel__code")
    device = django_filters.ChoiceFilter(choices=Scan.Device.choices)
    utm_source = django_filters.CharFilter()
    utm_campaign = django_filters.CharFilter()
    has_add = BooleanFilter(method="filter_has_add", label=_("led to an add"))

    class Meta:
        model = Scan
        fields = ["corp", "live_code", "channel", "device", "utm_source", "utm_campaign"]

    def filter_live_code(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(_live_code_q("live_code__", value))

    def filter_has_add(self, queryset: QuerySet, name: str, value: bool) -> QuerySet:
        added = Exists(Attribution.objects.filter(scan=OuterRef("pk")))
        return queryset.filter(added if value else ~added)


@date_range(
    LocalDayFilter(field_name="added_at", label=_("from (local day)")),
    LocalDayFilter(field_name="added_at", upper=True, label=_("to (local day)")),
)
class AttributionFilter(django_filters.FilterSet):
    corp = django_filters.CharFilter(field_name="corp__corp_id", label=_("corp ID"))
    channel = django_filters.CharFilter(field_name="channel__code", label=_("channel code"))
    live_code = django_filters.CharFilter(
        method="filter_live_code", label=_("live code id or slug")
    )
    state_kind = django_filters.ChoiceFilter(choices=STATE_KINDS)
    is_first_touch = BooleanFilter()
    staff = django_filters.CharFilter(field_name="staff__userid", label=_("staff UserID"))
    customer = django_filters.CharFilter(
        field_name="external_contact__external_userid", label=_("external UserID")
    )

    class Meta:
        model = Attribution
        fields = ["corp", "channel", "live_code", "state_kind", "is_first_touch"]

    def filter_live_code(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(_live_code_q("live_code__", value))


class ReferralCodeFilter(django_filters.FilterSet):
    corp = django_filters.CharFilter(field_name="corp__corp_id", label=_("corp ID"))
    live_code = django_filters.CharFilter(
        method="filter_live_code", label=_("live code id or slug")
    )
    referrer = django_filters.CharFilter(
        field_name="referrer__external_userid", label=_("referrer external UserID")
    )

    class Meta:
        model = ReferralCode
        fields = ["corp", "live_code", "referrer"]

    def filter_live_code(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(_live_code_q("live_code__", value))
