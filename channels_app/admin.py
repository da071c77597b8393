"""Operators' screens for channels and live codes. Thin: lists read the selectors' annotated
querysets; actions and pages call the publishing, import and referral services."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.http import content_disposition_header
from django.utils.text import capfirst
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from channels_app.forms import (
    AttachmentRowsForm,
    CorpChoiceForm,
    CsvUploadForm,
    LeaderboardForm,
    PoolMemberFormSet,
    ReferralCodeForm,
    TagPickerAdminMixin,
    pool_member_choices,
)
from channels_app.models import (
    Attribution,
    Channel,
    ChannelCost,
    DailyCounter,
    LiveCode,
    PoolMember,
    ReferralCode,
    Scan,
    ScheduleOverride,
    ScheduleRule,
    Store,
)
from channels_app.selectors import (
    channels_with_today,
    live_codes_picker_order,
    live_codes_with_today,
    referrer_leaderboard,
)
from channels_app.services import imports
from channels_app.services.costs import channel_cost_create
from channels_app.services.live_codes import (
    WECOM_OWNED,
    live_code_create,
    live_code_staffing_changed,
    live_code_update,
)
from channels_app.services.publishing import (
    PublishError,
    live_code_publish,
    live_codes_import,
    live_codes_status_set,
)
from channels_app.services.referrals import referral_code_get_or_create, referral_link
from scrm import days
from scrm.csv_import import csv_template
from scrm.wecom import tenancy
from scrm.wecom.admin import ReadOnlyAdmin, local_time_column
from scrm.wecom.admin_tenancy import READ, WRITE, CorpScopedAdmin, CorpScopedInline
from scrm.wecom.client import WeComError


def _base_url(request: HttpRequest) -> str:
    """Where this site is reached, for the landing links encoded in printed QR codes."""
    return request.build_absolute_uri("/").rstrip("/")


def _page(model_admin: admin.ModelAdmin, request: HttpRequest, template: str,
          **context: object) -> TemplateResponse:  # fmt: skip
    base = {**model_admin.admin_site.each_context(request), "opts": model_admin.model._meta}
    return TemplateResponse(request, f"admin/channels_app/{template}", {**base, **context})


def _log(request: HttpRequest, objects: list, flag: int, message: str) -> None:
    """Admin history rows (who did what), as the standard add and change views write."""
    if objects:
        LogEntry.objects.log_actions(request.user.pk, objects, flag, change_message=message)


def _csv_download(text: str, filename: str) -> HttpResponse:
    # With a BOM, Excel opens the UTF-8 file with the Chinese headers intact.
    response = HttpResponse("\ufeff" + text, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = content_disposition_header(True, filename)
    return response


def _count_column(name: str, description: str) -> Callable:
    """A list column showing one of the selector's annotations, sortable by it."""

    @admin.display(description=description, ordering=name)
    def column(obj: models.Model) -> object:
        return getattr(obj, name)

    column.__name__ = name
    return column


scans_today = _count_column("scans_today", _("scans today"))
adds_today = _count_column("adds_today", _("adds today"))
live_code_count = _count_column("live_code_count", _("live codes"))


# -- channels and costs ------------------------------------------------------------------------


class ChannelCostFormSet(forms.BaseInlineFormSet):
    def save_new(self, form: forms.ModelForm, commit: bool = True) -> ChannelCost:
        cost = super().save_new(form, commit=False)  # the channel set, nothing written
        return channel_cost_create(channel=cost.channel, start_date=cost.start_date,
                                   end_date=cost.end_date, amount=cost.amount,
                                   currency=cost.currency, note=cost.note)  # fmt: skip


class ChannelCostInline(CorpScopedInline, admin.TabularInline):
    model = ChannelCost
    formset = ChannelCostFormSet
    fields = ["start_date", "end_date", "amount", "currency", "note"]
    extra = 0


