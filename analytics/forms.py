"""The report pages' filters, from the query string: everything is optional (the first corp,
the last 30 days, window 30), and what is given is checked with a message that says why."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from analytics.models import WINDOWS, Touch
from analytics.periods import CUSTOM, DEFAULT_PERIOD, PERIODS, period_dates, period_previous
from analytics.reports import ReportParams
from analytics.reports.base import ReportError
from analytics.reports.cohorts import CohortParams
from analytics.selectors import DrillDownError, drill_down_rows
from channels_app.models import Channel
from scrm import days
from scrm.wecom.models import Corp

DEFAULT_WINDOW = 30


class DateInput(forms.DateInput):
    input_type = "date"  # the browser's own date picker; the value is ISO (YYYY-MM-DD)

    def __init__(self) -> None:
        super().__init__(format="%Y-%m-%d")


class ReportFilterForm(forms.Form):
    corp = forms.ChoiceField(
        label=_("corp"), required=False,
        error_messages={"invalid_choice": _("No such corp, or not one you may see.")},
    )  # fmt: skip
    period = forms.ChoiceField(label=_("period"), choices=PERIODS, required=False)
    # "from" and "to", as in the report API, are added in __init__ (`from` is a keyword).
    channel_type = forms.TypedChoiceField(
        label=_("channel type"), coerce=int, empty_value=None, required=False
    )
    channel_group = forms.CharField(
        label=_("channel group"), max_length=64, required=False, widget=forms.Select
    )
    window = forms.TypedChoiceField(
        label=_("attribution window"), coerce=int, empty_value=DEFAULT_WINDOW, required=False,
        help_text=_("Revenue, orders, buyers and ROI count what happened within this many days "
                    "after the first add."),
    )  # fmt: skip
    touch = forms.ChoiceField(
        label=_("credit adds to"), choices=Touch.choices, required=False,
        help_text=_("Any touch: each add, deletion and removal counts for the code it came "
                    "through. First touch: for the customer's first channel, code and staff."),
    )  # fmt: skip
    # Drill-down (set by the links of the tables): one channel, one live code.
    channel = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    live_code = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    field_order = [
        "corp", "period", "from", "to", "channel_type", "channel_group", "window", "touch",
    ]  # fmt: skip
    default_period = DEFAULT_PERIOD

    def __init__(
        self,
        data: Any = None,
        *,
        corps: list[Corp],
        now: datetime | None = None,
        breakdown: bool = False,
        **kwargs: Any,
    ) -> None:
        if data is not None and not data.get("window"):
            data = data.copy()  # the default shown as chosen when the form is shown again
            data["window"] = str(DEFAULT_WINDOW)
        super().__init__(data, **kwargs)
        self.corps = {corp.corp_id: corp for corp in corps}
        self.now = now
        self.fields["corp"].choices = [(corp.corp_id, corp.name) for corp in corps]
        if len(corps) < 2:
            self.fields["corp"].widget = forms.HiddenInput()  # nothing to choose
        self.fields["from"] = forms.DateField(label=_("from"), required=False, widget=DateInput())
        self.fields["to"] = forms.DateField(label=_("to"), required=False, widget=DateInput())
        self.order_fields(self.field_order)
        self.fields["channel_type"].choices = [("", gettext("all")), *Channel.Type.choices]
        self.fields["window"].choices = [
            (window, gettext("%(days)s days") % {"days": window}) for window in WINDOWS
        ]
        self.channel_groups([])
        if breakdown:  # a breakdown credits each add to its own touch, and has no live codes
            del self.fields["touch"]
            self.fields["live_code"].disabled = True

    def channel_groups(self, groups: list[str]) -> None:
        """Offer the corp's channel groups (and keep a chosen one, even if no longer in use)."""
        chosen = self.data.get("channel_group", "") if self.is_bound else ""
        chosen = chosen or self.initial.get("channel_group", "")
        options = [*groups, chosen] if chosen and chosen not in groups else groups
        self.fields["channel_group"].widget.choices = [
            ("", gettext("all")),
            *((group, group) for group in options),
        ]

    def clean_corp(self) -> Corp | None:
        value = self.cleaned_data["corp"]
        if not value:
            return next(iter(self.corps.values()), None)
        return self.corps[value]  # the choices have checked it

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        corp: Corp | None = data.get("corp")
        if corp is None:
            if not self.has_error("corp"):
                self.add_error("corp", gettext("There is no corp to report on yet."))
            return data
        period = data.get("period") or (
            CUSTOM if data.get("from") or data.get("to") else self.default_period
        )
        data["period"] = period
        if period == CUSTOM:
            for name in ("from", "to"):
                if data.get(name) is None and not self.has_error(name):
                    self.add_error(name, gettext("Choose both dates of a custom period."))
            first, last = data.get("from"), data.get("to")
        else:
            first, last = period_dates(period, days.today(corp, now=self.now))
        data["first"], data["last"] = first, last
        self._clean_drill_down(data, corp)
        if first is not None and last is not None and not self.errors:
            try:
                self.params("channel", data=data).validate()
            except ReportError as exc:
                self.add_error(None, str(exc))
        return data

    def _clean_drill_down(self, data: dict[str, Any], corp: Corp) -> None:
        """The channel and live code, as rows of the chosen corp."""
        try:
            data["channel"], data["live_code"] = drill_down_rows(
                corp=corp, channel_id=data.get("channel"), live_code_id=data.get("live_code")
            )
        except DrillDownError as exc:
            self.add_error(exc.field, str(exc))
            data["channel"] = data["live_code"] = None

    # -- what a valid form gives ----------------------------------------------------------------

    def params(
        self, group_by: str, *, previous: bool = False, data: dict[str, Any] | None = None
    ) -> ReportParams:
        data = self.cleaned_data if data is None else data
        first, last = data["first"], data["last"]
        if previous:
            first, last = period_previous(first, last)
        channel, code = data.get("channel"), data.get("live_code")
        return ReportParams(
            corp=data["corp"],
            first=first,
            last=last,
            window=data.get("window") or DEFAULT_WINDOW,
            group_by=group_by,
            channel_type=data.get("channel_type"),
            channel_group=data.get("channel_group") or "",
            touch=data.get("touch") or Touch.ANY,
            channel=channel.pk if channel else None,
            live_code=code.pk if code else None,
        )

    def query(self, *, drill_down: bool = True, any_touch: bool = False, **extra: Any) -> str:
        """The filters as a query string, for the links between the pages: a preset stays a
        preset (a bookmarked "yesterday" moves with the days), custom dates stay dates."""
        data = self.cleaned_data
        values: dict[str, Any] = {"corp": data["corp"].corp_id, "period": data["period"]}
        if data["period"] == CUSTOM:
            values.update({"from": data["first"].isoformat(), "to": data["last"].isoformat()})
        if data.get("channel_type") is not None:
            values["channel_type"] = data["channel_type"]
        if data.get("channel_group"):
            values["channel_group"] = data["channel_group"]
        values["window"] = data.get("window") or DEFAULT_WINDOW
        if not any_touch and data.get("touch") and data["touch"] != Touch.ANY:
            values["touch"] = data["touch"]
        if drill_down:
            for name in ("channel", "live_code"):
                if data.get(name) is not None:
                    values[name] = data[name].pk
        values.update({name: value for name, value in extra.items() if value is not None})
        return urlencode(values)

    def resolved(self) -> dict[str, Any]:
        """The cleaned filters as the initial values of a form to show (a preset's dates
        filled in), so the page says what it computed."""
        data = self.cleaned_data
        first: date = data["first"]
        last: date = data["last"]
        return {
            "corp": data["corp"].corp_id,
            "period": data["period"],
            "from": first,
            "to": last,
            "channel_type": data.get("channel_type"),
            "channel_group": data.get("channel_group") or "",
            "window": data.get("window") or DEFAULT_WINDOW,
            "touch": data.get("touch") or Touch.ANY,
            "channel": data["channel"].pk if data.get("channel") else None,
            "live_code": data["live_code"].pk if data.get("live_code") else None,
        }


