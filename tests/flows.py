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
