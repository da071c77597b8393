"""GET /api/v1/contacts/<id>/timeline/: a customer's timeline (客户动态), newest first.

Paginated like the other lists (?limit=&offset=), same authentication; 404 for an unknown
customer or one of a corp the user has no role in. Times are given in the corp's time zone,
with their UTC offset.
"""

from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import generics, serializers

from contacts.models import ExternalContact, TimelineEvent
from scrm import days
from scrm.api_tenancy import CorpScopedMixin
from scrm.wecom import tenancy


def timeline_event_list(*, contact: ExternalContact) -> QuerySet[TimelineEvent]:
    return (
        TimelineEvent.objects.filter(external_contact=contact)
        .select_related("corp", "staff")
        .order_by("-occurred_at", "-pk")
    )


class TimelineEventSerializer(serializers.ModelSerializer):
    kind_label = serializers.CharField(source="get_kind_display", read_only=True)
    occurred_at = serializers.SerializerMethodField()
    staff = serializers.CharField(source="staff.userid", default=None, read_only=True)
    staff_name = serializers.CharField(source="staff.name", default=None, read_only=True)

    class Meta:
        model = TimelineEvent
        fields = ["id", "kind", "kind_label", "occurred_at", "staff", "staff_name", "summary",
                  "data"]  # fmt: skip

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_occurred_at(self, obj: TimelineEvent) -> str:
        return days.local_datetime(obj.occurred_at, obj.corp).isoformat()


class ContactTimelineView(CorpScopedMixin, generics.ListAPIView):
    queryset = TimelineEvent.objects.none()  # the model, for the schema: rows need the customer
    serializer_class = TimelineEventSerializer

    def get_queryset(self) -> QuerySet[TimelineEvent]:
        # A customer of another corp is a 404, as if there were none.
        contacts = tenancy.scope(ExternalContact.objects.all(), self.request.user, tenancy.READ)
        contact = get_object_or_404(contacts, pk=self.kwargs["pk"])
        return timeline_event_list(contact=contact)


# Included from contacts/urls.py under "contacts/", before the router's customer routes.
urlpatterns = [
    path("<int:pk>/timeline/", ContactTimelineView.as_view(), name="contact-timeline"),
]