class CohortFilterForm(ReportFilterForm):
    """The cohort page's filters: those of the reports (corp, period, channel type and group,
    the drill-down's channel and live code) without window and touch (the matrix has ages for
    columns, and a cohort is its first touch's), and the matrix's own: cohorts by day, week
    or month, the metric, and the split. Default: the last 365 days by month, retention."""

    cohort_period = forms.ChoiceField(
        label=_("cohorts"), required=False,
        choices=[("day", _("by day")), ("week", _("by week")), ("month", _("by month"))],
    )  # fmt: skip
    metric = forms.ChoiceField(
        label=_("metric"), required=False,
        choices=[("retention", _("retention")), ("revenue", _("revenue per customer")),
                 ("buyers", _("buyers"))],
    )  # fmt: skip
    by = forms.ChoiceField(
        label=_("split by"), required=False,
        choices=[("none", _("all customers")), ("channel", _("channel")),
                 ("live_code", _("live code")), ("staff", _("staff member"))],
    )  # fmt: skip

    field_order = [
        "corp", "period", "from", "to", "cohort_period", "metric", "by", "channel_type",
        "channel_group",
    ]  # fmt: skip
    default_period = "last_365"
    defaults = {"cohort_period": "month", "metric": "retention", "by": "none"}

    def __init__(self, data: Any = None, **kwargs: Any) -> None:
        super().__init__(data, **kwargs)
        del self.fields["window"], self.fields["touch"]

    def params(  # type: ignore[override]
        self, group_by: str = "", *, previous: bool = False, data: dict[str, Any] | None = None
    ) -> CohortParams:
        data = self.cleaned_data if data is None else data
        channel, code = data.get("channel"), data.get("live_code")
        return CohortParams(
            corp=data["corp"],
            first=data["first"],
            last=data["last"],
            period=data.get("cohort_period") or self.defaults["cohort_period"],
            metric=data.get("metric") or self.defaults["metric"],
            by=data.get("by") or self.defaults["by"],
            channel_type=data.get("channel_type"),
            channel_group=data.get("channel_group") or "",
            channel=channel.pk if channel else None,
            live_code=code.pk if code else None,
        )

    def query(self, *, drill_down: bool = True, any_touch: bool = False, **extra: Any) -> str:
        data = self.cleaned_data
        chosen = {name: data.get(name) or default for name, default in self.defaults.items()}
        return super().query(drill_down=drill_down, any_touch=True, **{**chosen, **extra})

    def resolved(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            **super().resolved(),
            **{name: data.get(name) or default for name, default in self.defaults.items()},
        }


class QualityForm(forms.Form):
    """The quality page's filters: the corp (the user's first by default) and the days of
    hourly history in the rank chart."""

    corp = forms.ChoiceField(
        label=_("corp"), required=False,
        error_messages={"invalid_choice": _("No such corp, or not one you may see.")},
    )  # fmt: skip
    days = forms.TypedChoiceField(label=_("rank history"), coerce=int, required=False,
                                  empty_value=7)  # fmt: skip

    def __init__(self, data: Any = None, *, corps: list[Corp], **kwargs: Any) -> None:
        super().__init__(data, **kwargs)
        self.corps = {corp.corp_id: corp for corp in corps}
        self.fields["corp"].choices = [(corp.corp_id, corp.name) for corp in corps]
        if len(corps) < 2:
            self.fields["corp"].widget = forms.HiddenInput()
        self.fields["days"].choices = [
            (days_shown, gettext("%(days)s days") % {"days": days_shown})
            for days_shown in (1, 7, 30, 90)
        ]

    def clean_corp(self) -> Corp:
        chosen = self.cleaned_data.get("corp") or next(iter(self.corps))
        return self.corps[chosen]
