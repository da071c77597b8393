"""The anomaly page (/reports/anomalies/) and its acknowledgement (POST). Thin: a form checks
the query, analytics.anomalies lists, analytics.anomaly_services writes; what each anomaly
says is worded here."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from analytics import pages
from analytics.anomalies import (
    DEAD_HOURS,
    AnomalyError,
    AnomalyParams,
    AnomalyResult,
    Kind,
    anomalies_list,
    key_day,
)
from analytics.anomaly_services import anomaly_acknowledge
from analytics.forms import DateInput
from analytics.periods import CUSTOM, PERIODS, period_dates
from scrm import days
from scrm.wecom import tenancy
from scrm.wecom.models import Corp

TEMPLATE = "analytics/anomalies.html"
DEFAULT_PERIOD = "last_7"


class AnomalyFilterForm(forms.Form):
    corp = forms.ChoiceField(
        label=_("corp"),
        required=False,
        error_messages={"invalid_choice": _("No such corp, or not one you may see.")},
    )
    period = forms.ChoiceField(label=_("period"), choices=PERIODS, required=False)

    def __init__(self, data: Any = None, *, corps: list[Corp], **kwargs: Any) -> None:
        super().__init__(data, **kwargs)
        self.corps = {corp.corp_id: corp for corp in corps}
        self.fields["corp"].choices = [(corp.corp_id, corp.name) for corp in corps]
        if len(corps) < 2:
            self.fields["corp"].widget = forms.HiddenInput()
        # "from" is a Python keyword: the fields are named as in the report API.
        self.fields["from"] = forms.DateField(label=_("from"), required=False, widget=DateInput())
        self.fields["to"] = forms.DateField(label=_("to"), required=False, widget=DateInput())

    def clean_corp(self) -> Corp | None:
        value = self.cleaned_data["corp"]
        return self.corps[value] if value else next(iter(self.corps.values()), None)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        corp = data.get("corp")
        if corp is None:
            return data
        period = data.get("period") or (
            CUSTOM if data.get("from") or data.get("to") else DEFAULT_PERIOD
        )
        data["period"] = period
        if period == CUSTOM:
            for name in ("from", "to"):
                if data.get(name) is None and not self.has_error(name):
                    self.add_error(name, gettext("Choose both dates of a custom period."))
            data["first"], data["last"] = data.get("from"), data.get("to")
        else:
            data["first"], data["last"] = period_dates(period, days.today(corp))
        if data["first"] and data["last"] and not self.errors:
            try:
                self.params(timezone.now(), data).validate()
            except AnomalyError as exc:
                self.add_error(None, str(exc))
        return data

    def params(self, now: datetime, data: dict[str, Any] | None = None) -> AnomalyParams:
        data = self.cleaned_data if data is None else data
        return AnomalyParams(corp=data["corp"], first=data["first"], last=data["last"], now=now)

    def query(self) -> str:
        data = self.cleaned_data
        values = {"corp": data["corp"].corp_id, "period": data["period"]}
        if data["period"] == CUSTOM:
            values.update({"from": data["first"].isoformat(), "to": data["last"].isoformat()})
        return urlencode(values)


def _local(moment: datetime | None, corp: Corp) -> str:
    return days.local_display(moment, corp) if moment else "—"


def _percent(rate: Any) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}%"


def describe(kind: str, figures: dict[str, Any], corp: Corp) -> str:
    """What an anomaly says, in the reader's language."""
    f = figures
    texts = {
        Kind.ADDS_BELOW_SCANS: lambda: (
            gettext(
                "%(scans)d scans but %(adds)d adds (%(rate)s); its usual rate of %(usual)s "
                "predicts %(expected)s."
            )
            % {
                "scans": f["scans"],
                "adds": f["adds"],
                "rate": _percent(f["scan_to_add"]),
                "usual": _percent(f["usual_rate"]),
                "expected": f["expected_adds"],
            }
        ),
        Kind.ADDS_WITHOUT_SCANS: lambda: (
            gettext("%(adds)d adds through this landing code, and not one scan.")
            % {"adds": f["adds"]}
        ),
        Kind.DEAD_CODE: lambda: (
            gettext("%(scans)d scans in the last %(hours)d hours and no add; last add: %(last)s.")
            % {"scans": f["scans"], "hours": f["hours"], "last": _local(f["last_add"], corp)}
        ),
        Kind.EMPTY_API: lambda: (
            gettext("%(empty)d of %(calls)d calls answered errcode 0 with an empty list.")
            % {"empty": f["empty"], "calls": f["calls"]}
        ),
        Kind.CALIBRATION: lambda: (
            gettext(
                "We counted %(ours)d new customers, WeCom %(wecom)d (difference %(difference)+d)."
            )
            % {"ours": f["ours"], "wecom": f["wecom"], "difference": f["difference"]}
        ),
        Kind.CALLBACK_BACKLOG: lambda: (
            gettext(
                "%(events)d events pending for more than %(minutes)d minutes; the oldest arrived "
                "%(oldest)s."
            )
            % {"events": f["events"], "minutes": f["minutes"], "oldest": _local(f["oldest"], corp)}
        ),
        Kind.CALLBACK_FAILED: lambda: (
            gettext("%(events)d events failed to process (retry them from the inbox).")
            % {"events": f["events"]}
        ),
        Kind.LEFT_STAFF: lambda: (
            gettext("Left the corp %(left)s and is still enabled in the pool.")
            % {"left": _local(f["left_at"], corp)}
        ),
    }
    return texts[kind]()


