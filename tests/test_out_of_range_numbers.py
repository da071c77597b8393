"""A number too large for the database in a URL is a 4xx with a reason, never a 500. Found by
sweeping every API list and admin changelist with junk parameters: `?limit=` on the API and
any foreign-key or integer filter on an admin changelist reached the database as an integer it
cannot hold (SQLite OverflowError, PostgreSQL bigint out of range)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from channels_app.models import Channel
from scrm.pagination import BoundedLimitOffsetPagination

HUGE = "99999999999999999999"  # > 2**63 - 1


@pytest.fixture
def operator(db):
    return get_user_model().objects.create_superuser("operator", "op@example.cn", "pw")


def test_api_limit_is_capped_instead_of_reaching_the_database(operator, corp, monkeypatch):
    for number in range(3):
        Channel.objects.create(corp=corp, name=f"渠道 {number}", code=f"pyq_{number}")
    api = APIClient(raise_request_exception=False)
    api.force_authenticate(operator)
    response = api.get("/api/v1/channels/", {"limit": HUGE})
    assert response.status_code == 200
    assert len(response.json()["results"]) == 3
    # A ceiling below the rows there are: the client gets that many and a link to the rest.
    monkeypatch.setattr(BoundedLimitOffsetPagination, "max_limit", 2)
    page = api.get("/api/v1/channels/", {"limit": HUGE}).json()
    assert (len(page["results"]), page["count"]) == (2, 3)
    assert "offset=2" in page["next"]


@pytest.mark.parametrize(
    "query",
    [{"corp": HUGE}, {"corp__id__in": f"1,{HUGE}"}, {"corp": f"-{HUGE}"}],
)
def test_admin_filter_with_an_out_of_range_number_is_a_400(client, operator, corp, query):
    client.raise_request_exception = False
    client.force_login(operator)
    response = client.get("/admin/contacts/staff/", query)
    assert response.status_code == 400
    assert "corp" in response.content.decode()


def test_admin_search_and_in_range_numbers_pass(client, operator, corp):
    client.force_login(operator)
    for query in ({"q": HUGE}, {"corp": str(2**63 - 1)}):
        response = client.get("/admin/contacts/staff/", query)
        assert response.status_code == 200
        assert response.context["cl"].result_count == 0  # searched and filtered, no match
