"""What each WeCom event does, across the apps, read top to bottom.

The gateway stores and queues events; its task calls `handle_event` inside a transaction that
holds the inbox row. Every step is idempotent. Calls to WeCom are queued with on_commit, so no
database lock is held while waiting on the network.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction

from channels_app.models import Attribution, LiveCode
from channels_app.services.attribution import attribution_record, first_touch_project
from channels_app.services.publishing import live_code_request_sync
from channels_app.services.rules import add_context, matching_rules, tag_ids_for, welcome_for
from channels_app.services.welcome import (
    welcome_claim,
    welcome_details_in_time,
    welcome_queue,
    welcome_send,
)
from contacts import services as contact_services
from contacts.models import CustomerTag, FollowRelation, RelationEvent, TimelineEvent
from contacts.services import RelationRecorded
from contacts.tags import tags_apply
from contacts.timeline import timeline_record
from scrm.wecom.client import WeComError
from scrm.wecom.models import CallbackEvent, Corp

logger = logging.getLogger("scrm.pipeline")


def _refresh_details_after_commit(contact_id: int) -> None:
    from contacts.tasks import external_contact_refresh_task

    def queue() -> None:
        try:
            external_contact_refresh_task.delay(contact_id)
        except Exception:  # broker down: the pending-details sweeper picks it up
            logger.warning("could not queue details fetch for contact %s", contact_id)

    transaction.on_commit(queue)


@dataclass(frozen=True)
class AddRecorded(RelationRecorded):
    attribution: Attribution


@transaction.atomic
def add_record(
    *,
    corp: Corp,
    userid: str,
    external_userid: str,
    state: str,
    added_at: datetime,
    add_way: int | None = None,
    oper_userid: str = "",
    backfilled: bool = False,
) -> AddRecorded:
    """The one step every add goes through, whatever told us of it: a callback (on_add), a
    customer's details, or calibration (contacts.adds). Appends the add to the relation history
    (once), attributes it through its state, projects the customer's first touch from the
    earliest add, and writes the timeline line. An add found in WeCom's data (`backfilled`)
    then gets its tags like any other, without a welcome (it has no welcome code)."""
    recorded = contact_services.relation_event_record(
        corp=corp,
        userid=userid,
        external_userid=external_userid,
        kind=RelationEvent.Kind.ADDED,
        occurred_at=added_at,
        state=state,
        add_way=add_way,
        oper_userid=oper_userid,
        backfilled=backfilled,
    )
    event, relation = recorded.event, recorded.relation
    attribution, attributed = attribution_record(add_event=event, new_add=recorded.created)
    if not recorded.changed:  # a known add told again: attributed and projected already
        return AddRecorded(relation, event, False, False, False, attribution)
    only_add = event if recorded.customer_new else None
    first_source = first_touch_project(contact=relation.external_contact, only_add=only_add)
    attribution.is_first_touch = first_source is not None and first_source.add_event_id == event.pk
    result = AddRecorded(
        relation, event, recorded.created, True, recorded.customer_new, attribution
    )
    if not recorded.created:
        return result
    live_code = attribution.live_code
    kind = TimelineEvent.Kind.ADDED if attribution.is_first_touch else TimelineEvent.Kind.RE_ADDED
    timeline_record(
        contact=relation.external_contact,
        kind=TimelineEvent.Kind.BACKFILLED if backfilled else kind,
        occurred_at=event.occurred_at,
        dedup_key=f"add:{userid}:{int(event.occurred_at.timestamp())}",
        staff=relation.staff,
        summary=" · ".join(
            part for part in (
                attribution.channel.name if attribution.channel else "",
                live_code.name if live_code else "",
                event.state,
            ) if part
        ),
        data={"state": event.state, "state_kind": attribution.state_kind,
              "live_code": live_code.pk if live_code else None,
              "channel": attribution.channel_id, "scan": attribution.scan_id,
              "referrer": attribution.referrer_id, "add_way": event.add_way,
              "backfilled": backfilled},
    )  # fmt: skip
    if attributed and live_code is not None and live_code.mode == LiveCode.Mode.NATIVE:
        # A cap reached by this add takes the staff member off the code's list (debounced).
        live_code_request_sync(live_code_id=live_code.pk)
    if backfilled:
        # Its details came with it (calibration, externalcontact/get): tags only.
        _after_add_queue(attribution.pk, welcome_code="", received_at=event.recorded_at,
                         fetch_details=False)  # fmt: skip
    return result


def _after_add_queue(
    attribution_id: int, *, welcome_code: str, received_at: datetime, fetch_details: bool
) -> None:
    args = (attribution_id, welcome_code, received_at.timestamp(), fetch_details)
    # With a welcome_code the clock runs (20 s): the fast queue. Otherwise the default one,
    # behind everything else there (Redis polls a queue's priority lists in order, 0 first):
    # under a burst the inbox drains, which the welcomes wait for, never queue behind the
    # details and tags of adds already welcomed.
    options = {"queue": "welcome"} if welcome_code else {"queue": "default", "priority": 9}

    def after_commit() -> None:
        from scrm.tasks import after_add_task

        try:
            after_add_task.apply_async(args, **options)
        except Exception:  # broker down: the details sweeper still fills the customer in
            logger.warning("could not queue after-add work for attribution %s", args[0])

    transaction.on_commit(after_commit)


def on_add(event: CallbackEvent) -> None:
    """add_external_contact / add_half_external_contact.

    The add is recorded from the event alone (history, attribution, first touch, with State
    and time); the details (name, add_way, ...) are fetched afterwards and may fail without
    loss, and the welcome goes out with the event's WelcomeCode."""
    recorded = add_record(
        corp=event.corp,
        userid=event.user_id,
        external_userid=event.external_user_id,
        state=str(event.payload.get("State") or ""),
        added_at=event.event_time,
    )
    welcome_code = str(event.payload.get("WelcomeCode") or "")
    attribution_id = recorded.attribution.pk
    if welcome_code:
        # Written with the add: if the worker that takes the task dies, the row is still
        # there for the sweep to queue again within the code's 20 seconds.
        welcome_queue(attribution=recorded.attribution, welcome_code=welcome_code,
                      received_at=event.received_at, new_add=recorded.created)  # fmt: skip
        _after_add_queue(attribution_id, welcome_code=welcome_code,
                         received_at=event.received_at, fetch_details=True)  # fmt: skip
    # The details and tags, queued here whatever becomes of the welcome: the sweep may send
    # it or record it expired, and its task then has nothing left to do.
    _after_add_queue(attribution_id, welcome_code="", received_at=event.received_at,
                     fetch_details=True)  # fmt: skip


