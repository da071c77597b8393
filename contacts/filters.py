import django_filters
from django import forms
from django.utils.translation import gettext_lazy as _

from contacts.models import ExternalContact


class IntegerFilter(django_filters.NumberFilter):
    # NumberFilter parses a decimal: "1.5" would be truncated to 1 and match; refuse it (400).
    field_class = forms.IntegerField


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
    # Days are local days (settings.TIME_ZONE); `__date` converts in the database.
    added_from = django_filters.DateFilter(
        field_name="first_source__added_at", lookup_expr="date__gte", label=_("first added from")
    )
    added_to = django_filters.DateFilter(
        field_name="first_source__added_at", lookup_expr="date__lte", label=_("first added to")
    )
    name = django_filters.CharFilter(lookup_expr="icontains", label=_("name contains"))

    class Meta:
        model = ExternalContact
        fields = ["corp", "external_userid", "state", "add_way", "staff"]
