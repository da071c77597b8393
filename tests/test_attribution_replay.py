"""One truth of who came from where: whatever brought an add in (its callback, the details
fetched after another add, calibration), in whatever order, the customer ends with the same
relation history, the same attributions, and a first source that is the first-touch
attribution's add."""

from __future__ import annotations

import datetime as dt
import itertools
import random

import pytest

from channels_app.models import Attribution, Channel, LiveCode
from channels_app.state import encode_state
from contacts.calibration import calibrate
from contacts.models import FirstSource, FollowRelation, RelationEvent, TimelineEvent
from scrm.wecom.sandbox.models import SandboxFault, SandboxFollow
from scrm.wecom.sandbox.simulate import sandbox_customer_add

pytestmark = pytest.mark.django_db

DAY = 86400
T0 = int(dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC).timestamp())
# Two adds of one customer: staff01 through a Moments-ad code, a day later staff02 through a
# Xiaohongshu code. WeCom knows both; a callback may announce either, both or neither.
ADDS = {"first": ("staff01", "pyq", T0), "second": ("staff02", "xhs", T0 + DAY)}


def _codes(corp) -> dict[str, LiveCode]:
    codes = {}
    for key in ("pyq", "xhs"):
        channel = Channel.objects.create(corp=corp, name=key, code=f"{key}_0012")
        code = LiveCode.objects.create(corp=corp, channel=channel, name=key, slug=key,
                                       status=LiveCode.Status.ACTIVE)  # fmt: skip
        code.state = encode_state("native", code.pk)
        code.save(update_fields=["state"])
        codes[key] = code
    return codes


def _customer(sandbox_corp, codes):
    userid, code, create_time = ADDS["first"]
    customer, _follow, _welcome = sandbox_customer_add(
        corp=sandbox_corp, userid=userid, rng=random.Random(3), state=codes[code].state,
        add_way=1, create_time=create_time,
    )  # fmt: skip
    userid, code, create_time = ADDS["second"]
    SandboxFollow.objects.create(customer=customer, userid=userid, state=codes[code].state,
                                 createtime=create_time, add_way=3)  # fmt: skip
    return customer


def _callback(post_event, customer, codes, key: str) -> None:
    userid, code, create_time = ADDS[key]
    state = codes[code].state
    response = post_event("add_external_contact", create_time, UserID=userid,
                          ExternalUserID=customer.external_userid, State=state)  # fmt: skip
    assert response.status_code == 200


def _truth() -> dict:
    """What the customer's adds came to, without how we learned of them."""
    first = FirstSource.objects.select_related("staff").get()
    first_touch = Attribution.objects.get(is_first_touch=True)
    return {
        "history": sorted(
            RelationEvent.objects.values_list(
                "kind", "staff__userid", "occurred_at", "state", "add_way"
            )
        ),
        "attributions": sorted(
            Attribution.objects.values_list(
                "staff__userid",
                "added_at",
                "live_code__slug",
                "channel__code",
                "state_kind",
                "is_first_touch",
            )
        ),
        "first_source": (first.staff.userid, first.added_at, first.state, first.add_way),
        "first_is_first_touch": first.add_event_id == first_touch.add_event_id,
        "relations": sorted(
            FollowRelation.objects.values_list("staff__userid", "created_at", "status", "state")
        ),
        "timeline_adds": TimelineEvent.objects.filter(
            kind__in=["added", "re_added", "backfilled"]
        ).count(),
    }


def _expected(codes) -> dict:
    at = {key: dt.datetime.fromtimestamp(ADDS[key][2], dt.UTC) for key in ADDS}
    return {
        "history": sorted(
            [
                ("added", "staff01", at["first"], codes["pyq"].state, 1),
                ("added", "staff02", at["second"], codes["xhs"].state, 3),
            ]
        ),
        "attributions": sorted(
            [
                ("staff01", at["first"], "pyq", "pyq_0012", "native", True),
                ("staff02", at["second"], "xhs", "xhs_0012", "native", False),
            ]
        ),
        "first_source": ("staff01", at["first"], codes["pyq"].state, 1),
        "first_is_first_touch": True,
        "relations": sorted(
            [
                ("staff01", at["first"], "active", codes["pyq"].state),
                ("staff02", at["second"], "active", codes["xhs"].state),
            ]
        ),
        "timeline_adds": 2,
    }


def _replays() -> list[tuple[str, ...]]:
    """Every order of the callbacks that were delivered (all, one, none), with calibration
    nowhere (only when every callback came), before, between or after them."""
    replays = []
    for delivered in ([], ["first"], ["second"], ["first", "second"]):
        for order in itertools.permutations(delivered):
            slots = range(len(order) + 1)
            if len(order) == len(ADDS):
                replays.append(order)
            for slot in slots:
                replays.append((*order[:slot], "calibration", *order[slot:]))
    return replays