def _attribution_for_after_add(attribution_id: int) -> Attribution | None:
    # Neither first() nor get(): the ORDER BY of the one and the LIMIT of the other made
    # PostgreSQL plan this eight-table join in 3 to 5 ms instead of 1 (bench/e2e stages; twice
    # per add). The primary key finds one row at most.
    found = list(
        Attribution.objects.select_related(
            "corp", "live_code", "channel", "follow_relation__staff",
            "follow_relation__external_contact", "add_event",
        ).filter(pk=attribution_id).order_by()
    )  # fmt: skip
    return found[0] if found else None


def after_add(
    *, attribution_id: int, welcome_code: str, received_at: datetime, fetch_details: bool = True
) -> None:
    """After an add is committed. With a welcome_code (the fast "welcome" queue, 20 seconds
    from the add): the welcome. Without one (the default queue, behind the inbox): fetch the
    customer's details (name, add_way), unless the welcome fetched them already, then apply
    the tags of the live code and of the matching rules. Each step is idempotent; a failed
    details fetch does not stop the tags (the details sweeper retries it)."""
    attribution = _attribution_for_after_add(attribution_id)
    if attribution is None:
        return
    if welcome_code:
        _welcome_first(attribution, welcome_code, received_at, fetch_details)
        return
    relation = attribution.follow_relation
    fetched_at = relation.external_contact.details_fetched_at
    if fetch_details and (fetched_at is None or fetched_at < received_at):
        _details_fetch(attribution)
    add_way = attribution.add_event.add_way
    rules = matching_rules(corp_id=attribution.corp_id, ctx=add_context(attribution, add_way))
    tag_ids = tag_ids_for(attribution, rules)
    if tag_ids:
        source = CustomerTag.Source.RULE if rules else CustomerTag.Source.LIVE_CODE
        tags_apply(relation=relation, tag_ids=tag_ids, source=source)


def _details_fetch(attribution: Attribution) -> None:
    """The customer's details (externalcontact/get), applied; the objects in hand take the
    name and, as the details may know an earlier add, the first-touch flag (not reloaded:
    nothing else the welcome or the tags read changes)."""
    relation = attribution.follow_relation
    try:
        contact = contact_services.external_contact_refresh(contact_id=relation.external_contact_id)
    except WeComError:
        logger.warning("details of contact %s not fetched yet", relation.external_contact_id)
        return
    if contact is not None:
        relation.external_contact = contact
    # What the details changed that the rules read, in one query.
    attribution.is_first_touch, attribution.add_event.add_way = Attribution.objects.values_list(
        "is_first_touch", "add_event__add_way"
    ).get(pk=attribution.pk)


def _welcome_first(
    attribution: Attribution, welcome_code: str, received_at: datetime, fetch_details: bool
) -> None:
    """Send the add's welcome, deadline first (its details and tags were queued with the add,
    on the default queue). A welcome picked up early (welcome_details_in_time) fetches the
    details first, so it greets the customer by name and rules by add_way apply (the follow-up
    then does not fetch them again); one picked up late, behind a burst, goes out at once with
    the name's fallback; one past its code is recorded expired without calling WeCom
    (welcome_send)."""
    # Claimed before anything else: a claim tells the welcome sweep that a live worker has
    # it; None when it was handled already (a replay) or another worker has it.
    claim = welcome_claim(attribution=attribution, welcome_code=welcome_code,
                          received_at=received_at)  # fmt: skip
    if claim is None:
        return
    contact = attribution.follow_relation.external_contact
    fetch_here = (
        fetch_details
        and contact.details_fetched_at is None
        and welcome_details_in_time(received_at=received_at)
    )
    if fetch_here:
        _details_fetch(attribution)
    add_way = attribution.add_event.add_way
    rules = matching_rules(corp_id=attribution.corp_id, ctx=add_context(attribution, add_way))
    welcome_send(attribution=attribution, welcome_code=welcome_code,
                 chosen=welcome_for(attribution, rules), received_at=received_at,
                 claim=claim)  # fmt: skip


