"""Admin of calibration runs: read-only results with their deviating days, and a page that
starts a calibration in the background (its "add" page: adding a run means starting one)."""

from __future__ import annotations

from datetime import UTC, date, timedelta
from zoneinfo import ZoneInfo

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import AdminDateWidget
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template import engines
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from contacts.calibration import DEFAULT_COMPARE_DAYS, STATS_RETENTION_DAYS
from contacts.models import CalibrationDeviation, CalibrationRun
from scrm import days
from scrm.wecom import tenancy
from scrm.wecom.admin import local_time_column
from scrm.wecom.admin_tenancy import WRITE, CorpScopedAdmin, CorpScopedInline
from scrm.wecom.models import Corp

# Kept here, not in templates/, so the page ships with the admin class that serves it.
START_PAGE = """{% extends "admin/base_site.html" %}{% load i18n admin_urls %}
{% block extrahead %}{{ block.super }}<script src="{% url 'admin:jsi18n' %}"></script>
{{ form.media }}{% endblock %}
{% block breadcrumbs %}<div class="breadcrumbs"><a href="{% url 'admin:index' %}">
{% translate 'Home' %}</a> &rsaquo; <a href="{% url 'admin:app_list' app_label=opts.app_label %}">
{{ opts.app_config.verbose_name }}</a> &rsaquo; <a href="{% url opts|admin_urlname:'changelist' %}">
{{ opts.verbose_name_plural|capfirst }}</a> &rsaquo; {{ title }}</div>{% endblock %}
{% block content %}<div id="content-main"><p>{{ intro }}</p>
<form method="post">{% csrf_token %}{{ form.non_field_errors }}<fieldset class="module aligned">
{% for field in form %}<div class="form-row">{{ field.errors }}<div class="flex-container">
{{ field.label_tag }} {{ field }}</div>{% if field.help_text %}
<div class="help" id="{{ field.auto_id }}_helptext">
{{ field.help_text }}</div>{% endif %}</div>{% endfor %}</fieldset>
<div class="submit-row"><input type="submit" class="default" value="{{ submit }}"></div>
</form></div>{% endblock %}"""


class CalibrationStartForm(forms.Form):
    corp = forms.ModelChoiceField(
        queryset=Corp.objects.filter(is_active=True), label=gettext_lazy("corp")
    )
    since = forms.DateField(
        label=gettext_lazy("compare from"),
        required=False,
        widget=AdminDateWidget,
        help_text=gettext_lazy(
            "Empty: 7 days ago. WeCom keeps its statistics for 180 days; earlier days are "
            "not compared."
        ),
    )

    def __init__(self, *args: object, corps: QuerySet[Corp], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["corp"].queryset = corps.filter(is_active=True)

    def clean(self) -> dict:
        data = super().clean()
        corp, since = data.get("corp"), data.get("since")
        if corp is not None and since is not None and since >= days.today(corp):
            self.add_error("since", _("Choose a day before today."))  # the corp's today
        return data


def default_since() -> date:
    """The first day compared by default, for the page's text (no corp is chosen yet): 7 days
    before the earliest today among the corps' time zones. calibrate() counts from the chosen
    corp's own today."""
    todays = [days.today(ZoneInfo(name)) for name in days.zones_in_use()] or [days.today(UTC)]
    return min(todays) - timedelta(days=DEFAULT_COMPARE_DAYS)


class CalibrationDeviationInline(CorpScopedInline, admin.TabularInline):
    model = CalibrationDeviation
    fields = ["day", "staff", "ours", "wecom", "delta"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[CalibrationDeviation]:
        return super().get_queryset(request).select_related("staff")

    @admin.display(description=gettext_lazy("difference (ours − WeCom)"))
    def delta(self, row: CalibrationDeviation) -> int:
        return row.delta

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(CalibrationRun)
class CalibrationRunAdmin(CorpScopedAdmin):
    list_display = [
        local_time_column(CalibrationRun, "started_at"), "corp", "status", "since",
        "staff_count", "contacts_seen", "relations_backfilled", "first_sources_backfilled",
        "deviations", "triggered_by", local_time_column(CalibrationRun, "finished_at"),
    ]  # fmt: skip
    list_filter = ["status", "corp"]
    search_fields = ["corp__corp_id", "corp__name", "triggered_by"]
    list_select_related = ["corp"]
    date_hierarchy = "started_at"
    inlines = [CalibrationDeviationInline]
    fields = [
        "corp", "status", "since", "triggered_by", "started_at", "finished_at", "staff_count",
        "contacts_seen", "relations_backfilled", "first_sources_backfilled", "deviations",
        "error",
    ]  # fmt: skip
    readonly_fields = fields

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # WeCom's data and our counts: nothing here is for editing

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        """Start a calibration: queue calibrate_task for the chosen corp."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        corps = tenancy.corps_for_user(request.user, WRITE)  # only where the user may write
        form = CalibrationStartForm(request.POST or None, corps=corps)
        if request.method == "POST" and form.is_valid():
            return self._start(request, form.cleaned_data["corp"], form.cleaned_data["since"])
        since = default_since()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Start a calibration"),
            "intro": _(
                "Fetches every customer of every staff member from WeCom, records those no "
                "callback announced (marked backfilled), and compares our new customers per "
                "staff member and day with WeCom's statistics, from %(since)s (at most "
                "%(days)s days back) to yesterday. It runs in the background."
            )
            % {"since": since.isoformat(), "days": STATS_RETENTION_DAYS},
            "submit": _("Start calibration"),
            "form": form,
        }
        template = engines["django"].from_string(START_PAGE)
        return HttpResponse(template.render(context, request))

    def _start(self, request: HttpRequest, corp: Corp, since: date | None) -> HttpResponseRedirect:
        from contacts.tasks import calibrate_task

        since_text = since.isoformat() if since else None
        try:
            calibrate_task.delay(corp.pk, since_text, request.user.get_username())
        except Exception:  # broker down: say so instead of a 500
            self.message_user(
                request, _("The calibration could not be queued; try again later."),
                messages.ERROR,
            )  # fmt: skip
        else:
            self.message_user(
                request,
                _("Calibration of %(corp)s started; its result appears in this list.")
                % {"corp": corp},
                messages.SUCCESS,
            )
        return HttpResponseRedirect(reverse("admin:contacts_calibrationrun_changelist"))
