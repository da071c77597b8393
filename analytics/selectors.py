"""Reads for the report pages that are not reports themselves."""

from __future__ import annotations

from django.utils.translation import gettext

from channels_app.models import Channel, LiveCode
from scrm.wecom.models import Corp


class DrillDownError(ValueError):
    """A drill-down id that is not one of the corp's rows; `field` names the parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def drill_down_rows(
    *, corp: Corp, channel_id: int | None, live_code_id: int | None
) -> tuple[Channel | None, LiveCode | None]:
    """The drill-down's channel and live code as rows of `corp` (one query each, if given; a
    live code brings its channel). Another corp's row is "no such", as if it did not exist."""
    channel = code = None
    if channel_id is not None:
        channel = Channel.objects.filter(corp=corp, pk=channel_id).first()
        if channel is None:
            raise DrillDownError("channel", gettext("No such channel in this corp."))
    if live_code_id is not None:
        code = LiveCode.objects.filter(corp=corp, pk=live_code_id).select_related("channel").first()
        if code is None:
            raise DrillDownError("live_code", gettext("No such live code in this corp."))
        if channel_id is not None and code.channel_id != channel_id:
            raise DrillDownError("live_code", gettext("This live code is not of that channel."))
        channel = code.channel
    return channel, code


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
