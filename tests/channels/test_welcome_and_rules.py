"""Welcome messages by code, channel or rule, and auto-tag rules, applied once per add."""

import datetime as dt
import random

import pytest
from django.utils import timezone

from channels_app.models import SourceRule, WelcomeDelivery
from channels_app.services.publishing import live_code_publish
from contacts.models import CustomerTag, TimelineEvent
from contacts.tags import tag_library_sync
from scrm.wecom.client import WeComClient
from scrm.wecom.sandbox.models import SandboxContactWay, SandboxFollow, SandboxWelcomeCode
from scrm.wecom.sandbox.simulate import sandbox_customer_add

pytestmark = pytest.mark.django_db


@pytest.fixture
def tags(corp, sandbox_corp):
    """Two tags created in (sandbox) WeCom and mirrored here: {name: tag_id}."""
    client = WeComClient(corp)
    group = client.post(
        "externalcontact/add_corp_tag",
        {"group_name": "来源", "tag": [{"name": "老带新"}, {"name": "朋友圈"}]},
    )
    tag_library_sync(corp=corp)
    return {t["name"]: t["id"] for t in group["tag_group"]["tag"]}  # fmt: skip


def _add(sandbox_corp, post_event, *, userid="staff01", state="", add_way=1, seed=1):
    customer, follow, code = sandbox_customer_add(
        corp=sandbox_corp, userid=userid, rng=random.Random(seed), state=state, add_way=add_way
    )
    fields = {"UserID": userid, "ExternalUserID": customer.external_userid, "WelcomeCode": code}
    if state:
        fields["State"] = state
    post_event("add_external_contact", follow.createtime, **fields)
    return customer, follow, code, fields


def test_live_code_welcome_is_sent_with_variables(make_code, sandbox_corp, post_event, staff):
    from contacts.models import Staff

    Staff.objects.filter(pk=staff[0].pk).update(name="小美")
    code = live_code_publish(live_code=make_code(
        mode="native", welcome_text="您好{customer_name}，我是{staff_name}{不是变量}",
        welcome_attachments=[{"msgtype": "link", "link": {"title": "新人券", "url": "https://x"}}],
    ))  # fmt: skip
    way = SandboxContactWay.objects.get(config_id=code.config_id)
    customer, _, welcome_code, _ = _add(sandbox_corp, post_event, state=way.state)
    sent = SandboxWelcomeCode.objects.get(code=welcome_code)
    assert sent.message["text"]["content"] == f"您好{customer.name}，我是小美{{不是变量}}"
    assert sent.message["attachments"][0]["msgtype"] == "link"
    assert WelcomeDelivery.objects.get().outcome == "sent"
    assert TimelineEvent.objects.filter(kind="welcome_sent").count() == 1


def test_channel_welcome_when_the_code_has_none(make_code, channel, sandbox_corp, post_event):
    channel.welcome_text = "欢迎来自朋友圈的{customer_name}"
    channel.save()
    code = live_code_publish(live_code=make_code(mode="native"))
    way = SandboxContactWay.objects.get(config_id=code.config_id)
    _, _, welcome_code, _ = _add(sandbox_corp, post_event, state=way.state)
    assert (
        SandboxWelcomeCode.objects.get(code=welcome_code)
        .message["text"]["content"]
        .startswith("欢迎来自朋友圈的")
    )
    assert WelcomeDelivery.objects.get().source == "channel"


def test_rule_by_add_way_tags_and_welcomes_business_card_adds(corp, sandbox_corp, post_event, tags):
    SourceRule.objects.create(corp=corp, name="名片分享→老带新", add_way=3,
                              tag_ids=[tags["老带新"]], welcome_text="感谢朋友推荐！")  # fmt: skip
    _, _, welcome_code, fields = _add(sandbox_corp, post_event, add_way=3)
    assert SandboxWelcomeCode.objects.get(code=welcome_code).message["text"]["content"] == (
        "感谢朋友推荐！"
    )
    follow = SandboxFollow.objects.get(customer__external_userid=fields["ExternalUserID"])
    assert follow.tag_ids == [tags["老带新"]]
    assert list(CustomerTag.objects.values_list("tag__name", "source")) == [("老带新", "rule")]
    # A scan add (add_way 1) does not match: no tag, no welcome configured.
    _add(sandbox_corp, post_event, add_way=1, seed=2)
    assert CustomerTag.objects.count() == 1
    assert WelcomeDelivery.objects.filter(outcome="none").count() == 1


def test_rules_by_channel_type_state_prefix_and_time_window(
    corp, make_code, channel, sandbox_corp, post_event, tags
):
    SourceRule.objects.create(corp=corp, name="广告", channel_type=2, tag_ids=[tags["朋友圈"]])
    SourceRule.objects.create(corp=corp, name="夜间", state_prefix="sc", tag_ids=[tags["老带新"]],
                              time_from=dt.time(22), time_to=dt.time(6))  # fmt: skip
    code = live_code_publish(live_code=make_code(mode="native"))
    way = SandboxContactWay.objects.get(config_id=code.config_id)
    _add(sandbox_corp, post_event, state=way.state)
    names = set(CustomerTag.objects.values_list("tag__name", flat=True))
    local_hour = timezone.now().astimezone(corp.tzinfo).hour
    expected = {"朋友圈", "老带新"} if local_hour >= 22 or local_hour < 6 else {"朋友圈"}
    assert names == expected


def test_a_replayed_add_never_tags_or_welcomes_twice(corp, sandbox_corp, post_event, tags):
    from contacts.models import FollowRelation
    from scrm.pipeline import after_add

    SourceRule.objects.create(corp=corp, name="全部", scope="any_add", tag_ids=[tags["朋友圈"]],
                              welcome_text="hi")  # fmt: skip
    _, follow, _, fields = _add(sandbox_corp, post_event)
    post_event("add_external_contact", follow.createtime, **fields)  # WeCom's retry
    attribution = FollowRelation.objects.get().attributions.get()
    after_add(attribution_id=attribution.pk, welcome_code=fields["WelcomeCode"],
              received_at=timezone.now())  # processing replayed by hand  # fmt: skip
    assert WelcomeDelivery.objects.count() == 1
    assert CustomerTag.objects.count() == 1
    assert TimelineEvent.objects.filter(kind="tagged").count() == 1
    assert SandboxWelcomeCode.objects.filter(used_at__isnull=False).count() == 1


@pytest.mark.parametrize(("age", "outcome"), [(25, "expired"), (None, "already_chatting")])
def test_expired_or_used_welcome_codes_are_recorded(corp, sandbox_corp, post_event, age, outcome):
    SourceRule.objects.create(corp=corp, name="全部", welcome_text="hi")
    customer, follow, code = sandbox_customer_add(
        corp=sandbox_corp, userid="staff01", rng=random.Random(9)
    )
    codes = SandboxWelcomeCode.objects.filter(code=code)
    if age:
        codes.update(issued_at=timezone.now() - dt.timedelta(seconds=age))
    else:
        codes.update(used_at=timezone.now())  # another app sent it first
    post_event("add_external_contact", follow.createtime, UserID="staff01",
               ExternalUserID=customer.external_userid, WelcomeCode=code)  # fmt: skip
    delivery = WelcomeDelivery.objects.get()
    assert delivery.outcome == outcome
    assert TimelineEvent.objects.get(kind="welcome_failed").data["outcome"] == outcome
