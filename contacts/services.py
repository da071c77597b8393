"""Writes of the customer domain: staff, customers, the relation history and its projections.

WeCom delivers events more than once and out of order (a delete can arrive before its add).
Every service here is idempotent and order-tolerant: each add, deletion and transfer is
appended once to the relation history (RelationEvent), and a relation's current state and a
customer's first source are derived from that history, whatever order it arrived in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from contacts.add_ways import add_initiator
from contacts.adds import add_recorder
from contacts.lock_objects import external_contact_lock, external_contact_lock_created
from contacts.models import ExternalContact, FirstSource, FollowRelation, RelationEvent, Staff
from scrm.wecom.models import Corp

# Sweeps every 5 minutes, so about an hour of tries before an operator has to look.
DETAILS_MAX_ATTEMPTS = 12


def staff_get_or_create(*, corp: Corp, userid: str) -> Staff:
    staff, _ = Staff.objects.get_or_create(corp=corp, userid=userid)
    return staff


def external_contact_get_or_create(*, corp: Corp, external_userid: str) -> ExternalContact:
    contact, _ = ExternalContact.objects.get_or_create(corp=corp, external_userid=external_userid)
    return contact


# A follow_info's createtime and the callback's CreateTime of the same add may differ by a
# little: within this, and with nothing else happening to the relation in between, they are
# one add (otherwise a late callback after a backfill would count the add twice).
ADD_MATCH_WINDOW = timedelta(seconds=60)


@dataclass(frozen=True)
class RelationRecorded:
    relation: FollowRelation
    event: RelationEvent
    created: bool  # the event is new to the history
    changed: bool  # the history changed: a new event, or an add's add_way learned
    # The customer was first seen in this transaction: this event is its whole history.
    customer_new: bool


def _same_add(history: list[RelationEvent], occurred_at: datetime) -> RelationEvent | None:
    """The relation's add that an add at `occurred_at` is: the same time, or the nearest within
    ADD_MATCH_WINDOW with no other event of the relation between the two."""
    adds = [e for e in history if e.kind == RelationEvent.Kind.ADDED]
    for add in sorted(adds, key=lambda e: abs(e.occurred_at - occurred_at)):
        if abs(add.occurred_at - occurred_at) > ADD_MATCH_WINDOW:
            return None
        low, high = sorted((add.occurred_at, occurred_at))
        if not any(low < e.occurred_at < high for e in history if e.kind != add.kind):
            return add
    return None


def _event_order(event: RelationEvent) -> tuple:
    # At the same second an add comes before a deletion: an add and a delete delivered with one
    # CreateTime leave the relation deleted, whatever order they arrived in.
    return (event.occurred_at, event.kind != RelationEvent.Kind.ADDED, event.kind)


def _relation_projection(history: list[RelationEvent]) -> dict[str, Any]:
    """A relation's current state as its history leaves it: the latest add's time, state and
    add_way, and the status the events leave in time order."""
    status: str | None = None
    changed_at = deleted_at = None
    reason = ""
    adds = []
    for event in sorted(history, key=_event_order):
        if event.kind == RelationEvent.Kind.ADDED:
            adds.append(event)
            status, changed_at, deleted_at = FollowRelation.Status.ACTIVE, event.occurred_at, None
        elif event.kind == RelationEvent.Kind.TRANSFER_FAILED:
            # The takeover never got the customer; an active relation stays as it is.
            reason = event.fail_reason
            if status != FollowRelation.Status.ACTIVE:
                status, changed_at = FollowRelation.Status.TRANSFER_FAILED, event.occurred_at
        else:
            status, changed_at = FollowRelation.Status(event.kind), event.occurred_at
            deleted_at = event.occurred_at
    return {
        "status": status or FollowRelation.Status.ACTIVE,
        "status_changed_at": changed_at,
        "deleted_at": deleted_at,
        "transfer_fail_reason": reason[:64],
        "created_at": adds[-1].occurred_at if adds else None,
        "state": adds[-1].state if adds else "",
        "add_way": adds[-1].add_way if adds else None,
        "backfilled": adds[0].backfilled if adds else False,
    }


def follow_relation_project(*, relation: FollowRelation, history: list[RelationEvent]) -> None:
    """Set the relation's current state from its history (the one place it is derived, with
    _relation_projection)."""
    values = _relation_projection(history)
    changed = [name for name, value in values.items() if getattr(relation, name) != value]
    for name in changed:
        setattr(relation, name, values[name])
    if changed:
        relation.save(update_fields=[*changed, "updated_at"])


@transaction.atomic
def relation_event_record(
    *,
    corp: Corp,
    userid: str,
    external_userid: str,
    kind: RelationEvent.Kind,
    occurred_at: datetime,
    state: str = "",
    add_way: int | None = None,
    oper_userid: str = "",
    fail_reason: str = "",
    backfilled: bool = False,
) -> RelationRecorded:
    """Append one event to the relation's history (idempotent, order-tolerant) and re-project
    the relation's current state. The customer's row is locked first: every writer of a
    customer's relations queues there. An add already known (the same add delivered twice, or
    a callback after calibration found it) is not appended again; an add_way or initiator
    (from `oper_userid`, see add_initiator) learned later completes it, and counts as recorded
    now, so the rollups rebuild the add's day (analytics.refresh looks at recorded_at)."""
    contact, customer_new = external_contact_lock_created(
        corp=corp, external_userid=external_userid
    )
    staff = staff_get_or_create(corp=corp, userid=userid)
    # Every writer of the customer's relations holds the customer's lock: no other can insert
    # this relation meanwhile, so a plain read, and a plain insert below, suffice.
    relation = FollowRelation.objects.filter(
        corp=corp, external_contact=contact, staff=staff
    ).first()
    if relation is not None:
        relation.external_contact, relation.staff = contact, staff  # the rows in hand
    history = list(relation.history.all()) if relation is not None else []
    if kind == RelationEvent.Kind.ADDED:
        known = _same_add(history, occurred_at)
    else:
        known = next((e for e in history if (e.kind, e.occurred_at) == (kind, occurred_at)), None)
    initiator = ""
    if kind == RelationEvent.Kind.ADDED and oper_userid:
        told_way = add_way if add_way is not None else getattr(known, "add_way", None)
        initiator = add_initiator(add_way=told_way, oper_userid=oper_userid, userid=userid,
                                  external_userid=external_userid)  # fmt: skip
    if known is not None:
        learned = {}
        if kind == RelationEvent.Kind.ADDED and known.add_way is None and add_way is not None:
            learned["add_way"] = add_way
        if initiator and not known.initiator:
            learned["initiator"] = initiator
        if learned:
            for name, value in learned.items():
                setattr(known, name, value)
            known.recorded_at = timezone.now()
            known.save(update_fields=[*learned, "recorded_at"])
            follow_relation_project(relation=relation, history=history)
            return RelationRecorded(
                relation, known, created=False, changed=True, customer_new=False
            )
        return RelationRecorded(relation, known, created=False, changed=False, customer_new=False)
    event = RelationEvent(
        corp=corp,
        follow_relation=relation,
        external_contact=contact,
        staff=staff,
        kind=kind,
        occurred_at=occurred_at,
        state=state[:64],
        add_way=add_way,
        initiator=initiator,
        fail_reason=fail_reason[:64],
        backfilled=backfilled,
    )
    if relation is None:  # the relation's first event: inserted as that event leaves it
        relation = FollowRelation.objects.create(
            corp=corp, external_contact=contact, staff=staff, **_relation_projection([event])
        )
        event.follow_relation = relation
        event.save(force_insert=True)
    else:
        event.save(force_insert=True)
        follow_relation_project(relation=relation, history=[*history, event])
    return RelationRecorded(relation, event, created=True, changed=True, customer_new=customer_new)


