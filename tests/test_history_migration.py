"""The migration to the relation history keeps what the current-state tables knew: re-adds
remembered only by their attributions, first adds remembered only by the first source, adds
never attributed (backfills), deletions, and each row's corp."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [
    ("contacts", "0006_labels"),
    ("channels_app", "0005_scan_visit_id"),
    ("wecom", "0003_callback_event_corp_index"),
]
AFTER = [("contacts", "0008_history_required"), ("channels_app", "0008_history_required")]
T0 = dt.datetime(2026, 10, 1, 2, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture
def _back_to_the_latest_schema():
    yield
    executor = MigrationExecutor(connection)
    _migrate(executor.loader.graph.leaf_nodes())  # the other tests run on today's schema


@pytest.mark.usefixtures("_back_to_the_latest_schema")
def test_history_first_sources_and_corps_are_rebuilt_from_the_old_tables():
    from channels_app.state import encode_state

    old = _migrate(BEFORE)
    Corp = old.get_model("wecom", "Corp")
    Staff = old.get_model("contacts", "Staff")
    Contact = old.get_model("contacts", "ExternalContact")
    Relation = old.get_model("contacts", "FollowRelation")
    FirstSource = old.get_model("contacts", "FirstSource")
    Channel = old.get_model("channels_app", "Channel")
    LiveCode = old.get_model("channels_app", "LiveCode")
    PoolMember = old.get_model("channels_app", "PoolMember")
    Attribution = old.get_model("channels_app", "Attribution")

    corp = Corp.objects.create(corp_id="wwmigrate", name="迁移", secret="s", callback_token="t",
                               encoding_aes_key="a" * 43)  # fmt: skip
    staff1 = Staff.objects.create(corp=corp, userid="staff01")
    staff2 = Staff.objects.create(corp=corp, userid="staff02")
    channel = Channel.objects.create(corp=corp, name="朋友圈", code="pyq_0012")
    code = LiveCode.objects.create(corp=corp, channel=channel, name="码", slug="m1")
    code.state = encode_state("native", code.pk)
    code.save()
    PoolMember.objects.create(live_code=code, staff=staff1)
    contact = Contact.objects.create(corp=corp, external_userid="wm_migrate")
    # staff01: first add at T0 (attributed), re-add at T0+2h (the relation's add time moved on).
    rel1 = Relation.objects.create(corp=corp, external_contact=contact, staff=staff1,
                                   created_at=T0 + 2 * HOUR, state=code.state, add_way=1,
                                   status_changed_at=T0 + 2 * HOUR)  # fmt: skip
    for added_at, first in ((T0, True), (T0 + 2 * HOUR, False)):
        Attribution.objects.create(corp=corp, external_contact=contact, follow_relation=rel1,
                                   staff=staff1, live_code=code, channel=channel,
                                   state=code.state, state_kind="native", added_at=added_at,
                                   is_first_touch=first)  # fmt: skip
    FirstSource.objects.create(corp=corp, external_contact=contact, staff=staff1, added_at=T0,
                               state=code.state, add_way=1, live_code_id=code.pk,
                               channel_id=channel.pk)  # fmt: skip
    # staff02: backfilled by calibration (never attributed), deleted by the customer since.
    Relation.objects.create(corp=corp, external_contact=contact, staff=staff2,
                            created_at=T0 + HOUR, state=code.state, backfilled=True,
                            status="deleted_by_customer", status_changed_at=T0 + 3 * HOUR,
                            deleted_at=T0 + 3 * HOUR)  # fmt: skip

    new = _migrate(AFTER)
    RelationEvent = new.get_model("contacts", "RelationEvent")
    history = list(
        RelationEvent.objects.order_by("occurred_at").values_list(
            "staff__userid", "kind", "occurred_at", "backfilled"
        )
    )
    assert history == [
        ("staff01", "added", T0, False),
        ("staff02", "added", T0 + HOUR, True),
        ("staff01", "added", T0 + 2 * HOUR, False),
        ("staff02", "deleted_by_customer", T0 + 3 * HOUR, False),
    ]
    attributions = new.get_model("channels_app", "Attribution").objects.order_by("added_at")
    assert list(
        attributions.values_list(
            "staff__userid", "add_event__occurred_at", "live_code_id", "is_first_touch"
        )
    ) == [
        ("staff01", T0, code.pk, True),
        ("staff02", T0 + HOUR, code.pk, False),  # attributed from its state at last
        ("staff01", T0 + 2 * HOUR, code.pk, False),
    ]
    first = new.get_model("contacts", "FirstSource").objects.get()
    assert (first.add_event.occurred_at, first.add_event.staff_id) == (T0, staff1.pk)
    member = new.get_model("channels_app", "PoolMember").objects.get()
    assert member.corp_id == corp.pk
