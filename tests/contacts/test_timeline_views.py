"""The customer timeline (客户动态) on the customer's admin page and in the API: newest first,
the right kinds after an add, tagging, untagging and a delete, times in the corp's zone."""

from __future__ import annotations

import random
import time
import zoneinfo

import pytest
from django.urls import reverse
from django.utils import translation
from rest_framework.test import APIClient

from contacts.models import ExternalContact, FollowRelation, TimelineEvent
from contacts.tags import customer_tags_remove, tag_group_create, tags_apply
from scrm.wecom.sandbox.simulate import sandbox_customer_add
from tests.tenancy import member

pytestmark = pytest.mark.django_db

TOKYO = "Asia/Tokyo"  # not the server's zone (Asia/Shanghai): the corp's zone must win
NEWEST_FIRST = ["deleted_by_customer", "untagged", "tagged", "added"]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def customer(corp, sandbox_corp, post_event) -> ExternalContact:
    """Added 10 minutes ago, tagged twice, one tag removed, then it deleted staff01."""
    corp.time_zone = TOKYO
    corp.save(update_fields=["time_zone"])
    group = tag_group_create(corp=corp, name="来源", tag_names=["老带新", "朋友圈"])
    tag_ids = dict(group.tags.values_list("name", "tag_id"))
    sandbox_customer, follow, _code = sandbox_customer_add(
        corp=sandbox_corp, userid="staff01", rng=random.Random(1), state="pyq_0012",
        create_time=int(time.time()) - 600,
    )  # fmt: skip
    external_userid = sandbox_customer.external_userid
    for _delivery in range(2):  # WeCom retries: one line per event all the same
        post_event("add_external_contact", follow.createtime, UserID="staff01",
                   ExternalUserID=external_userid, State="pyq_0012")  # fmt: skip
    relation = FollowRelation.objects.get(external_contact__external_userid=external_userid)
    tags_apply(relation=relation, tag_ids=list(tag_ids.values()), source="manual")
    customer_tags_remove(relation=relation, tag_ids=[tag_ids["朋友圈"]])
    post_event("del_follow_user", int(time.time()) + 1, UserID="staff01",
               ExternalUserID=external_userid)  # fmt: skip
    return ExternalContact.objects.get(external_userid=external_userid)


@pytest.fixture
def api(django_user_model, corp) -> APIClient:
    client = APIClient()
    client.force_login(member(django_user_model.objects.create_user(username="ops"), corp))
    return client


def _url(contact: ExternalContact) -> str:
    return f"/api/v1/contacts/{contact.pk}/timeline/"


def test_admin_customer_page_lists_the_timeline_newest_first(admin_client, customer):
    response = admin_client.get(
        reverse("admin:contacts_externalcontact_change", args=[customer.pk]),
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert response.status_code == 200
    (timeline,) = [
        inline
        for inline in response.context["inline_admin_formsets"]
        if inline.opts.model is TimelineEvent
    ]
    events = [form.instance for form in timeline.formset.forms]
    assert [event.kind for event in events] == NEWEST_FIRST
    html = response.content.decode()
    tokyo = zoneinfo.ZoneInfo(TOKYO)
    for event in events:
        assert f"{event.occurred_at.astimezone(tokyo):%Y-%m-%d %H:%M:%S}" in html
    for label in ("deleted by customer", "tag removed", "tagged", "老带新、朋友圈", "朋友圈"):
        assert label in html
    # The tags the customer has now, per staff member: the removed one is gone.
    assert "来源/老带新" in html
    assert "来源/朋友圈" not in html


def test_api_gives_the_timeline_newest_first_in_the_corp_zone(api, customer):
    response = api.get(_url(customer), HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 4
    rows = body["results"]
    assert [row["kind"] for row in rows] == NEWEST_FIRST
    assert [row["kind_label"] for row in rows] == [
        "deleted by customer", "tag removed", "tagged", "added",
    ]  # fmt: skip
    assert {row["staff"] for row in rows} == {"staff01"}
    assert all(row["occurred_at"].endswith("+09:00") for row in rows)
    assert rows[2]["summary"] == "老带新、朋友圈"
    assert rows[3]["data"]["state"] == "pyq_0012"


def test_api_timeline_is_paginated_and_chinese_by_default(api, customer):
    first = api.get(_url(customer), {"limit": 2}).json()
    assert [row["kind"] for row in first["results"]] == NEWEST_FIRST[:2]
    with translation.override("zh-hans"):  # the default language, in the catalogue's words
        assert first["results"][0]["kind_label"] == str(
            TimelineEvent.Kind.DELETED_BY_CUSTOMER.label
        )
    second = api.get(first["next"]).json()
    assert [row["kind"] for row in second["results"]] == NEWEST_FIRST[2:]
    assert second["next"] is None


def test_api_timeline_needs_a_login_and_a_known_customer(api, customer):
    response = APIClient().get(_url(customer))
    assert response.status_code in (401, 403)
    assert "results" not in response.json()
    assert api.get(f"/api/v1/contacts/{customer.pk + 1000}/timeline/").status_code == 404
    # The customer's own route still answers beside the timeline's.
    assert api.get(f"/api/v1/contacts/{customer.pk}/").json()["id"] == customer.pk
