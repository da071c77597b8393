"""Reads for the report pages that are not reports themselves."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from channels_app.models import Channel
from scrm.wecom import tenancy
from scrm.wecom.models import Corp


def corps_for_user(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[Corp]:
    """The corps whose reports `user` may read (any role), the default first."""
    return tenancy.corps_for_user(user, tenancy.READ)


def channel_groups(*, corp: Corp) -> list[str]:
    """The channel groups (Channel.category) in use in `corp`, sorted."""
    groups = (
        Channel.objects.filter(corp=corp)
        .exclude(category="")
        .order_by("category")
        .values_list("category", flat=True)
        .distinct()
    )
    return list(groups)