def _rows(result: AnomalyResult, corp: Corp) -> dict[str, list[dict[str, Any]]]:
    labels = dict(Kind.choices)

    def row(anomaly: Any) -> dict[str, Any]:
        ack = anomaly.ack
        return {
            "kind": anomaly.kind,
            "kind_label": labels[anomaly.kind],
            "key": anomaly.key,
            "subject": anomaly.subject,
            "when": anomaly.day.isoformat() if anomaly.day else _local(anomaly.since, corp),
            "text": describe(anomaly.kind, anomaly.figures, corp),
            "evidence": anomaly.evidence,
            "ack_by": str(ack.acknowledged_by or "") if ack else "",
            "ack_at": _local(ack.acknowledged_at, corp) if ack else "",
            "ack_note": ack.note if ack else "",
        }

    return {
        "open": [row(anomaly) for anomaly in result.open],
        "acknowledged": [row(anomaly) for anomaly in result.acknowledged],
    }


@login_required(login_url="admin:login")
def anomalies(request: HttpRequest) -> HttpResponse:
    context: dict[str, Any] = {
        **admin.site.each_context(request),
        "is_nav_sidebar_enabled": False,
        "title": _("Anomalies"),
        "dead_hours": DEAD_HOURS,
    }
    corps = list(tenancy.corps_for_user(request.user, tenancy.READ))
    if not corps:
        return render(request, TEMPLATE, {**context, "no_corps": True})
    form = AnomalyFilterForm(request.GET, corps=corps)
    if not form.is_valid():
        return render(request, TEMPLATE, {**context, "form": form}, status=400)
    corp = form.cleaned_data["corp"]
    result = anomalies_list(params=form.params(timezone.now()))
    shown = AnomalyFilterForm(
        initial={
            "corp": corp.corp_id,
            "period": form.cleaned_data["period"],
            "from": result.params.first,
            "to": result.params.last,
        },
        corps=corps,
    )
    return render(
        request,
        TEMPLATE,
        {
            **context,
            "form": shown,
            "corp": corp,
            "tabs": pages.report_tabs("anomalies", urlencode({"corp": corp.corp_id})),
            "params": result.params,
            "rows": _rows(result, corp),
            "query": form.query(),
            "may_acknowledge": tenancy.may(request.user, corp, tenancy.WRITE),
        },
    )


@require_POST
@login_required(login_url="admin:login")
def acknowledge(request: HttpRequest) -> HttpResponse:
    """Acknowledge one listed anomaly: another corp's is a 404, a manager's attempt a 403, a
    kind or key that names no current anomaly a 400."""
    corp = Corp.objects.filter(corp_id=request.POST.get("corp", "")).first()
    if corp is None or not tenancy.may(request.user, corp, tenancy.READ):
        raise Http404(gettext("No such corp, or not one you may see."))
    if not tenancy.may(request.user, corp, tenancy.WRITE):
        return HttpResponse(gettext("Your role in this corp does not allow this."), status=403)
    kind, key = request.POST.get("kind", ""), request.POST.get("key", "")[:128]
    note = request.POST.get("note", "")[:255]
    if kind not in Kind.values:
        return HttpResponse(gettext("No such kind of anomaly."), status=400)
    # Only what the page lists can be acknowledged: the anomaly is looked for again, on its
    # own day for a day kind, else now.
    day = key_day(kind, key) or days.today(corp)
    params = AnomalyParams(corp=corp, first=day, last=day, now=timezone.now())
    if anomalies_list(params=params).find(kind, key) is None:
        return HttpResponse(gettext("This anomaly is not listed (any more)."), status=400)
    anomaly_acknowledge(corp=corp, kind=kind, key=key, user=request.user, note=note)
    messages.success(request, gettext("Anomaly acknowledged."))
    back = request.POST.get("query", "")
    query = back if back.startswith("corp=") else urlencode({"corp": corp.corp_id})
    return HttpResponseRedirect(f"{reverse('reports:anomalies')}?{query}", status=303)