@admin.register(Channel)
class ChannelAdmin(CorpScopedAdmin):
    list_display = ["name", "code", "channel_type", "category", "is_active",
                    live_code_count, scans_today, adds_today]  # fmt: skip
    list_filter = ["channel_type", "category", "is_active", "corp"]
    search_fields = ["name", "code"]
    list_select_related = ["corp"]
    readonly_fields = ["created_at"]
    fieldsets = [
        (None, {"fields": ["corp", "name", "code", "channel_type", "category", "is_active"]}),
        (_("UTM"), {"fields": ["utm_source", "utm_medium", "utm_campaign", "utm_content"]}),
        (capfirst(_("welcome message")), {"fields": ["welcome_text", "welcome_attachments"]}),
        (None, {"fields": ["notes", "created_at"]}),
    ]
    inlines = [ChannelCostInline]
    actions = ["import_costs"]
    form = AttachmentRowsForm

    def get_queryset(self, request: HttpRequest) -> QuerySet[Channel]:
        return self.scoped(request, channels_with_today()).order_by(
            *(self.get_ordering(request) or ["corp", "code"])
        )

    def save_formset(self, request: HttpRequest, form: forms.ModelForm, formset: object,
                     change: bool) -> None:  # fmt: skip
        for inline_form in formset.forms:  # costs carry the channel's corp
            inline_form.instance.corp_id = form.instance.corp_id
        super().save_formset(request, form, formset, change)

    def get_urls(self) -> list:
        view = self.admin_site.admin_view(self.import_costs_view)
        return [path("import-costs/", view, name="channels_app_channel_import_costs"),
                *super().get_urls()]  # fmt: skip

    def has_import_costs_permission(self, request: HttpRequest) -> bool:
        return self.may_write_anywhere(request)

    @admin.action(permissions=["import_costs"], description=_("Import costs from CSV"))
    def import_costs(self, request: HttpRequest, queryset: QuerySet[Channel]) -> HttpResponse:
        """Opens the import page with a template CSV listing the selected channels."""
        ids = ",".join(str(pk) for pk in queryset.values_list("pk", flat=True))
        url = reverse("admin:channels_app_channel_import_costs")
        return HttpResponseRedirect(f"{url}?channels={ids}")

    def import_costs_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_import_costs_permission(request):
            raise PermissionDenied
        ids = [int(pk) for pk in request.GET.get("channels", "").split(",") if pk.isdigit()]
        channels = self.scoped(request, Channel.objects.filter(pk__in=ids), WRITE)
        selected = list(channels.order_by("code"))
        if request.GET.get("template"):
            rows = "".join(f"{channel.code},,,,CNY,\r\n" for channel in selected)
            return _csv_download(csv_template(imports.COST_COLUMNS) + rows, "costs.csv")
        form = CsvUploadForm(request.POST or None, request.FILES or None,
                             corps=tenancy.corps_for_user(request.user, WRITE))  # fmt: skip
        result = None
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            result = imports.channel_costs_import_csv(corp=data["corp"], file=data["file"])
            if result.ok:
                _log(request, result.created, ADDITION, gettext("Imported from CSV."))
                count = len(result.created)
                text = ngettext("%(n)d cost imported.", "%(n)d costs imported.", count)
                self.message_user(request, text % {"n": count}, messages.SUCCESS)
        return _page(self, request, "cost_import.html", title=_("Import costs from CSV"),
                     form=form, result=result, selected=selected)  # fmt: skip


@admin.register(ChannelCost)
class ChannelCostAdmin(CorpScopedAdmin):
    list_display = ["channel", "start_date", "end_date", "amount", "currency", "note",
                    local_time_column(ChannelCost, "created_at")]  # fmt: skip
    list_filter = [("channel", admin.RelatedOnlyFieldListFilter), "start_date", "currency", "corp"]
    search_fields = ["channel__name", "channel__code", "note"]
    list_select_related = ["channel", "corp"]
    date_hierarchy = "start_date"
    autocomplete_fields = ["channel"]
    fields = ["channel", "start_date", "end_date", "amount", "currency", "note"]

    def save_model(self, request: HttpRequest, obj: ChannelCost, form: forms.ModelForm,
                   change: bool) -> None:  # fmt: skip
        obj.corp_id = obj.channel.corp_id
        if change:
            super().save_model(request, obj, form, change)
            return
        created = channel_cost_create(channel=obj.channel, start_date=obj.start_date,
                                      end_date=obj.end_date, amount=obj.amount,
                                      currency=obj.currency, note=obj.note)  # fmt: skip
        # The admin's history and redirect use `obj`: it takes the new row's identity.
        obj.pk, obj.created_at = created.pk, created.created_at
        obj._state.adding, obj._state.db = False, created._state.db


