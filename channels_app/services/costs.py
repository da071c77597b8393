"""Channel costs (渠道成本): a spend over a date range, written once here for the admin, the API,
the CSV import and the demo. A cost always carries its channel's corp."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal

from django.db import transaction

from channels_app.models import Channel, ChannelCost


def _validated(cost: ChannelCost) -> ChannelCost:
    cost.corp_id = cost.channel.corp_id
    # The range check is clean()'s; the corp and channel are given objects and the check
    # constraint repeats clean(): skipping their validation saves queries per row (1,000-row
    # bulk writes stay one lookup and a few INSERTs).
    cost.full_clean(exclude=["corp", "channel"], validate_constraints=False)
    return cost


def channel_cost_create(
    *,
    channel: Channel,
    start_date: date,
    end_date: date,
    amount: Decimal,
    currency: str = "CNY",
    note: str = "",
) -> ChannelCost:
    """One cost of `channel`; raises ValidationError (an end before the start, a negative
    amount)."""
    cost = _validated(
        ChannelCost(channel=channel, start_date=start_date, end_date=end_date, amount=amount,
                    currency=currency, note=note)
    )  # fmt: skip
    cost.save()
    return cost


@transaction.atomic
def channel_costs_create(*, costs: Sequence[ChannelCost]) -> list[ChannelCost]:
    """Unsaved costs validated and written together, all or none (raises ValidationError on
    the first invalid one)."""
    return ChannelCost.objects.bulk_create([_validated(cost) for cost in costs])
