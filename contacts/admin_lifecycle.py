"""Admin for the customer lifecycle: conversions (with a CSV import page) and the audit log
(with the personal-data page: export a customer's data, erase it). The pages call services."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from contacts.compliance import contact_erase, contact_export, external_contact_find
from contacts.conversions import (
    CSV_COLUMNS,
    FIELDS,
    MAX_ROWS_PER_CSV,
    ConversionImportError,
    conversions_import_csv,
)
from contacts.models import (
    AuditLog,
    ConversionEvent,
    ExternalContact,
    FollowRelation,
    TimelineEvent,
)
from scrm import days
from scrm.csv_import import CsvFileError, csv_table_read
from scrm.wecom import tenancy
from scrm.wecom.admin import ReadOnlyAdmin, local_time_column
from scrm.wecom.admin_tenancy import CREDENTIALS, WRITE, CorpScopedAdmin
from scrm.wecom.models import CallbackEvent, Corp


class ConversionCsvForm(forms.Form):
    file = forms.FileField(label=gettext_lazy("CSV file"))


# -- conversions -------------------------------------------------------------------------------


class MatchedFilter(admin.SimpleListFilter):
    title = gettext_lazy("matched to a customer")
    parameter_name = "matched"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [("yes", gettext_lazy("Yes")), ("no", gettext_lazy("No"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() in ("yes", "no"):
            return queryset.filter(external_contact__isnull=self.value() == "no")
        return queryset


@admin.register(ConversionEvent)
class ConversionEventAdmin(CorpScopedAdmin):
    personal_fields = ("external_contact", "unionid", "note")  # the note: free text
    list_display = [local_time_column(ConversionEvent, "occurred_at"), "kind", "custom_name",
                    "amount", "currency", "external_id", "external_contact",
                    local_time_column(ConversionEvent, "matched_at"), "corp"]  # fmt: skip
    list_filter = ["kind", MatchedFilter, "corp"]
    search_fields = ["external_id", "external_userid", "unionid"]
    list_select_related = ["corp", "external_contact"]
    date_hierarchy = "occurred_at"

    # Conversions come from the business's systems (API, CSV): read-only here, never edited.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_import_permission(self, request: HttpRequest) -> bool:
        return self.may_write_anywhere(request)

    def get_urls(self) -> list[URLPattern]:
        name = f"{self.opts.app_label}_{self.opts.model_name}_import"
        view = self.admin_site.admin_view(self.import_view)
        return [path("import/", view, name=name), *super().get_urls()]

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> Any:
        extra = {"has_import_permission": self.has_import_permission(request)}
        return super().changelist_view(request, {**(extra_context or {}), **extra})

    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_import_permission(request):
            raise PermissionDenied
        form = ConversionCsvForm(request.POST or None, request.FILES or None)
        errors: list[dict[str, Any]] = []
        if request.method == "POST" and form.is_valid():
            errors = _rows_of_other_corps(request, form.cleaned_data["file"])
        if request.method == "POST" and form.is_valid() and not errors:
            try:
                result = conversions_import_csv(file=form.cleaned_data["file"], actor=request.user)
            except ConversionImportError as exc:
                errors = [{**e.as_dict(), "line": e.row} for e in exc.errors]
            else:
                message = _(
                    "%(created)d conversions imported (%(matched)d matched to customers, "
                    "%(unmatched)d not yet); %(duplicates)d were already there."
                )
                self.message_user(request, message % result.as_dict(), messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:contacts_conversionevent_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Import conversions from CSV"),
            "form": form,
            "errors": errors,
            "columns": FIELDS,
            "max_rows": MAX_ROWS_PER_CSV,
        }
        return TemplateResponse(request, "admin/contacts/conversionevent/import.html", context)


def _rows_of_other_corps(request: HttpRequest, upload: Any) -> list[dict[str, Any]]:
    """The file's rows naming a corp the user may not write (each row names its corp): the
    whole file is refused with them, as for any invalid row, and nothing is imported."""
    try:
        table = csv_table_read(upload, columns=CSV_COLUMNS, max_rows=MAX_ROWS_PER_CSV, strict=True)
    except CsvFileError:
        return []  # the service reports what is wrong with the file
    finally:
        upload.seek(0)
    writable = set(tenancy.corps_for_user(request.user, WRITE).values_list("corp_id", flat=True))
    message = _("Unknown corp.")  # as for a corp that does not exist: nothing disclosed
    return [
        {"line": number, "field": "corp_id", "message": message}
        for number, cells in table.rows
        if (corp_id := (cells.get("corp_id") or "").strip()) and corp_id not in writable
    ]


# -- audit log and personal data ---------------------------------------------------------------


class PersonalDataForm(forms.Form):
    corp = forms.ModelChoiceField(
        queryset=Corp.objects.order_by("corp_id"), label=gettext_lazy("corp")
    )
    external_userid = forms.CharField(max_length=64, label=gettext_lazy("external UserID"))

    def __init__(self, *args: Any, corps: QuerySet[Corp], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["corp"].queryset = corps.order_by("corp_id")
        corps = list(corps.order_by("corp_id")[:2])
        if len(corps) == 1:
            self.fields["corp"].initial = corps[0].pk

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("corp") and data.get("external_userid"):
            self.contact = external_contact_find(
                corp=data["corp"], external_userid=data["external_userid"]
            )
            if self.contact is None:
                message = _("No customer with this external UserID in this corp.")
                raise forms.ValidationError(message)
        return data


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    read_action = WRITE  # who exported or erased whom: for the corp's operators and admins
    list_display = [local_time_column(AuditLog, "created_at"), "actor_label", "action", "target",
                    "corp"]  # fmt: skip
    list_filter = ["action", "corp"]
    search_fields = ["target", "actor_label"]
    list_select_related = ["corp"]
    date_hierarchy = "created_at"

    def get_urls(self) -> list[URLPattern]:
        name = f"{self.opts.app_label}_{self.opts.model_name}_pipl"
        view = self.admin_site.admin_view(self.personal_data_view)
        return [path("pipl/", view, name=name), *super().get_urls()]

    def personal_data_view(self, request: HttpRequest) -> HttpResponse:
        """Find a customer; Export downloads everything held (JSON), Erase asks to confirm.
        Exporting is for operators and admins (managers see no personal data); erasing, which
        cannot be undone, for the corp's admins. The corps offered are those."""
        if not self.may_write_anywhere(request):
            raise PermissionDenied
        action = request.POST.get("action", "")
        erase = action in ("erase", "erase_confirmed")
        if erase and not tenancy.may_anywhere(request.user, CREDENTIALS):
            raise PermissionDenied
        corps = tenancy.corps_for_user(request.user, CREDENTIALS if erase else WRITE)
        form = PersonalDataForm(request.POST if action else None, corps=corps)
        if action and form.is_valid():
            contact = form.contact
            if action == "export":
                return self._export(request, contact)
            if erase:
                if contact.erased_at is not None:
                    message = _(
                        "The personal data of this customer (#%(id)d) was already erased on "
                        "%(date)s. Nothing was changed."
                    ) % {"id": contact.pk,
                         "date": days.local_display(contact.erased_at, contact.corp)}  # fmt: skip
                    self.message_user(request, message, messages.WARNING)
                elif action == "erase":
                    return self._confirm_erase(request, form, contact)
                else:
                    contact_erase(contact=contact, actor=request.user)
                    message = _("The personal data of customer #%(id)d was erased.")
                    self.message_user(request, message % {"id": contact.pk}, messages.SUCCESS)
                    return HttpResponseRedirect(reverse("admin:contacts_auditlog_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Personal data: export or erase a customer's data"),
            "form": form,
            "can_erase": tenancy.may_anywhere(request.user, CREDENTIALS),
        }
        return TemplateResponse(request, "admin/contacts/auditlog/pipl.html", context)

    def _export(self, request: HttpRequest, contact: ExternalContact) -> HttpResponse:
        data = contact_export(contact=contact, actor=request.user)
        response = HttpResponse(
            json.dumps(data, ensure_ascii=False, indent=2),
            content_type="application/json; charset=utf-8",
        )
        filename = f"customer-{contact.pk}.json"  # the row id: no personal data in the name
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response

    def _confirm_erase(
        self, request: HttpRequest, form: PersonalDataForm, contact: ExternalContact
    ) -> HttpResponse:
        querysets = [
            FollowRelation.objects.filter(external_contact=contact),
            ConversionEvent.objects.filter(external_contact=contact),
            TimelineEvent.objects.filter(external_contact=contact),
            CallbackEvent.objects.filter(
                corp_id=contact.corp_id, external_user_id=contact.external_userid
            ),
        ]
        counts = {str(qs.model._meta.verbose_name_plural): qs.count() for qs in querysets}
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Erase this customer's personal data?"),
            "contact": contact,
            "counts": counts,
            "form": form,
        }
        return TemplateResponse(request, "admin/contacts/auditlog/pipl_confirm_erase.html", context)
