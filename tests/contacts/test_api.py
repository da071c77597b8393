"""GET /api/v1/contacts/: authenticated, filtered by first source, no secrets, no N+1."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from contacts.models import ExternalContact
from scrm.pipeline import add_record
from scrm.wecom.models import Corp
from scrm.wecom.sandbox.simulate import random_aes_key
from scrm.wecom.services import corp_create
from tests.flows import customer_flows_in
from tests.tenancy import member

pytestmark = pytest.mark.django_db

URL = "/api/v1/contacts/"
DAY = 86400


@pytest.fixture
def user(django_user_model, corp):
    """An operator of the sandbox corp (unusable password: fast)."""
    return member(django_user_model.objects.create_user(username="ops"), corp)


@pytest.fixture
def api(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def customers(sandbox_corp, post_event) -> dict[str, ExternalContact]:
    """scan: staff01 today by QR code; card: staff02 three days ago by business card."""
    now = int(time.time())
    return {
        "scan": customer_flows_in(sandbox_corp, post_event, userid="staff01", state="pyq_0012"),
        "card": customer_flows_in(
            sandbox_corp,
            post_event,
            userid="staff02",
            state="xhs_618",
            add_way=3,
            create_time=now - 3 * DAY,
            seed=2,
        ),
    }


def _ids(response) -> set[int]:
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


# -- authentication ----------------------------------------------------------------------------


def test_anonymous_is_refused(customers):
    response = APIClient().get(URL)
    assert response.status_code in (401, 403)
    assert "results" not in response.json()


def test_session_login_lists_customers(api, customers):
    assert _ids(api.get(URL)) == {c.pk for c in customers.values()}


def test_token_auth_lists_customers(user, customers):
    token = Token.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert _ids(client.get(URL)) == {c.pk for c in customers.values()}
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert client.get(URL).status_code in (401, 403)


# -- payload -----------------------------------------------------------------------------------


def test_customer_carries_first_source_and_relations(api, customers):
    scan = customers["scan"]
    response = api.get(f"{URL}{scan.pk}/")
    assert response.status_code == 200
    row = response.json()
    assert (row["external_userid"], row["corp"]) == (scan.external_userid, scan.corp.corp_id)
    first = row["first_source"]
    assert {"add_way", "add_way_label", "state", "staff", "added_at"} <= first.keys()
    assert (first["add_way"], first["state"], first["staff"]) == (1, "pyq_0012", "staff01")
    assert first["add_way_label"] == "扫描二维码"  # the default language is zh-hans
    added_at = dt.datetime.fromisoformat(first["added_at"])
    assert added_at == scan.first_source.added_at
    (relation,) = row["relations"]
    assert (relation["staff"], relation["state"], relation["status"]) == (
        "staff01",
        "pyq_0012",
        "active",
    )


def test_add_way_label_follows_accept_language(api, customers):
    response = api.get(URL, {"add_way": 3}, HTTP_ACCEPT_LANGUAGE="en")
    (row,) = response.json()["results"]
    assert row["first_source"]["add_way_label"] == "Business card shared"
    response = api.get(URL, {"add_way": 3})
    (row,) = response.json()["results"]
    assert row["first_source"]["add_way_label"] == "名片分享"


def test_customer_without_first_source_yet_has_null_first_source(api, corp):
    ExternalContact.objects.create(corp=corp, external_userid="wm_only_a_delete_so_far")
    (row,) = api.get(URL).json()["results"]
    assert row["first_source"] is None
    assert row["relations"] == []


# -- filters -----------------------------------------------------------------------------------


def test_filters_by_first_source_fields(api, customers):
    scan, card = customers["scan"], customers["card"]
    both = {scan.pk, card.pk}
    assert _ids(api.get(URL, {"external_userid": scan.external_userid})) == {scan.pk}
    assert _ids(api.get(URL, {"state": "xhs_618"})) == {card.pk}
    assert _ids(api.get(URL, {"state": "nope"})) == set()
    assert _ids(api.get(URL, {"add_way": 1})) == {scan.pk}
    assert _ids(api.get(URL, {"add_way": 3})) == {card.pk}
    assert _ids(api.get(URL, {"staff": "staff02"})) == {card.pk}
    assert _ids(api.get(URL, {"corp": scan.corp.corp_id})) == both
    assert _ids(api.get(URL, {"corp": "wwnobody"})) == set()


def test_filters_by_first_added_dates(api, customers):
    scan, card = customers["scan"], customers["card"]
    today = timezone.localdate()
    yesterday = (today - dt.timedelta(days=1)).isoformat()
    assert _ids(api.get(URL, {"added_from": today.isoformat()})) == {scan.pk}
    assert _ids(api.get(URL, {"added_to": yesterday})) == {card.pk}
    window = {"added_from": (today - dt.timedelta(days=3)).isoformat(), "added_to": yesterday}
    assert _ids(api.get(URL, window)) == {card.pk}
    assert _ids(api.get(URL, {"added_from": today.isoformat(), "added_to": yesterday})) == set()


def test_corp_filter_separates_corps(api, user, customers):
    other = corp_create(
        corp_id="wwother000000002",
        name="另一家企业",
        secret="other-secret-value-0123456789abcdef",
        callback_token="othertoken0123456789",
        encoding_aes_key=random_aes_key(),
    )
    relation = add_record(
        corp=other,
        userid="zhangsan",
        external_userid="wm_other_corp_customer",
        state="dy_ad_07",
        added_at=timezone.now(),
    ).relation
    member(user, other)  # an operator of both corps
    assert _ids(api.get(URL, {"corp": other.corp_id})) == {relation.external_contact_id}
    assert relation.external_contact_id not in _ids(
        api.get(URL, {"corp": customers["scan"].corp.corp_id})
    )


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"add_way": "abc"}, "add_way"),
        ({"add_way": "1.5"}, "add_way"),
        ({"added_from": "notadate"}, "added_from"),
        ({"added_to": "2024-13-45"}, "added_to"),
    ],
)
def test_invalid_filter_value_is_a_400_with_a_reason(api, customers, params, field):
    response = api.get(URL, params)
    assert response.status_code == 400
    reasons = response.json()[field]
    assert reasons
    assert all(isinstance(reason, str) and reason for reason in reasons)


# -- secrets and query count -------------------------------------------------------------------


def test_corp_secrets_never_appear_in_any_response(api, corp, customers):
    stored = Corp.objects.get(pk=corp.pk)
    secrets = (stored.secret, stored.callback_token, stored.encoding_aes_key)
    responses = [
        api.get("/api/v1/"),
        api.get(URL),
        api.get(f"{URL}{customers['scan'].pk}/"),
        api.get(URL, {"corp": corp.corp_id}),
        api.get(URL, {"add_way": "abc"}),
        api.get(URL, {"format": "api"}),
        api.options(URL),
        APIClient().get(URL),
    ]
    for response in responses:
        body = response.content.decode()
        assert response.status_code < 500
        for secret in secrets:
            assert secret not in body
    listed = json.loads(responses[1].content)["results"][0]
    assert listed["corp"] == corp.corp_id


def test_queries_do_not_grow_with_customers(api, sandbox_corp, post_event):
    def list_queries() -> tuple[int, int]:
        with CaptureQueriesContext(connection) as queries:
            response = api.get(URL)
        assert response.status_code == 200
        return len(queries), response.json()["count"]

    staff = ["staff01", "staff02", "staff03"]
    for index in range(3):
        customer_flows_in(
            sandbox_corp, post_event, userid=staff[index], state=f"s{index}", seed=index
        )
    list_queries()  # warm up per-process caches
    few, count = list_queries()
    assert count == 3
    for index in range(3, 30):
        customer_flows_in(
            sandbox_corp, post_event, userid=staff[index % 3], state=f"s{index}", seed=index
        )
    # A second follow relation on some customers must not add queries either.
    for contact in ExternalContact.objects.select_related("corp")[:5]:
        add_record(
            corp=contact.corp,
            userid="staff03",
            external_userid=contact.external_userid,
            state="re_add",
            added_at=timezone.now(),
        )
    many, count = list_queries()
    assert count == 30
    assert many == few
