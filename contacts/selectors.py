"""Reads of the customer domain, shared by the API, the admin and exports."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db.models import Exists, F, OuterRef, Prefetch, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils.translation import gettext as _

from contacts.filters import FIRST_ATTRIBUTION, ExternalContactFilter
from contacts.models import CustomerTag, ExternalContact, FollowRelation, Tag
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


def tag_choices_by_group(*, corp_ids: Sequence[int], keep: Sequence[str] = ()) -> list:
    """The tag library of these corps as grouped choices for a tag picker: [(group label,
    [(tag_id, name), ...]), ...] in WeCom's order, a group named with its corp when there are
    several corps. Tag ids in `keep` that the library lacks (a tag deleted since) are offered
    under their id, so saving a form never drops them unseen."""
    from contacts.models import Tag

    tags = (
        Tag.objects.filter(corp_id__in=corp_ids, deleted=False, group__deleted=False)
        .select_related("group", "corp")
        .order_by("corp__name", "-group__order", "group__name", "group_id", "-order", "name")
    )
    groups: dict[int, tuple[str, list[tuple[str, str]]]] = {}
    for tag in tags:
        label = tag.group.name if len(corp_ids) == 1 else f"{tag.corp.name} · {tag.group.name}"
        groups.setdefault(tag.group_id, (label, []))[1].append((tag.tag_id, tag.name))
    choices: list = list(groups.values())
    known = {tag_id for _label, options in choices for tag_id, _name in options}
    missing = [(tag_id, tag_id) for tag_id in keep if tag_id not in known]
    if missing:
        choices.append((_("Not in the tag library"), missing))
    return choices


def customers_tag_targets(
    *, corp_id: int, customer_ids: QuerySet | Sequence[int], tag: Tag
) -> QuerySet:
    """Where a tag the system applies goes, once per customer: for each of `customer_ids`
    (of the corp) that carries `tag` on none of its relations and has a live one, the relation
    to tag: the first-touch relation when it is live, else the latest live one. Values
    (customer id, relation id), by customer id. One query."""
    live = FollowRelation.objects.filter(status=FollowRelation.Status.ACTIVE)
    first_touch = live.filter(pk=OuterRef("first_relation_id")).values("pk")
    latest = (
        live.filter(external_contact=OuterRef("pk"))
        .order_by(F("created_at").desc(nulls_last=True), "-pk")
        .values("pk")[:1]
    )
    tagged = CustomerTag.objects.filter(follow_relation__external_contact=OuterRef("pk"), tag=tag)
    return (
        ExternalContact.objects.filter(corp_id=corp_id, pk__in=customer_ids)
        .exclude(Exists(tagged))
        .annotate(first_relation_id=F("first_source__add_event__follow_relation_id"))
        .annotate(relation_id=Coalesce(Subquery(first_touch), Subquery(latest)))
        .filter(relation_id__isnull=False)
        .order_by("pk")
        .values_list("pk", "relation_id")
    )