@pytest.mark.parametrize("details", ["details", "no_details"])
@pytest.mark.parametrize("replay", _replays(), ids="-".join)
def test_any_order_of_callbacks_details_and_calibration_gives_one_truth(
    corp, sandbox_corp, post_event, replay, details
):
    codes = _codes(corp)
    customer = _customer(sandbox_corp, codes)
    if details == "no_details":
        # The fetch after each add fails: what it would have found comes by calibration only.
        SandboxFault.objects.create(endpoint="externalcontact/get", errcode=48002, remaining=100)
    for step in replay:
        if step == "calibration":
            calibrate(corp=corp)
        else:
            _callback(post_event, customer, codes, step)
        # At every step the first source is the first-touch attribution's add.
        first = FirstSource.objects.first()
        if first is not None:
            assert Attribution.objects.get(is_first_touch=True).add_event_id == first.add_event_id
    calibrate(corp=corp)  # after the fact, WeCom's data fills in what no callback told
    assert _truth() == _expected(codes)


def test_a_customer_deleted_and_re_added_keeps_both_adds_and_the_deletion(
    corp, sandbox_corp, post_event
):
    codes = _codes(corp)
    customer = _customer(sandbox_corp, codes)
    state = codes["pyq"].state
    _callback(post_event, customer, codes, "first")
    deleted, readded = T0 + 3600, T0 + 7200
    post_event("del_follow_user", deleted, UserID="staff01",
               ExternalUserID=customer.external_userid)  # fmt: skip
    SandboxFollow.objects.filter(customer=customer, userid="staff01").update(createtime=readded)
    post_event("add_external_contact", readded, UserID="staff01",
               ExternalUserID=customer.external_userid, State=state)  # fmt: skip
    at = lambda ts: dt.datetime.fromtimestamp(ts, dt.UTC)  # noqa: E731
    history = list(
        RelationEvent.objects.filter(staff__userid="staff01")
        .order_by("occurred_at")
        .values_list("kind", "occurred_at")
    )
    assert history == [("added", at(T0)), ("deleted_by_customer", at(deleted)),
                       ("added", at(readded))]  # fmt: skip
    relation = FollowRelation.objects.get(staff__userid="staff01")
    assert (relation.status, relation.created_at, relation.deleted_at) == ("active", at(readded),
                                                                           None)  # fmt: skip
    first = FirstSource.objects.get()
    assert (first.staff.userid, first.added_at) == ("staff01", at(T0))
    adds = Attribution.objects.filter(staff__userid="staff01").order_by("added_at")
    assert list(adds.values_list("added_at", "is_first_touch", "live_code__slug")) == [
        (at(T0), True, "pyq"), (at(readded), False, "pyq"),
    ]  # fmt: skip
    # The same events again, in reverse order: nothing new, nothing changed.
    before = _truth()
    for change_type, ts in (("add_external_contact", readded), ("del_follow_user", deleted)):
        post_event(change_type, ts, UserID="staff01", ExternalUserID=customer.external_userid,
                   State=state)  # fmt: skip
    assert _truth() == before


def test_a_delete_delivered_before_its_add_leaves_the_relation_deleted(
    corp, sandbox_corp, post_event
):
    codes = _codes(corp)
    customer = _customer(sandbox_corp, codes)
    userid, _code, create_time = ADDS["first"]
    post_event("del_external_contact", create_time + 60, UserID=userid,
               ExternalUserID=customer.external_userid)  # fmt: skip
    relation = FollowRelation.objects.get()
    assert (relation.status, relation.created_at) == ("deleted_by_staff", None)
    assert not FirstSource.objects.exists()
    _callback(post_event, customer, codes, "first")
    relation.refresh_from_db()
    assert relation.status == "deleted_by_staff"
    assert relation.created_at == dt.datetime.fromtimestamp(create_time, dt.UTC)
    assert FirstSource.objects.get().staff.userid == userid
    history = RelationEvent.objects.filter(staff__userid=userid).order_by("occurred_at")
    assert list(history.values_list("kind", flat=True)) == ["added", "deleted_by_staff"]


def test_a_callback_a_few_seconds_off_the_backfilled_add_is_the_same_add(
    corp, sandbox_corp, post_event
):
    codes = _codes(corp)
    customer = _customer(sandbox_corp, codes)
    calibrate(corp=corp)
    userid, code, create_time = ADDS["first"]
    # WeCom's event CreateTime and the follow_user's createtime of one add need not be equal.
    post_event("add_external_contact", create_time + 2, UserID=userid,
               ExternalUserID=customer.external_userid, State=codes[code].state)  # fmt: skip
    assert RelationEvent.objects.filter(staff__userid=userid).count() == 1
    assert Attribution.objects.filter(staff__userid=userid).count() == 1
