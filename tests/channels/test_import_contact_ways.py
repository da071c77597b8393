"""Adopting contact ways made elsewhere: list_contact_way page by page, then get_contact_way."""

import random

import pytest

from channels_app.models import Attribution, LiveCode
from channels_app.services.publishing import live_code_publish, live_codes_import
from scrm.wecom.client import WeComClient
from scrm.wecom.models import ApiCall
from scrm.wecom.sandbox.simulate import sandbox_customer_add

pytestmark = pytest.mark.django_db


def _foreign_ways(corp, count):
    client = WeComClient(corp)
    return [
        client.contact_way_add({"type": 2, "scene": 2, "state": f"ixj:{n}", "remark": f"旧码{n}",
                                "user": ["staff01", "staff02"]})["config_id"]
        for n in range(count)
    ]  # fmt: skip


def test_import_reads_every_page_and_skips_known_codes(corp, sandbox_corp, make_code):
    ours = live_code_publish(live_code=make_code(mode="native"))
    foreign = _foreign_ways(corp, 5)
    report = live_codes_import(corp=corp, page_size=2)
    assert sorted(c.config_id for c in report.created) == sorted(foreign)
    assert report.skipped == 1  # our own code
    assert ApiCall.objects.filter(endpoint="externalcontact/list_contact_way").count() == 3
    adopted = LiveCode.objects.get(config_id=foreign[0])
    assert (adopted.imported, adopted.status, adopted.state) == (True, "active", "ixj:0")
    assert sorted(adopted.pool.values_list("staff__userid", flat=True)) == ["staff01", "staff02"]
    assert adopted.channel.code == "imported"
    assert ours.config_id not in {c.config_id for c in report.created}
    # Importing again adopts nothing twice.
    assert live_codes_import(corp=corp, page_size=2).created == []


def test_adds_through_an_adopted_code_are_attributed_by_its_foreign_state(
    corp, sandbox_corp, post_event
):
    _foreign_ways(corp, 1)
    code = live_codes_import(corp=corp).created[0]
    customer, follow, _ = sandbox_customer_add(
        corp=sandbox_corp, userid="staff02", rng=random.Random(2), state="ixj:0"
    )
    post_event("add_external_contact", follow.createtime, UserID="staff02",
               ExternalUserID=customer.external_userid, State="ixj:0")  # fmt: skip
    attribution = Attribution.objects.get()
    assert (attribution.live_code, attribution.state_kind) == (code, "foreign")


def test_unknown_states_are_kept_and_reported(corp, sandbox_corp, post_event):
    customer, follow, _ = sandbox_customer_add(
        corp=sandbox_corp, userid="staff01", rng=random.Random(3), state="someone-elses"
    )
    post_event("add_external_contact", follow.createtime, UserID="staff01",
               ExternalUserID=customer.external_userid, State="someone-elses")  # fmt: skip
    attribution = Attribution.objects.get()
    assert attribution.live_code is None
    assert (attribution.state, attribution.state_kind) == ("someone-elses", "foreign")