def first_source_project(
    *, contact: ExternalContact, only_add: RelationEvent | None = None
) -> FirstSource | None:
    """Set the customer's first source from the earliest add in its history (ties by staff
    UserID, so any delivery order gives the same answer); None when no add is known yet. Call
    with the customer's row locked (relation_event_record's lock). `only_add`: the customer is
    new in this transaction and this add is its whole history (nothing to look up)."""
    if only_add is not None:
        first = only_add
    else:
        first = (
            RelationEvent.objects.filter(
                corp_id=contact.corp_id, external_contact=contact, kind=RelationEvent.Kind.ADDED
            )
            .order_by("occurred_at", "staff__userid", "pk")
            .first()
        )
    if first is None:
        FirstSource.objects.filter(external_contact=contact).delete()
        return None
    values = {
        "add_event_id": first.pk,
        "staff_id": first.staff_id,
        "added_at": first.occurred_at,
        "add_way": first.add_way,
        "state": first.state,
        "backfilled": first.backfilled,
    }
    # Under the customer's lock: no other writer can insert it meanwhile (a plain insert).
    first_source = (
        None
        if only_add is not None
        else FirstSource.objects.filter(corp_id=contact.corp_id, external_contact=contact).first()
    )
    if first_source is None:
        return FirstSource.objects.create(
            corp_id=contact.corp_id, external_contact=contact, **values
        )
    changed = [n for n, v in values.items() if getattr(first_source, n) != v]
    for name in changed:
        setattr(first_source, name, values[name])
    if changed:
        first_source.save(update_fields=changed)
    return first_source