# -- live codes --------------------------------------------------------------------------------


class PoolMemberInline(CorpScopedInline, admin.TabularInline):
    model = PoolMember
    formset = PoolMemberFormSet
    fields = ["staff", "weight", "daily_cap", "is_backup", "is_enabled"]
    autocomplete_fields = ["staff"]
    extra = 0


class PoolScopedInline(CorpScopedInline, admin.TabularInline):
    """Shifts, special dates and stores choose their members among the code's own pool."""

    extra = 0
    formfield_overrides = {models.ManyToManyField: {"widget": forms.CheckboxSelectMultiple}}
    live_code_id: int | None = None

    def get_formset(self, request: HttpRequest, obj: LiveCode | None = None, **kwargs: object):
        self.live_code_id = obj.pk if obj else None  # inline instances are made per request
        return super().get_formset(request, obj, **kwargs)

    def formfield_for_manytomany(self, db_field: models.Field, request: HttpRequest,
                                 **kwargs: object) -> forms.Field:  # fmt: skip
        field = super().formfield_for_manytomany(db_field, request, **kwargs)
        return pool_member_choices(field, self.live_code_id)


class ScheduleRuleInline(PoolScopedInline):
    model = ScheduleRule
    fields = ["name", "weekdays", "start_time", "end_time", "members"]


class ScheduleOverrideInline(PoolScopedInline):
    model = ScheduleOverride
    fields = ["date", "closed", "start_time", "end_time", "members", "note"]


class StoreInline(PoolScopedInline):
    model = Store
    fields = ["code", "name", "region", "members"]


