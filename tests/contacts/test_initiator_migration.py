"""contacts 0012 gives each relation's latest add the initiator WeCom told through the
relation's oper_userid; earlier adds of the relation stay unknown."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("contacts", "0011_customer_tag_sources")]
AFTER = [("contacts", "0012_relation_oper_userid")]
T0 = dt.datetime(2026, 10, 1, 2, 0, tzinfo=dt.UTC)


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture
def _back_to_the_latest_schema():
    yield
    executor = MigrationExecutor(connection)
    _migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.usefixtures("_back_to_the_latest_schema")
def test_the_latest_add_of_each_relation_gets_its_initiator():
    from scrm.wecom.models import Corp  # the gateway's schema is today's: only contacts moved

    old = _migrate(BEFORE)
    Staff = old.get_model("contacts", "Staff")
    Contact = old.get_model("contacts", "ExternalContact")
    Relation = old.get_model("contacts", "FollowRelation")
    Event = old.get_model("contacts", "RelationEvent")
    corp = Corp.objects.create(corp_id="wwinitiator", name="发起人", secret="s",
                               callback_token="t", encoding_aes_key="a" * 43)  # fmt: skip
    corp = old.get_model("wecom", "Corp").objects.get(pk=corp.pk)
    staff = Staff.objects.create(corp=corp, userid="staff01")
    made = {}
    for name, add_way, oper in (
        ("member", 2, "staff01"),
        ("customer", 1, "wm-customer"),
        ("assigned", 202, "staff01"),
        ("card", 3, "wm-sharer"),
        ("unknown", 1, ""),
    ):
        contact = Contact.objects.create(corp=corp, external_userid=f"wm-{name}")
        relation = Relation.objects.create(corp=corp, external_contact=contact, staff=staff,
                                           add_way=add_way, oper_userid=oper)  # fmt: skip
        adds = [
            Event.objects.create(
                corp=corp,
                follow_relation=relation,
                external_contact=contact,
                staff=staff,
                kind="added",
                occurred_at=T0 + dt.timedelta(days=d),
                add_way=add_way,
            )
            for d in (0, 1)
        ]
        made[name] = adds

    new = _migrate(AFTER)
    Event = new.get_model("contacts", "RelationEvent")
    initiators = {
        name: list(Event.objects.filter(pk__in=[a.pk for a in adds]).order_by("occurred_at")
                   .values_list("initiator", flat=True))
        for name, adds in made.items()
    }  # fmt: skip
    assert initiators == {
        "member": ["", "staff"],
        "customer": ["", "customer"],
        "assigned": ["", "handed_over"],  # 202 by staff01 itself: an assignment all the same
        "card": ["", "other"],
        "unknown": ["", ""],
    }
