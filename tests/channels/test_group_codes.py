"""客户群活码: join ways published with our state; members who join are attributed by it."""

import pytest

from channels_app.models import GroupJoinWay, GroupMemberJoin
from channels_app.services.groups import group_join_way_publish
from channels_app.services.publishing import PublishError
from scrm.wecom.models import CallbackEvent
from scrm.wecom.sandbox.models import SandboxGroupMember, SandboxJoinWay
from scrm.wecom.sandbox.simulate import sandbox_group_chat_create, simulate_group_joins

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def group_chat(sandbox_corp):
    return sandbox_group_chat_create(corp=sandbox_corp, name="福利群1", owner="staff01")


def test_publish_and_attribute_joins_through_the_callback(corp, channel, group_chat, live_server):
    way = GroupJoinWay.objects.create(corp=corp, channel=channel, name="福利群活码",
                                      chat_ids=[group_chat.chat_id])  # fmt: skip
    way = group_join_way_publish(join_way=way)
    sandbox_way = SandboxJoinWay.objects.get(config_id=way.config_id)
    assert sandbox_way.state == way.state
    assert way.qr_code
    report = simulate_group_joins(corp_id=corp.corp_id, config_id=way.config_id, joins=4,
                                  url=live_server.url)  # fmt: skip
    assert report.answered_200 == 4
    joins = GroupMemberJoin.objects.all()
    assert joins.count() == 4
    assert set(joins.values_list("join_way", "channel", "state_kind", "join_scene")) == {
        (way.pk, channel.pk, "group", 3)
    }
    assert CallbackEvent.objects.filter(status="processed").count() == 4


def test_members_joining_otherwise_are_kept_unattributed(corp, group_chat, live_server):
    SandboxGroupMember.objects.create(chat=group_chat, userid="wmzzz", join_time=1, state="")
    way = SandboxJoinWay.objects.create(
        corp=group_chat.corp, config_id="x1", scene=2, chat_ids=[group_chat.chat_id],
        state="other-tool",
    )  # fmt: skip
    simulate_group_joins(corp_id=corp.corp_id, config_id=way.config_id, joins=1,
                         url=live_server.url)  # fmt: skip
    join = GroupMemberJoin.objects.get()
    assert (join.join_way, join.state, join.state_kind) == (None, "other-tool", "foreign")


def test_publish_refuses_unknown_chats_with_a_reason(corp, channel):
    way = GroupJoinWay.objects.create(corp=corp, channel=channel, name="x", chat_ids=["nope"])
    with pytest.raises(PublishError, match="90501"):
        group_join_way_publish(join_way=way)