def on_edit(event: CallbackEvent) -> None:
    contact = contact_services.external_contact_get_or_create(
        corp=event.corp, external_userid=event.external_user_id
    )
    _refresh_details_after_commit(contact.pk)


def relation_change_record(
    *,
    corp: Corp,
    userid: str,
    external_userid: str,
    kind: RelationEvent.Kind,
    occurred_at: datetime,
    fail_reason: str = "",
) -> RelationRecorded:
    """A deletion by the customer, a removal by the staff member, a transfer or a failed one:
    appended to the relation history (once) with its timeline line. Call inside a transaction
    (the callback's holds the inbox row)."""
    recorded = contact_services.relation_event_record(
        corp=corp,
        userid=userid,
        external_userid=external_userid,
        kind=kind,
        occurred_at=occurred_at,
        fail_reason=fail_reason,
    )
    relation = recorded.relation
    timeline_record(
        contact=relation.external_contact,
        kind=TimelineEvent.Kind(kind.value),
        occurred_at=occurred_at,
        dedup_key=f"{kind.value}:{userid}:{int(occurred_at.timestamp())}",
        staff=relation.staff,
        summary=fail_reason,
    )
    return recorded


def _status_handler(status: FollowRelation.Status) -> Callable[[CallbackEvent], None]:
    def handle(event: CallbackEvent) -> None:
        if status == FollowRelation.Status.DELETED_BY_STAFF and (
            event.payload.get("Source") == "DELETE_BY_TRANSFER"
        ):
            actual = FollowRelation.Status.TRANSFERRED
        else:
            actual = status
        relation_change_record(
            corp=event.corp,
            userid=event.user_id,
            external_userid=event.external_user_id,
            kind=RelationEvent.Kind(actual.value),
            occurred_at=event.event_time,
            fail_reason=str(event.payload.get("FailReason") or ""),
        )

    return handle


def on_group_chat_update(event: CallbackEvent) -> None:
    """change_external_chat update: for add_member, attribute the joins by each member's
    join state, which only groupchat/get tells (queued after commit: an API call)."""
    if event.payload.get("UpdateDetail") != "add_member":
        return
    from channels_app.tasks import group_joins_record_task

    members = event.payload.get("MemChangeList") or []
    args = (event.corp_id, event.user_id, list(members), int(event.event_time.timestamp()))

    def queue() -> None:
        try:
            group_joins_record_task.delay(*args)
        except Exception:  # broker down: the inbox row is processed; log for the operator
            logger.warning("could not queue group join resolution for chat %s", event.user_id)

    transaction.on_commit(queue)


def on_tag_library_change(event: CallbackEvent) -> None:
    """change_external_tag (create, update, delete, shuffle), from WeCom's admin console or
    another app: resync the corp's tag library. Queued after commit and debounced (a shuffle
    sends one event per tag); WeCom is never called inside this transaction."""
    from contacts.tags import tag_library_mark_deleted, tag_library_request_sync

    if event.change_type == "delete":
        tag_library_mark_deleted(
            corp_id=event.corp_id,
            tag_type=str(event.payload.get("TagType", "")),
            wecom_id=str(event.payload.get("Id", "")),
        )
    tag_library_request_sync(corp_id=event.corp_id)


HANDLERS: dict[tuple[str, str], Callable[[CallbackEvent], None]] = {
    ("change_external_contact", "add_external_contact"): on_add,
    ("change_external_contact", "add_half_external_contact"): on_add,
    ("change_external_contact", "edit_external_contact"): on_edit,
    ("change_external_contact", "del_external_contact"): _status_handler(
        FollowRelation.Status.DELETED_BY_STAFF
    ),
    ("change_external_contact", "del_follow_user"): _status_handler(
        FollowRelation.Status.DELETED_BY_CUSTOMER
    ),
    ("change_external_contact", "transfer_fail"): _status_handler(
        FollowRelation.Status.TRANSFER_FAILED
    ),
    ("change_external_chat", "update"): on_group_chat_update,
    **{
        ("change_external_tag", change): on_tag_library_change
        for change in ("create", "update", "delete", "shuffle")
    },
}


def handle_event(event: CallbackEvent) -> bool:
    """Apply one inbox event; False when it is of a kind we do not act on (kept as ignored)."""
    handler = HANDLERS.get((event.event, event.change_type))
    if handler is None:
        return False
    # UserID, or ChatId for group events; tag-library events carry only the tag's Id.
    if not event.user_id and event.event != "change_external_tag":
        return False
    if event.event == "change_external_contact" and not event.external_user_id:
        return False
    handler(event)
    return True
