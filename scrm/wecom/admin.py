from __future__ import annotations

from collections.abc import Callable
from datetime import tzinfo

from django import forms
from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from scrm import days
from scrm.wecom.models import ApiCall, CallbackEvent, Corp
from scrm.wecom.secret_lookups import lookup_names_secret
from scrm.wecom.services import callback_events_retry

SECRET_FIELDS = ("secret", "callback_token", "encoding_aes_key")


def _row_corp_zone(obj: Model) -> tzinfo:
    return days.corp_zone(obj.corp_id)


def local_time_column(
    model: type[Model],
    field: str,
    *,
    zone_of: Callable[[Model], tzinfo] = _row_corp_zone,
) -> Callable[[Model], str]:
    """A list column showing the datetime `field` (a__b follows relations) at the local time
    of the row's corp, with the zone's abbreviation, headed by the field's name and sortable
    by it. The corp's zone comes from scrm.days' table of corps, not a query per row."""
    names = field.split("__")
    target = model
    for name in names[:-1]:
        target = target._meta.get_field(name).related_model
    description = target._meta.get_field(names[-1]).verbose_name

    @admin.display(description=description, ordering=field)
    def column(obj: Model) -> str:
        value = obj
        for name in names:
            value = getattr(value, name, None)
        return days.local_display(value, zone_of(obj))

    column.__name__ = f"{field}_local"
    return column


class CorpForm(forms.ModelForm):
    """Secrets are write-only: never rendered back; left blank on edit, they stay unchanged."""

    class Meta:
        model = Corp
        fields = [
            "corp_id",
            "name",
            "secret",
            "agent_id",
            "callback_token",
            "encoding_aes_key",
            "time_zone",
            "is_active",
        ]
        widgets = {name: forms.PasswordInput(render_value=False) for name in SECRET_FIELDS}

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            for name in SECRET_FIELDS:
                self.fields[name].required = False
                self.fields[name].help_text = _("Set. Leave blank to keep the current value.")

    def _post_clean(self) -> None:
        # Before the model is built from cleaned_data: blank secrets keep the stored ones.
        if self.instance.pk:
            stored = Corp.objects.get(pk=self.instance.pk)
            for name in SECRET_FIELDS:
                if not self.cleaned_data.get(name):
                    self.cleaned_data[name] = getattr(stored, name)
        super()._post_clean()


@admin.register(Corp)
class CorpAdmin(admin.ModelAdmin):
    form = CorpForm
    list_display = ["corp_id", "name", "time_zone", "is_active", "callback_path",
                    local_time_column(Corp, "created_at", zone_of=days.zone)]  # fmt: skip
    search_fields = ["corp_id", "name"]
    readonly_fields = ["callback_path", "created_at"]

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        # Never a filter on a secret: each answer would tell one more character of it. Refused
        # here too, not only by scrm.wecom.secret_lookups' middleware: Django answers 400.
        if lookup_names_secret(Corp, lookup):
            return False
        return super().lookup_allowed(lookup, value, request)

    @admin.display(description=_("callback URL path"))
    def callback_path(self, obj: Corp) -> str:
        return f"/wecom/callback/{obj.corp_id}/" if obj.corp_id else ""


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(CallbackEvent)
class CallbackEventAdmin(ReadOnlyAdmin):
    list_display = [
        local_time_column(CallbackEvent, "received_at"),
        "corp",
        "change_type",
        "user_id",
        "external_user_id",
        local_time_column(CallbackEvent, "event_time"),
        "status",
        "attempts",
        "duplicates",
    ]
    list_filter = ["status", "event", "change_type", "corp"]
    search_fields = ["external_user_id", "user_id", "dedup_key"]
    list_select_related = ["corp"]
    date_hierarchy = "received_at"
    actions = ["retry"]
    fields = [
        "corp",
        "dedup_key",
        "event",
        "change_type",
        "user_id",
        "external_user_id",
        "event_time",
        "payload",
        "status",
        "attempts",
        "duplicates",
        "last_error",
        "received_at",
        "processed_at",
        "raw_body",
    ]

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("wecom.view_callbackevent") and request.user.is_staff

    @admin.action(permissions=["retry"], description=_("Retry the selected events"))
    def retry(self, request: HttpRequest, queryset: QuerySet[CallbackEvent]) -> None:
        count = callback_events_retry(event_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, _("%(n)d events queued again.") % {"n": count}, messages.SUCCESS)


@admin.register(ApiCall)
class ApiCallAdmin(ReadOnlyAdmin):
    list_display = [
        local_time_column(ApiCall, "created_at"),
        "corp",
        "method",
        "endpoint",
        "http_status",
        "errcode",
        "errmsg",
        "items_returned",
        "duration_ms",
        "attempt",
    ]
    list_filter = ["endpoint", "errcode", "http_status", "corp"]
    search_fields = ["endpoint", "errmsg"]
    list_select_related = ["corp"]
    date_hierarchy = "created_at"
