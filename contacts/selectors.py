"""Reads of the customer domain, shared by the API, the admin and exports."""

from __future__ import annotations

from typing import Any

from django.db.models import F, Prefetch, QuerySet

from contacts.filters import FIRST_ATTRIBUTION, ExternalContactFilter
from contacts.models import ExternalContact, FollowRelation
from contacts.services import DETAILS_MAX_ATTEMPTS


def external_contact_list(*, filters: dict[str, Any] | None = None) -> QuerySet[ExternalContact]:
    relations = FollowRelation.objects.select_related("staff").order_by("created_at", "pk")
    # The first source's live code and channel, joined in the same query (not one per row).
    first = FIRST_ATTRIBUTION
    queryset = (
        ExternalContact.objects.select_related("corp", "first_source", "first_source__staff")
        .prefetch_related(Prefetch("follow_relations", queryset=relations))
        .annotate(
            first_live_code_id=F(f"{first}live_code_id"),
            first_live_code_name=F(f"{first}live_code__name"),
            first_live_code_slug=F(f"{first}live_code__slug"),
            first_channel_id=F(f"{first}channel_id"),
            first_channel_name=F(f"{first}channel__name"),
            first_channel_code=F(f"{first}channel__code"),
        )
    )
    if filters is None:
        return queryset
    return ExternalContactFilter(filters, queryset=queryset).qs


def external_contact_ids_pending_details(*, limit: int = 500) -> list[int]:
    """Customers whose details an earlier fetch could not get (rate limit, network)."""
    return list(
        ExternalContact.objects.filter(
            details_fetched_at__isnull=True, details_attempts__lt=DETAILS_MAX_ATTEMPTS
        )
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
