"""Writes of the customer domain: staff, customers, follow relations and first sources.

WeCom delivers events more than once and out of order (a delete can arrive before its add).
Every service here is idempotent and order-tolerant: a relation remembers the time of the
event that set its status, and an older event never overrides a newer one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from contacts.lock_objects import external_contact_lock, follow_relation_lock
from contacts.models import ExternalContact, FirstSource, FollowRelation, Staff
from scrm.wecom.models import Corp

# Sweeps every 5 minutes, so about an hour of tries before an operator has to look.
DETAILS_MAX_ATTEMPTS = 12


def staff_get_or_create(*, corp: Corp, userid: str) -> Staff:
    staff, _ = Staff.objects.get_or_create(corp=corp, userid=userid)
    return staff


def external_contact_get_or_create(*, corp: Corp, external_userid: str) -> ExternalContact:
    contact, _ = ExternalContact.objects.get_or_create(corp=corp, external_userid=external_userid)
    return contact


def _relation(
    *, corp: Corp, contact: ExternalContact, staff: Staff, defaults: dict[str, Any]
) -> tuple[FollowRelation, bool]:
    relation, created = FollowRelation.objects.get_or_create(
        corp=corp, external_contact=contact, staff=staff, defaults=defaults
    )
    if not created:
        relation = follow_relation_lock(relation.pk)
    return relation, created


def first_source_record(
    *,
    corp: Corp,
    contact: ExternalContact,
    staff: Staff,
    added_at: datetime,
    state: str,
    add_way: int | None = None,
    backfilled: bool = False,
) -> tuple[FirstSource, bool]:
    """Write the customer's first source if it has none; return (first_source, written).

    A later add never overwrites it. An earlier add delivered late (WeCom does not keep order)
    takes its place, since the first add decides the source; the update is conditional in the
    database, so concurrent workers agree on the earliest.
    """
    values = {
        "staff": staff,
        "state": state,
        "added_at": added_at,
        "add_way": add_way,
        "backfilled": backfilled,
    }
    first_source, created = FirstSource.objects.get_or_create(
        corp=corp, external_contact=contact, defaults=values
    )
    if created:
        return first_source, True
    replaced = FirstSource.objects.filter(pk=first_source.pk, added_at__gt=added_at).update(
        **values, live_code_id=None, channel_id=None
    )
    if replaced:
        first_source.refresh_from_db()
    return first_source, bool(replaced)


def first_source_set_channel(
    *, first_source: FirstSource, live_code_id: int, channel_id: int | None
) -> None:
    """Fill in the live code and channel the first add resolved to (channels_app knows)."""
    FirstSource.objects.filter(pk=first_source.pk).update(
        live_code_id=live_code_id, channel_id=channel_id
    )
    first_source.live_code_id, first_source.channel_id = live_code_id, channel_id


@transaction.atomic
def follow_relation_record_add(
    *, corp: Corp, userid: str, external_userid: str, state: str, added_at: datetime
) -> tuple[FollowRelation, FirstSource]:
    """Record an add from the event itself (no API call): customer, relation, first source."""
    contact = external_contact_lock(corp=corp, external_userid=external_userid)
    staff = staff_get_or_create(corp=corp, userid=userid)
    relation, created = _relation(
        corp=corp,
        contact=contact,
        staff=staff,
        defaults={"created_at": added_at, "state": state[:64], "status_changed_at": added_at},
    )
    if not created:
        changed: list[str] = []
        if relation.status_changed_at is None or added_at > relation.status_changed_at:
            # A re-add after a delete (or the add after a delete of an older relation).
            if relation.status != FollowRelation.Status.ACTIVE:
                relation.status = FollowRelation.Status.ACTIVE
                relation.deleted_at = None
                changed += ["status", "deleted_at"]
            relation.status_changed_at = added_at
            changed.append("status_changed_at")
        if relation.created_at is None or added_at > relation.created_at:
            # The relation's add time follows WeCom's createtime: the latest add.
            relation.created_at = added_at
            relation.state = state[:64]
            changed += ["created_at", "state"]
        if changed:
            relation.save(update_fields=[*changed, "updated_at"])
    first_source, _ = first_source_record(
        corp=corp, contact=contact, staff=staff, added_at=added_at, state=state[:64]
    )
    return relation, first_source


@transaction.atomic
def follow_relation_record_status(
    *,
    corp: Corp,
    userid: str,
    external_userid: str,
    status: FollowRelation.Status,
    at: datetime,
    fail_reason: str = "",
) -> FollowRelation:
    """A delete (by staff or customer), a transfer, or a failed transfer, at event time `at`."""
    contact = external_contact_lock(corp=corp, external_userid=external_userid)
    staff = staff_get_or_create(corp=corp, userid=userid)
    ends_relation = status != FollowRelation.Status.TRANSFER_FAILED
    relation, created = _relation(
        corp=corp,
        contact=contact,
        staff=staff,
        defaults={
            "created_at": None,
            "status": status,
            "status_changed_at": at,
            "deleted_at": at if ends_relation else None,
            "transfer_fail_reason": fail_reason[:64],
        },
    )
    if created:
        return relation
    if status == FollowRelation.Status.TRANSFER_FAILED:
        # The takeover never got the customer; an active relation stays as it is.
        relation.transfer_fail_reason = fail_reason[:64]
        fields = ["transfer_fail_reason"]
        if relation.status != FollowRelation.Status.ACTIVE and (
            relation.status_changed_at is None or at >= relation.status_changed_at
        ):
            relation.status, relation.status_changed_at = status, at
            fields += ["status", "status_changed_at"]
        relation.save(update_fields=[*fields, "updated_at"])
        return relation
    if relation.status_changed_at is None or at >= relation.status_changed_at:
        relation.status = status
        relation.status_changed_at = at
        relation.deleted_at = at
        relation.save(update_fields=["status", "status_changed_at", "deleted_at", "updated_at"])
    return relation


def _from_timestamp(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


@transaction.atomic
def external_contact_apply_details(
    *, contact: ExternalContact, external_contact: dict[str, Any], follow_users: list[dict]
) -> ExternalContact:
    """Apply externalcontact/get: profile fields, and per relation what only the API knows
    (add_way, oper_userid, remark, description). Relations no callback announced are created
    as backfilled; the earliest add still decides the first source."""
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
) -> FollowRelation | None:
    corp = contact.corp
    userid = follow.get("userid")
    added_at = _from_timestamp(follow.get("createtime"))
    if not userid or added_at is None:
        return None
    staff = staff_get_or_create(corp=corp, userid=str(userid))
    state = str(follow.get("state") or "")[:64]
    add_way = follow.get("add_way")
    add_way = int(add_way) if isinstance(add_way, int | str) and str(add_way).isdigit() else None
    relation, created = _relation(
        corp=corp,
        contact=contact,
        staff=staff,
        defaults={
            "created_at": added_at,
            "state": state,
            "status_changed_at": added_at,
            "backfilled": backfill,
        },
    )
    relation.add_way = add_way
    relation.oper_userid = str(follow.get("oper_userid") or "")[:64]
    relation.remark = str(follow.get("remark") or "")[:255]
    relation.description = str(follow.get("description") or "")
    if relation.created_at is None:
        relation.created_at = added_at
    if not relation.state:
        relation.state = state
    relation.save()
    first_source, _ = first_source_record(
        corp=corp,
        contact=contact,
        staff=staff,
        added_at=added_at,
        state=state,
        add_way=add_way,
        backfilled=created and backfill,
    )
    if first_source.staff_id == staff.pk and first_source.add_way is None and add_way is not None:
        # The event carries no add_way; fill it in, never changing who or when.
        FirstSource.objects.filter(pk=first_source.pk, add_way__isnull=True).update(add_way=add_way)
    return relation


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
