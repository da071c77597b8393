"""Steps several test modules share: what happens in the sandbox WeCom, then the callback."""

from __future__ import annotations

import random

from contacts.models import ExternalContact
from scrm.wecom.sandbox.simulate import sandbox_customer_add


def customer_flows_in(
    sandbox_corp,
    post_event,
    *,
    userid: str = "staff01",
    state: str = "pyq_0012",
    add_way: int = 1,
    create_time: int | None = None,
    seed: int = 1,
    oper_userid: str | None = None,
) -> ExternalContact:
    """A customer adds `userid` on the sandbox's side and the callback carries it in.
    `oper_userid`: who initiated the add as WeCom tells it (default: the customer; `userid`
    for an add the staff member initiated)."""
    customer, follow, _code = sandbox_customer_add(
        corp=sandbox_corp,
        userid=userid,
        rng=random.Random(seed),
        state=state,
        add_way=add_way,
        create_time=create_time,
        oper_userid=oper_userid,
    )
    response = post_event(
        "add_external_contact",
        follow.createtime,
        UserID=userid,
        ExternalUserID=customer.external_userid,
        State=state,
    )
    assert response.status_code == 200
    return ExternalContact.objects.get(external_userid=customer.external_userid)


def welcome_rule_with_tag(corp) -> None:
    """A rule for every add with a welcome text ({customer_name}) and a tag made in WeCom."""
    from channels_app.models import SourceRule
    from contacts.tags import tag_library_sync
    from scrm.wecom.client import WeComClient

    group = WeComClient(corp).post(
        "externalcontact/add_corp_tag", {"group_name": "来源", "tag": [{"name": "直播"}]}
    )
    tag_library_sync(corp=corp)
    SourceRule.objects.create(corp=corp, name="全部", welcome_text="您好 {customer_name}",
                              tag_ids=[group["tag_group"]["tag"][0]["id"]])  # fmt: skip


def add_with_welcome_code_stored(corp, sandbox_corp, crypto, client, capture, *, seed: int = 3):
    """One new customer adds staff01; the add's callback, with its welcome code, is delivered
    and stored in the inbox, not processed (the queued processing is dropped). Returns the
    inbox row and the welcome code."""
    import time

    from scrm.wecom.models import CallbackEvent
    from scrm.wecom.sandbox.simulate import event_xml

    customer, follow, code = sandbox_customer_add(
        corp=sandbox_corp, userid="staff01", rng=random.Random(seed)
    )
    xml = event_xml(corp.corp_id, "add_external_contact", follow.createtime, UserID="staff01",
                    ExternalUserID=customer.external_userid, WelcomeCode=code)  # fmt: skip
    timestamp, nonce = str(int(time.time())), "12345"
    body, signature = crypto.envelope(xml, timestamp=timestamp, nonce=nonce)
    with capture(execute=False):
        client.post(f"/wecom/callback/{corp.corp_id}/?msg_signature={signature}"
                    f"&timestamp={timestamp}&nonce={nonce}", data=body,
                    content_type="text/xml")  # fmt: skip
    return CallbackEvent.objects.get(), code
