"""Channel costs are written by one service, whoever sends them: the admin, the API, the CSV
import, the demo."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from channels_app.models import ChannelCost
from channels_app.services import costs
from channels_app.services.costs import channel_cost_create, channel_costs_create

pytestmark = pytest.mark.django_db

JUNE = {"start_date": dt.date(2026, 6, 1), "end_date": dt.date(2026, 6, 30)}


def test_a_cost_takes_its_channels_corp(channel):
    cost = channel_cost_create(channel=channel, amount=Decimal("1500.00"), **JUNE)
    assert (cost.corp_id, cost.currency, ChannelCost.objects.get().amount) == (
        channel.corp_id, "CNY", Decimal("1500.00"),
    )  # fmt: skip


def test_an_end_before_the_start_or_a_negative_amount_is_refused(channel):
    with pytest.raises(ValidationError):
        channel_cost_create(channel=channel, start_date=JUNE["end_date"],
                            end_date=JUNE["start_date"], amount=Decimal(1))  # fmt: skip
    with pytest.raises(ValidationError):
        channel_cost_create(channel=channel, amount=Decimal(-1), **JUNE)
    assert not ChannelCost.objects.exists()


def test_bulk_costs_are_all_written_or_none(channel):
    good = ChannelCost(channel=channel, amount=Decimal(10), **JUNE)
    bad = ChannelCost(channel=channel, amount=Decimal(-1), **JUNE)
    with pytest.raises(ValidationError):
        channel_costs_create(costs=[good, bad])
    assert not ChannelCost.objects.exists()
    created = channel_costs_create(costs=[good, ChannelCost(channel=channel, amount=0, **JUNE)])
    assert [c.corp_id for c in created] == [channel.corp_id] * 2
    assert ChannelCost.objects.count() == 2


def test_the_admin_add_page_and_the_api_create_through_the_service(admin_client, channel):
    from rest_framework.test import APIClient

    with mock.patch.object(costs, "_validated", wraps=costs._validated) as validated:
        response = admin_client.post(
            reverse("admin:channels_app_channelcost_add"),
            {"channel": channel.pk, "start_date": "2026-06-01", "end_date": "2026-06-30",
             "amount": "800", "currency": "CNY", "note": "立牌"},
        )  # fmt: skip
        assert response.status_code == 302
        api = APIClient()
        api.force_authenticate(response.wsgi_request.user)
        body = {"corp": channel.corp.corp_id, "channel": channel.code, "amount": "20",
                "start_date": "2026-07-01", "end_date": "2026-07-31"}  # fmt: skip
        assert api.post("/api/v1/channel-costs/", body, format="json").status_code == 201
        assert api.post("/api/v1/channel-costs/", [body], format="json").status_code == 201
    assert validated.call_count == 3
    assert sorted(ChannelCost.objects.values_list("note", "corp_id")) == [
        ("", channel.corp_id), ("", channel.corp_id), ("立牌", channel.corp_id),
    ]  # fmt: skip
    change = reverse("admin:channels_app_channelcost_change", args=[ChannelCost.objects.get(
        note="立牌").pk])  # fmt: skip
    assert admin_client.get(change).status_code == 200


def test_a_cost_in_another_currency_than_the_corps_is_refused(admin_user, channel):
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(admin_user)
    body = {"corp": channel.corp.corp_id, "channel": channel.code, "amount": "20",
            "currency": "USD", "start_date": "2026-07-01", "end_date": "2026-07-31"}  # fmt: skip
    response = api.post("/api/v1/channel-costs/", body, format="json")
    assert response.status_code == 400
    assert "CNY" in str(response.json()["currency"])
    assert "USD" in str(response.json()["currency"])
    assert not ChannelCost.objects.exists()