def datetime_from_timestamp(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


@transaction.atomic
def external_contact_apply_details(
    *, contact: ExternalContact, external_contact: dict[str, Any], follow_users: list[dict]
) -> ExternalContact:
    """Apply externalcontact/get: profile fields, and per relation its add (an add no callback
    announced is recorded as backfilled, through the one add step) and what only the API knows
    (add_way, oper_userid, remark, description)."""
    contact = external_contact_lock(corp=contact.corp, external_userid=contact.external_userid)
    contact.name = str(external_contact.get("name") or contact.name)[:128]
    contact.type = int(external_contact.get("type") or contact.type or 0)
    contact.gender = int(external_contact.get("gender") or 0)
    contact.unionid = str(external_contact.get("unionid") or contact.unionid)[:64]
    contact.avatar = str(external_contact.get("avatar") or "")[:512]
    contact.corp_name = str(external_contact.get("corp_name") or "")[:128]
    contact.details_fetched_at = timezone.now()
    contact.details_error = ""
    contact.save()
    # In userid order: two customers' refreshes insert new Staff rows in the same order.
    for follow in sorted(follow_users, key=lambda follow: str(follow.get("userid") or "")):
        follow_relation_apply_follow_info(contact=contact, follow=follow)
    return contact


def follow_relation_apply_follow_info(
    *, contact: ExternalContact, follow: dict[str, Any], backfill: bool = True
) -> RelationRecorded | None:
    """Apply one follow_user of externalcontact/get (or a follow_info of calibration): its add
    (createtime, state, add_way) goes through the one add step (contacts.adds), which records
    an add no callback announced as backfilled; then what only the API knows (remark,
    description, oper_userid)."""
    userid = follow.get("userid")
    added_at = datetime_from_timestamp(follow.get("createtime"))
    if not userid or added_at is None:
        return None
    add_way = follow.get("add_way")
    add_way = int(add_way) if isinstance(add_way, int | str) and str(add_way).isdigit() else None
    recorded = add_recorder()(
        corp=contact.corp,
        userid=str(userid),
        external_userid=contact.external_userid,
        state=str(follow.get("state") or ""),
        added_at=added_at,
        add_way=add_way,
        oper_userid=str(follow.get("oper_userid") or "")[:64],
        backfilled=backfill,
    )
    relation = recorded.relation
    details = {
        "oper_userid": str(follow.get("oper_userid") or "")[:64],
        "remark": str(follow.get("remark") or "")[:255],
        "description": str(follow.get("description") or ""),
    }
    changed = [name for name, value in details.items() if getattr(relation, name) != value]
    for name in changed:
        setattr(relation, name, details[name])
    if changed:
        relation.save(update_fields=[*changed, "updated_at"])
    return recorded


def external_contact_details_failed(*, contact_id: int, error: str) -> None:
    from django.db.models import F

    ExternalContact.objects.filter(pk=contact_id).update(
        details_error=error[:255], details_attempts=F("details_attempts") + 1
    )


def external_contact_refresh(*, contact_id: int) -> ExternalContact | None:
    """Fetch a customer's details with externalcontact/get and apply them.

    Called after the add is committed, outside any transaction (no DB lock is held during the
    HTTP call). Transient errors propagate for the task to retry; permanent ones (84061: the
    relation is gone, 40096) are recorded on the contact and end the attempts.
    """
    from scrm.wecom.client import WeComClient, WeComError, WeComTransientError

    contact = ExternalContact.objects.select_related("corp").filter(pk=contact_id).first()
    if contact is None:
        return None
    try:
        data = WeComClient(contact.corp).external_contact_get(contact.external_userid)
    except WeComTransientError as exc:
        external_contact_details_failed(contact_id=contact.pk, error=str(exc))
        raise
    except WeComError as exc:
        external_contact_details_failed(contact_id=contact.pk, error=str(exc))
        return contact
    return external_contact_apply_details(
        contact=contact,
        external_contact=data.get("external_contact") or {},
        follow_users=data.get("follow_user") or [],
    )
