"""The customer list seen from the channels: each customer's first-add channel and live code,
and a filter by channel. The first source points at its add, whose Attribution (this app's)
names them: contacts must not import channels_app, so this app extends contacts' customer
admin with the names, read in the changelist's own query (joins, no query per row)."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from channels_app.models import Attribution, Channel, LiveCode
from channels_app.selectors import customers_with_first_source_names
from channels_app.state import LANDING_SLOT_REGEX
from contacts.admin import ExternalContactAdmin, FirstSourceInline, FirstSourceStateFilter
from contacts.models import ExternalContact, FirstSource
from scrm.wecom import tenancy

NO_CHANNEL = "none"


class FirstChannelFilter(admin.SimpleListFilter):
    title = _("first-add channel")
    parameter_name = "first_channel"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        channels = tenancy.scope(Channel.objects.select_related("corp"), request.user)
        channels = channels.order_by("corp__name", "code")
        return [(NO_CHANNEL, _("No channel")),
                *((str(channel.pk), str(channel)) for channel in channels)]  # fmt: skip

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value == NO_CHANNEL:  # a first source whose add no channel's code brought
            return queryset.filter(first_source__isnull=False).exclude(
                first_source__add_event__attribution__channel__isnull=False
            )
        if value is not None and value.isdigit():
            return queryset.filter(first_source__add_event__attribution__channel_id=int(value))
        return queryset


class FirstStateFilter(FirstSourceStateFilter):
    """The first state filter without the landing slots' states: there is one per slot, they
    mean nothing to an operator, and the channel and live code filters already find those
    customers."""

    def first_sources(self, request: HttpRequest) -> QuerySet[FirstSource]:
        return super().first_sources(request).exclude(state__regex=LANDING_SLOT_REGEX)


class FirstLiveCodeFilter(admin.SimpleListFilter):
    """Customers first added through one live code: the report pages' drill-down from a live
    code's staff member to the customers. Codes are many, so the sidebar offers none to pick:
    the filter shows only while in use (named, with its "All" to leave it)."""

    title = _("first-add live code")
    parameter_name = "first_live_code"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        value = self.value()
        if value is None or not value.isdigit():
            return []
        # A code that is gone still filters (to nobody): an unapplied filter would show all.
        codes = tenancy.scope(LiveCode.objects.filter(pk=int(value)), request.user)
        name = codes.values_list("name", flat=True).first()
        return [(value, name or value)]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value is not None and value.isdigit():
            return queryset.filter(first_source__add_event__attribution__live_code_id=int(value))
        return queryset


class FirstSourceNamesInline(FirstSourceInline):
    """The first source with the live code and channel by name, not by id."""

    fields = ["added_at", "staff", "add_way_display", "state", "first_live_code", "first_channel",
              "backfilled"]  # fmt: skip
    readonly_fields = fields

    def _attribution(self, obj: FirstSource) -> Attribution | None:
        return (
            Attribution.objects.filter(add_event_id=obj.add_event_id)
            .select_related("live_code", "channel")
            .first()
        )

    @admin.display(description=_("live code"))
    def first_live_code(self, obj: FirstSource) -> str:
        attribution = self._attribution(obj)
        return attribution.live_code.name if attribution and attribution.live_code else "—"

    @admin.display(description=_("channel"))
    def first_channel(self, obj: FirstSource) -> str:
        attribution = self._attribution(obj)
        return str(attribution.channel) if attribution and attribution.channel else "—"


class CustomerSourceAdmin(ExternalContactAdmin):
    list_display = [
        "__str__",
        "first_added_at",
        "first_channel",
        "first_live_code",
        "first_add_way",
        "first_staff",
        "first_state",
        "external_userid",
        "corp",
    ]
    list_filter = [
        FirstChannelFilter,
        FirstLiveCodeFilter,
        *(
            FirstStateFilter if spec is FirstSourceStateFilter else spec
            for spec in ExternalContactAdmin.list_filter
        ),
    ]

    def get_inlines(self, request: HttpRequest, obj: ExternalContact | None) -> list:
        return [
            FirstSourceNamesInline if inline is FirstSourceInline else inline
            for inline in super().get_inlines(request, obj)
        ]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return customers_with_first_source_names(super().get_queryset(request))

    @admin.display(description=_("first-add channel"), ordering="first_channel_name")
    def first_channel(self, obj: ExternalContact) -> str:
        if not obj.first_channel_name:
            return "—"
        return f"{obj.first_channel_name} ({obj.first_channel_code})"

    @admin.display(description=_("first-add live code"), ordering="first_live_code_name")
    def first_live_code(self, obj: ExternalContact) -> str:
        return obj.first_live_code_name or "—"


admin.site.unregister(ExternalContact)
admin.site.register(ExternalContact, CustomerSourceAdmin)
