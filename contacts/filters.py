from __future__ import annotations

from datetime import date

import django_filters
from django import forms
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _

from contacts.models import ExternalContact
from scrm.days import corp_days_q, corp_zone_name


class IntegerFilter(django_filters.NumberFilter):
    # NumberFilter parses a decimal: "1.5" would be truncated to 1 and match; refuse it (400).
    field_class = forms.IntegerField


class IdFilter(IntegerFilter):
    """A row's id: a whole number a 64-bit key can hold (a larger one is a 400, not a
    database overflow)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", 2**63 - 1)
        super().__init__(*args, **kwargs)


# The first add's Attribution (channels_app's, reached by its reverse name only: contacts
# imports nothing of channels_app) names the first source's live code and channel.
FIRST_ATTRIBUTION = "first_source__add_event__attribution__"


class LocalDayFilter(django_filters.DateFilter):
    """A corp-local day as a bound on a datetime column: a day of the corp the query names
    (its `corp` filter, a corp ID), else of each row's own corp (reached through `corp`).
    Compares with the day's UTC bounds, so the column's index is used (a `__date` lookup
    converts every row, and in the database session's time zone)."""

    def __init__(self, *args, upper: bool = False, corp: str = "corp", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.upper = upper
        self.corp = corp

    def filter(self, qs: QuerySet, value: date | None) -> QuerySet:
        if value is None:
            return qs
        first, last = (None, value) if self.upper else (value, None)
        return qs.filter(corp_days_q(self.field_name, first, last, corp=self.corp,
                                     zones=self._named_zone()))  # fmt: skip

    def _named_zone(self) -> list[str] | None:
        form = getattr(self.parent, "form", None)
        corp_id = form.cleaned_data.get("corp") if form is not None else None
        name = corp_zone_name(corp_id) if corp_id else None
        return None if name is None else [name]


class ExternalContactFilter(django_filters.FilterSet):
    corp = django_filters.CharFilter(field_name="corp__corp_id", label=_("corp ID"))
    external_userid = django_filters.CharFilter(label=_("external UserID"))
    state = django_filters.CharFilter(field_name="first_source__state", label=_("first state"))
    state_prefix = django_filters.CharFilter(
        field_name="first_source__state", lookup_expr="startswith", label=_("state prefix")
    )
    add_way = IntegerFilter(field_name="first_source__add_way", label=_("first add way"))
    staff = django_filters.CharFilter(
        field_name="first_source__staff__userid", label=_("first-add staff UserID")
    )
    follow_staff = django_filters.CharFilter(
        field_name="follow_relations__staff__userid", distinct=True, label=_("any staff UserID")
    )
    # Local days of the customer's corp.
    added_from = LocalDayFilter(field_name="first_source__added_at", label=_("first added from"))
    added_to = LocalDayFilter(
        field_name="first_source__added_at", upper=True, label=_("first added to")
    )
    name = django_filters.CharFilter(lookup_expr="icontains", label=_("name contains"))
    # The first add's channel and live code, by id or by their code and slug. Another corp's
    # matches none of the user's customers (the list is scoped to the user's corps).
    first_channel = IdFilter(
        field_name=f"{FIRST_ATTRIBUTION}channel_id", label=_("first-add channel id")
    )
    first_channel_code = django_filters.CharFilter(
        field_name=f"{FIRST_ATTRIBUTION}channel__code", label=_("first-add channel code")
    )
    first_live_code = IdFilter(
        field_name=f"{FIRST_ATTRIBUTION}live_code_id", label=_("first-add live code id")
    )
    first_live_code_slug = django_filters.CharFilter(
        field_name=f"{FIRST_ATTRIBUTION}live_code__slug", label=_("first-add live code slug")
    )

    class Meta:
        model = ExternalContact
        fields = ["corp", "external_userid", "state", "add_way", "staff"]