@admin.register(LiveCode)
class LiveCodeAdmin(TagPickerAdminMixin, CorpScopedAdmin):
    list_display = ["name", "channel", "mode", "status", scans_today, adds_today,
                    "assigned_of_cap", "is_published", "sync_error"]  # fmt: skip
    list_filter = ["mode", "status", "strategy", "channel", "corp"]
    search_fields = ["name", "slug", "state"]
    list_select_related = ["corp", "channel"]
    autocomplete_fields = ["channel"]
    readonly_fields = ["status", "qr_preview", "landing_link", *WECOM_OWNED, "created_at",
                       "updated_at"]  # fmt: skip
    fieldsets = [
        (None, {"fields": ["corp", "channel", "name", "slug", "mode", "status"]}),
        (_("QR code"), {"fields": ["qr_preview", "landing_link"]}),
        (_("Landing page"), {"fields": ["public_title", "language"]}),
        (capfirst(_("assignment")), {"fields": ["strategy", "penalize_slow_reply", "daily_target",
                                      "total_target"]}),
        (_("Adding"), {"fields": ["skip_verify", "auto_accept_from", "auto_accept_to",
                                  "is_exclusive", "tag_ids"]}),
        (capfirst(_("welcome message")), {"fields": ["welcome_text", "welcome_attachments"]}),
        (_("In WeCom"), {"fields": [*WECOM_OWNED, "created_at", "updated_at"],
                         "classes": ["collapse"]}),
    ]  # fmt: skip
    inlines = [PoolMemberInline, ScheduleRuleInline, ScheduleOverrideInline, StoreInline]
    actions = ["publish", "pause", "archive", "download_png_zip", "download_poster_zip"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[LiveCode]:
        return self.scoped(request, live_codes_with_today()).order_by(
            *(self.get_ordering(request) or ["-created_at"])
        )

    def get_search_results(self, request: HttpRequest, queryset: QuerySet,
                           search_term: str) -> tuple[QuerySet, bool]:  # fmt: skip
        """The live-code picker (the autocomplete of referral codes, rules...) lists the top
        channels' codes first (the quality ranking; per corp, switchable)."""
        queryset, distinct = super().get_search_results(request, queryset, search_term)
        match = getattr(request, "resolver_match", None)
        if match is not None and match.url_name == "autocomplete":
            corp_ids = tenancy.corps_for_user(request.user, READ).values_list("pk", flat=True)
            queryset = live_codes_picker_order(queryset, corp_ids=corp_ids)
        return queryset, distinct

    def get_readonly_fields(self, request: HttpRequest, obj: LiveCode | None = None) -> list:
        # A published code's corp and mode are what WeCom and printed posters rely on.
        fixed = ["corp", "mode"] if obj is not None and obj.published_at else []
        return [*super().get_readonly_fields(request, obj), *fixed]

    def save_model(self, request: HttpRequest, obj: LiveCode, form: forms.ModelForm,
                   change: bool) -> None:  # fmt: skip
        if change:
            changes = {name: form.cleaned_data[name] for name in form.changed_data}
            live_code_update(live_code=obj, changes=changes)
            return
        created = live_code_create(**form.cleaned_data)
        # The inline formsets were built on `obj`: it takes the new row's identity.
        obj.pk, obj.created_at, obj.updated_at = created.pk, created.created_at, created.updated_at
        obj._state.adding, obj._state.db = False, created._state.db

    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets: list,
                     change: bool) -> None:  # fmt: skip
        # The pool inline saves through live_code_pool_set (PoolMemberFormSet.save), which
        # re-syncs an active native code's WeCom list when the pool changed; shifts and special
        # dates change who is on duty too, under the same rule.
        super().save_related(request, form, formsets, change)
        live_code = form.instance
        schedules = [f for f in formsets if not isinstance(f, PoolMemberFormSet)]
        if change and any(formset.has_changed() for formset in schedules):
            live_code_staffing_changed(live_code=live_code)
        if change and live_code.status == LiveCode.Status.ACTIVE:
            text = gettext("Publish the code again to send other changes to WeCom.")
            self.message_user(request, text, messages.INFO)

    @admin.display(description=_("used / cap today"), ordering="cap_used_today")
    def assigned_of_cap(self, obj: LiveCode) -> str:
        """Scans assigned (landing) or adds (native) against the pool's summed daily caps."""
        return f"{obj.cap_used_today} / {obj.cap_today or '—'}"

    @admin.display(description=_("published"), boolean=True, ordering="published_at")
    def is_published(self, obj: LiveCode) -> bool:
        return obj.published_at is not None

    @admin.display(description=_("QR code"))
    def qr_preview(self, obj: LiveCode) -> str:
        if obj.pk is None:
            return gettext("Shown after saving.")
        if obj.published_at is None:  # a draft's QR would be printed before it works
            return gettext("Shown once the code is published.")
        if obj.mode == LiveCode.Mode.NATIVE and not obj.qr_code:
            return gettext("WeCom makes the QR code when the code is published.")
        url = reverse("admin:channels_app_livecode_png", args=[obj.pk])
        return format_html('<img src="{}?inline=1" alt="{}" width="180" height="180">', url,
                           obj.name)  # fmt: skip

    @admin.display(description=_("landing link"))
    def landing_link(self, obj: LiveCode) -> str:
        if obj.pk is None or obj.mode != LiveCode.Mode.LANDING:
            return "—"
        return format_html('<a href="/l/{0}/" target="_blank" rel="noopener">/l/{0}/</a>', obj.slug)

    # -- actions ------------------------------------------------------------------------------

    def _confirm(self, request: HttpRequest, queryset: QuerySet, action: str,
                 title: str) -> TemplateResponse:  # fmt: skip
        """The page an action shows before it calls WeCom or changes many rows."""
        return _page(self, request, "confirm_action.html", title=title, action=action,
                     objects=queryset, action_checkbox_name=ACTION_CHECKBOX_NAME)  # fmt: skip

    @admin.action(permissions=["change"], description=_("Publish to WeCom"))
    def publish(self, request: HttpRequest, queryset: QuerySet[LiveCode]) -> HttpResponse | None:
        if not request.POST.get("post"):
            return self._confirm(request, queryset, "publish", gettext("Publish to WeCom"))
        self._publish(request, queryset.select_related("corp", "channel"))
        return None

    def _publish(self, request: HttpRequest, live_codes: Iterable[LiveCode]) -> None:
        published = []
        for live_code in live_codes:
            try:
                published.append(live_code_publish(live_code=live_code))
            except PublishError as exc:
                self.message_user(request, f"{live_code}: {exc.message}", messages.ERROR)
            except WeComError as exc:  # network trouble or rate limit that outlasted retries
                self.message_user(request, f"{live_code}: {exc}", messages.ERROR)
        _log(request, published, CHANGE, gettext("Published to WeCom."))
        if published:
            text = ngettext("%(n)d code published.", "%(n)d codes published.", len(published))
            self.message_user(request, text % {"n": len(published)}, messages.SUCCESS)

    @admin.action(permissions=["change"], description=_("Pause"))
    def pause(self, request: HttpRequest, queryset: QuerySet[LiveCode]) -> HttpResponse | None:
        if not request.POST.get("post"):
            return self._confirm(request, queryset, "pause", gettext("Pause"))
        active = queryset.filter(status=LiveCode.Status.ACTIVE)
        return self._set_status(request, active, LiveCode.Status.PAUSED, queryset.count())

    @admin.action(permissions=["change"], description=_("Archive"))
    def archive(self, request: HttpRequest, queryset: QuerySet[LiveCode]) -> HttpResponse | None:
        if not request.POST.get("post"):
            return self._confirm(request, queryset, "archive", gettext("Archive"))
        return self._set_status(request, queryset, LiveCode.Status.ARCHIVED, queryset.count())

    def _set_status(self, request: HttpRequest, queryset: QuerySet[LiveCode], status: str,
                    selected: int) -> None:  # fmt: skip
        codes = live_codes_status_set(
            live_code_ids=list(queryset.values_list("pk", flat=True)), status=status
        )
        label = LiveCode.Status(status).label
        _log(request, codes, CHANGE, gettext("Status set to %(status)s.") % {"status": label})
        text = gettext("%(n)d of %(selected)d selected codes set to %(status)s.")
        self.message_user(request, text % {"n": len(codes), "selected": selected, "status": label})

    # -- the buttons of a code's own page ----------------------------------------------------

    STATUS_BUTTONS = ("publish", "pause", "archive")

    def status_view(self, request: HttpRequest, object_id: str, button: str) -> HttpResponse:
        """Publish, pause or archive one code from its change page (a POST, as the list's
        actions after their confirmation), then back to the page."""
        live_code = self.get_object(request, unquote(object_id))
        if live_code is None or button not in self.STATUS_BUTTONS:
            raise Http404  # another corp's code, as its change page
        if not self.has_change_permission(request, live_code):
            raise PermissionDenied
        codes = LiveCode.objects.filter(pk=live_code.pk)
        if button == "publish":
            self._publish(request, codes.select_related("corp", "channel"))
        elif button == "pause":
            self._set_status(request, codes.filter(status=LiveCode.Status.ACTIVE),
                             LiveCode.Status.PAUSED, 1)  # fmt: skip
        else:
            self._set_status(request, codes, LiveCode.Status.ARCHIVED, 1)
        return HttpResponseRedirect(
            reverse("admin:channels_app_livecode_change", args=[live_code.pk])
        )

    @admin.action(permissions=["view"], description=_("Download QR codes (PNG) as ZIP"))
    def download_png_zip(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._zip(request, queryset, "png")

    @admin.action(permissions=["view"], description=_("Download posters as ZIP"))
    def download_poster_zip(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._zip(request, queryset, "poster")

    def _zip(self, request: HttpRequest, queryset: QuerySet,
             kind: imports.QrKind) -> HttpResponse | None:  # fmt: skip
        try:
            export = imports.live_codes_export(live_codes=queryset, kind=kind,
                                               base_url=_base_url(request),
                                               published_only=True)  # fmt: skip
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
            return None
        if export.skipped:
            skipped = "; ".join(f"{code} ({reason})" for code, reason in export.skipped)
            text = gettext("Not in the ZIP: %(codes)s") % {"codes": skipped}
            self.message_user(request, text, messages.WARNING)
        if not export.filenames:
            return None
        response = HttpResponse(export.content, content_type="application/zip")
        filename = "live-code-posters.zip" if kind == "poster" else "live-code-qr.zip"
        response["Content-Disposition"] = content_disposition_header(True, filename)
        return response

    # -- pages ----------------------------------------------------------------------------------

    def get_urls(self) -> list:
        wrap, name = self.admin_site.admin_view, "channels_app_livecode"
        return [
            path("import-csv/", wrap(self.import_csv_view), name=f"{name}_import_csv"),
            path("import-wecom/", wrap(self.import_wecom_view), name=f"{name}_import_wecom"),
            path("<path:object_id>/qr.png", wrap(self.image_view), {"kind": "png"},
                 name=f"{name}_png"),
            path("<path:object_id>/poster.png", wrap(self.image_view), {"kind": "poster"},
                 name=f"{name}_poster"),
            path("<path:object_id>/status/<str:button>/", wrap(require_POST(self.status_view)),
                 name=f"{name}_status"),
            *super().get_urls(),
        ]  # fmt: skip

    def image_view(
        self, request: HttpRequest, object_id: str, kind: imports.QrKind
    ) -> HttpResponse:
        live_code = self.get_object(request, unquote(object_id))
        if live_code is None:
            raise Http404
        if not self.has_view_permission(request, live_code):
            raise PermissionDenied
        try:
            image = imports.live_code_image(live_code=live_code, kind=kind,
                                            base_url=_base_url(request),
                                            published_only=True)  # fmt: skip
        except imports.QrUnavailable as exc:
            if request.GET.get("inline"):  # the change page's <img>: no page to show a message on
                return HttpResponse(exc.message, status=404, content_type="text/plain")
            self.message_user(request, f"{live_code}: {exc.message}", messages.ERROR)
            url = reverse("admin:channels_app_livecode_change", args=[live_code.pk])
            return HttpResponseRedirect(url)
        response = HttpResponse(image, content_type="image/png")
        if not request.GET.get("inline"):
            filename = imports.live_code_filename(live_code, kind)
            response["Content-Disposition"] = content_disposition_header(True, filename)
        return response

    def import_csv_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        if request.GET.get("template"):
            return _csv_download(csv_template(imports.LIVE_CODE_COLUMNS), "live-codes.csv")
        form = CsvUploadForm(request.POST or None, request.FILES or None,
                             corps=tenancy.corps_for_user(request.user, WRITE))  # fmt: skip
        result = None
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            result = imports.live_codes_create_from_csv(corp=data["corp"], file=data["file"])
            if result.ok:
                _log(request, result.channels_created, ADDITION, gettext("Imported from CSV."))
                _log(request, result.created, ADDITION, gettext("Imported from CSV."))
                count = len(result.created)
                text = ngettext("%(n)d draft code created.", "%(n)d draft codes created.", count)
                self.message_user(request, text % {"n": count}, messages.SUCCESS)
        return _page(self, request, "livecode_import.html", title=_("Create codes from CSV"),
                     form=form, result=result)  # fmt: skip

    def import_wecom_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = CorpChoiceForm(
            request.POST or None, corps=tenancy.corps_for_user(request.user, WRITE)
        )
        report = None
        if request.method == "POST" and form.is_valid():
            try:
                report = live_codes_import(corp=form.cleaned_data["corp"])
            except WeComError as exc:
                self.message_user(request, f"WeCom: {exc}", messages.ERROR)
            else:
                _log(request, report.created, ADDITION, gettext("Imported from WeCom."))
        return _page(self, request, "wecom_import.html", form=form, report=report,
                     title=_("Import existing contact ways from WeCom"))  # fmt: skip


# -- what customers did ------------------------------------------------------------------------


@admin.register(Scan)
class ScanAdmin(ReadOnlyAdmin):
    # The referral is named by its referrer; a referrer URL can carry a phone number.
    personal_fields = ("referral", "referrer_url")
    list_display = [local_time_column(Scan, "created_at"), "live_code", "staff", "store", "device",
                    "in_wechat", "reused",
                    "utm_source", "utm_campaign", "referral"]  # fmt: skip
    list_filter = ["device", "in_wechat", "reused", "live_code__channel", "corp"]
    search_fields = ["live_code__name", "live_code__slug", "utm_campaign"]
    list_select_related = ["live_code", "staff", "store", "referral__referrer",
                           "referral__live_code"]  # fmt: skip
    date_hierarchy = "created_at"


@admin.register(Attribution)
class AttributionAdmin(ReadOnlyAdmin):
    personal_fields = ("__str__", "external_contact", "referrer", "follow_relation")
    list_display = [local_time_column(Attribution, "added_at"), "external_contact", "staff",
                    "live_code", "channel", "state_kind",
                    "is_first_touch", "referrer", "store"]  # fmt: skip
    list_filter = ["is_first_touch", "state_kind", "channel", "corp"]
    search_fields = ["external_contact__name", "external_contact__external_userid", "state"]
    list_select_related = ["external_contact", "staff", "live_code", "channel", "referrer",
                           "store"]  # fmt: skip
    date_hierarchy = "added_at"


@admin.register(DailyCounter)
class DailyCounterAdmin(ReadOnlyAdmin):
    list_display = ["day", "live_code", "staff", "assigned", "added"]
    list_filter = ["corp"]
    search_fields = ["live_code__name", "staff__userid", "staff__name"]
    list_select_related = ["live_code", "staff"]
    date_hierarchy = "day"


@admin.register(ReferralCode)
class ReferralCodeAdmin(CorpScopedAdmin):
    personal_fields = ("__str__", "referrer")
    form = ReferralCodeForm
    list_display = ["referrer", "live_code", "link", local_time_column(ReferralCode, "created_at")]
    list_filter = ["live_code__channel", "corp"]
    search_fields = ["referrer__name", "referrer__external_userid", "token", "live_code__name"]
    list_select_related = ["referrer", "live_code"]
    autocomplete_fields = ["live_code", "referrer"]
    readonly_fields = ["link", "token", "config_id", "qr_code", "state", "created_at"]

    def get_fields(self, request: HttpRequest, obj: ReferralCode | None = None) -> list:
        fields = ["live_code", "referrer", *(self.readonly_fields if obj else [])]
        return self.visible_fields(request, obj, fields)

    def get_readonly_fields(self, request: HttpRequest, obj: ReferralCode | None = None) -> list:
        return self.readonly_fields if obj else []

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # made by the service and never edited; deleting one is allowed

    @admin.display(description=_("link"))
    def link(self, obj: ReferralCode) -> str:
        if obj.live_code.mode == LiveCode.Mode.LANDING:
            url = referral_link(obj, "")
            return format_html('<a href="{0}" target="_blank" rel="noopener">{0}</a>', url)
        if not obj.qr_code:
            return "—"
        return format_html('<a href="{}" target="_blank" rel="noopener">{}</a>', obj.qr_code,
                           gettext("WeCom QR code"))  # fmt: skip

    def add_view(self, request: HttpRequest, form_url: str = "",
                 extra_context: dict | None = None) -> HttpResponse:  # fmt: skip
        """Generates the code through the service (a native live code gets a WeCom contact
        way of the referrer's own) and shows WeCom's refusal on the form."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = self.get_form(request)(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                referral = referral_code_get_or_create(live_code=data["live_code"],
                                                       referrer=data["referrer"])  # fmt: skip
            except PublishError as exc:
                form.add_error(None, exc.message)
            except WeComError as exc:
                form.add_error(None, f"WeCom: {exc}")
            else:
                _log(request, [referral], ADDITION, gettext("Generated."))
                text = gettext("Referral code ready: %(code)s") % {"code": referral}
                self.message_user(request, text, messages.SUCCESS)
                url = reverse("admin:channels_app_referralcode_change", args=[referral.pk])
                return HttpResponseRedirect(url)
        return _page(self, request, "referral_add.html", title=_("Generate a referral code"),
                     form=form, media=self.media + form.media)  # fmt: skip

    def get_urls(self) -> list:
        view = self.admin_site.admin_view(self.leaderboard_view)
        return [path("leaderboard/", view, name="channels_app_referralcode_leaderboard"),
                *super().get_urls()]  # fmt: skip

    def leaderboard_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = LeaderboardForm.from_query(
            request.GET, corps=tenancy.corps_for_user(request.user, READ)
        )
        rows = None
        if form.is_valid():
            corp, period = form.cleaned_data["corp"], form.cleaned_data["days"]
            # The last `period` local days of the corp, today included.
            since = days.today(corp) - timedelta(days=period - 1) if period else None
            rows = referrer_leaderboard(corp=corp, since=since)
            if not tenancy.may(request.user, corp, WRITE):  # a manager: ids, not names
                rows = [{**row, "referrer__name": ""} for row in rows]
        return _page(self, request, "leaderboard.html", title=_("Referral leaderboard"),
                     form=form, rows=rows)  # fmt: skip


from channels_app import admin_rules  # noqa: E402,F401,I001  (rules, welcome outcomes, groups)
from channels_app import admin_customers  # noqa: E402,F401  (customers by first-add channel)
