"""GET /api/v1/contacts/: a customer's first source names its channel and live code (ids, names,
code and slug), and the list filters by them, by id or by code; another corp's channel or code
matches none of the caller's customers and says nothing about them."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from channels_app.models import Channel, LiveCode
from channels_app.state import encode_state
from contacts.models import ExternalContact
from scrm.pipeline import add_record
from scrm.wecom.models import Corp
from scrm.wecom.sandbox.simulate import random_aes_key
from scrm.wecom.services import corp_create
from tests.tenancy import member

pytestmark = pytest.mark.django_db

URL = "/api/v1/contacts/"


def _code(corp: Corp, channel: Channel, slug: str, name: str) -> LiveCode:
    code = LiveCode.objects.create(corp=corp, channel=channel, name=name, slug=slug,
                                   mode=LiveCode.Mode.NATIVE)  # fmt: skip
    code.state = encode_state("native", code.pk)
    code.save(update_fields=["state"])
    return code


def _customer(corp: Corp, external_userid: str, state: str, hours_ago: int = 1) -> ExternalContact:
    added_at = timezone.now() - dt.timedelta(hours=hours_ago)
    return add_record(corp=corp, userid="staff01", external_userid=external_userid, state=state,
                      added_at=added_at).relation.external_contact  # fmt: skip


@pytest.fixture
def world(corp) -> dict:
    moments = Channel.objects.create(corp=corp, name="朋友圈广告", code="pyq_1")
    douyin = Channel.objects.create(corp=corp, name="抖音信息流", code="dy_1")
    poster = _code(corp, moments, "poster-618", "618 海报")
    feed = _code(corp, douyin, "dy-feed", "抖音投放码")
    return {
        "moments": moments,
        "douyin": douyin,
        "poster": poster,
        "feed": feed,
        "via_poster": _customer(corp, "wm_via_poster", poster.state),
        "via_feed": _customer(corp, "wm_via_feed", feed.state),
        "unattributed": _customer(corp, "wm_no_code", "not_a_code_state"),
    }


@pytest.fixture
def other_corp() -> dict:
    """Another corp with a channel of the same code and a customer who came through it."""
    corp = corp_create(corp_id="wwother000000003", name="另一家企业",
                       secret="other-secret-value-0123456789abcdef",
                       callback_token="othertoken0123456789",
                       encoding_aes_key=random_aes_key())  # fmt: skip
    channel = Channel.objects.create(corp=corp, name="别家朋友圈", code="pyq_1")
    code = _code(corp, channel, "other-poster", "别家海报")
    return {"corp": corp, "channel": channel, "code": code,
            "customer": _customer(corp, "wm_other", code.state)}  # fmt: skip


@pytest.fixture
def api(django_user_model, corp) -> APIClient:
    client = APIClient()
    client.force_login(member(django_user_model.objects.create_user(username="ops"), corp))
    return client


def _ids(response) -> set[int]:
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


def test_first_source_names_its_channel_and_live_code(api, world):
    row = api.get(f"{URL}{world['via_poster'].pk}/").json()
    first = row["first_source"]
    poster, moments = world["poster"], world["moments"]
    assert (first["live_code_id"], first["live_code_name"], first["live_code_slug"]) == (
        poster.pk, "618 海报", "poster-618",
    )  # fmt: skip
    assert (first["channel_id"], first["channel_name"], first["channel_code"]) == (
        moments.pk, "朋友圈广告", "pyq_1",
    )  # fmt: skip

    listed = {r["id"]: r["first_source"] for r in api.get(URL).json()["results"]}
    assert listed[world["via_feed"].pk]["channel_name"] == "抖音信息流"
    assert listed[world["via_feed"].pk]["live_code_slug"] == "dy-feed"
    unattributed = listed[world["unattributed"].pk]
    assert unattributed["state"] == "not_a_code_state"
    for name in ("live_code_id", "live_code_name", "live_code_slug", "channel_id",
                 "channel_name", "channel_code"):  # fmt: skip
        assert unattributed[name] is None, name


def test_a_manager_sees_the_channel_and_code_too(django_user_model, corp, world):
    client = APIClient()
    client.force_login(
        member(django_user_model.objects.create_user(username="mgr"), corp, role="manager")
    )
    first = client.get(f"{URL}{world['via_poster'].pk}/").json()["first_source"]
    assert (first["channel_name"], first["live_code_name"]) == ("朋友圈广告", "618 海报")


def test_filters_by_first_channel_and_live_code_by_id_and_by_code(api, world):
    poster_customer, feed_customer = world["via_poster"].pk, world["via_feed"].pk
    assert _ids(api.get(URL, {"first_channel": world["moments"].pk})) == {poster_customer}
    assert _ids(api.get(URL, {"first_channel": world["douyin"].pk})) == {feed_customer}
    assert _ids(api.get(URL, {"first_channel_code": "dy_1"})) == {feed_customer}
    assert _ids(api.get(URL, {"first_live_code": world["poster"].pk})) == {poster_customer}
    assert _ids(api.get(URL, {"first_live_code_slug": "dy-feed"})) == {feed_customer}
    assert _ids(api.get(URL, {"first_live_code_slug": "nope"})) == set()
    # Combined with each other and with the other filters (AND).
    both = {"first_channel_code": "pyq_1", "first_live_code_slug": "dy-feed"}
    assert _ids(api.get(URL, both)) == set()
    assert _ids(api.get(URL, {"first_channel": world["moments"].pk, "staff": "staff01"})) == {
        poster_customer
    }


@pytest.mark.parametrize(
    "query",
    [
        {"first_channel": "abc"},
        {"first_channel": "1.5"},
        {"first_channel": "0"},
        {"first_live_code": "99999999999999999999"},  # beyond a 64-bit id: not the database's
        {"first_live_code": "-1"},
    ],
)
def test_a_bad_id_is_a_400_with_a_reason(api, world, query):
    response = api.get(URL, query)
    assert response.status_code == 400
    (name,) = query
    assert response.json()[name]


def test_another_corps_channel_and_code_match_none_of_ours(api, world, other_corp):
    assert _ids(api.get(URL, {"first_channel": other_corp["channel"].pk})) == set()
    assert _ids(api.get(URL, {"first_live_code": other_corp["code"].pk})) == set()
    assert _ids(api.get(URL, {"first_live_code_slug": "other-poster"})) == set()
    # The same channel code in both corps: only the caller's corp's customers.
    assert _ids(api.get(URL, {"first_channel_code": "pyq_1"})) == {world["via_poster"].pk}
    # And an unknown id answers exactly as another corp's: nothing tells them apart.
    unknown = api.get(URL, {"first_channel": other_corp["channel"].pk + 1000}).json()
    foreign = api.get(URL, {"first_channel": other_corp["channel"].pk}).json()
    assert unknown == foreign


def test_the_list_names_channels_and_codes_in_constant_queries(api, corp, world):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert api.get(URL).status_code == 200
        return len(captured)

    queries()  # warm up per-process caches
    few = queries()
    for index in range(12):
        code = world["poster"] if index % 2 else world["feed"]
        _customer(corp, f"wm_more_{index}", code.state, hours_ago=2 + index)
    assert ExternalContact.objects.count() == 15
    assert queries() == few
