"""Reads for the report pages that are not reports themselves."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from channels_app.models import Channel
from scrm.wecom.models import Corp


def corps_for_user(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[Corp]:
    """The corps whose reports `user` may read, the default first. There is no membership of a
    user in a corp yet, so this is every corp; tenancy scopes it here, for every report page."""
    return Corp.objects.order_by("pk")


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
