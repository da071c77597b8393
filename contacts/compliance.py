"""Personal data (PIPL 个人信息保护法): a customer's export, erasure, and raw-body retention.

Erasure keeps the rows and empties the personal fields, so the customer still counts in every
report (adds, first sources, attributions, revenue) but can no longer be identified:

- external_userid becomes `erased-<sha256(corp_id:external_userid)[:20]>`. The pseudonym is
  stable (an operator who is asked again finds the erased row from the original id), but it
  is not the id WeCom sends: if the same person adds again, or WeCom sends any later event
  about them (they are still a contact in WeCom unless staff delete them there), a new
  customer is created. Erasure here does not delete anything inside WeCom.
- Erasing an erased customer is a no-op.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from contacts import compliance_traces as traces
from contacts.add_ways import add_way_label
from contacts.compliance_traces import Identity
from contacts.models import (
    AuditLog,
    ConversionEvent,
    CustomerTag,
    ExternalContact,
    FirstSource,
    FollowRelation,
    RelationEvent,
    TimelineEvent,
)
from contacts.services import DETAILS_MAX_ATTEMPTS
from contacts.timeline import timeline_record
from scrm.wecom.models import CallbackEvent, Corp

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger("contacts.compliance")

EXPORT_FORMAT = "scrm.contact_export/1"
RAW_BODY_RETENTION_DAYS = 90
# Rows blanked per UPDATE: short statements keep row locks brief on a table WeCom writes to.
PRUNE_BATCH = 5000


def erased_pseudonym(*, corp_id: str, external_userid: str) -> str:
    digest = hashlib.sha256(f"{corp_id}:{external_userid}".encode()).hexdigest()
    return f"erased-{digest[:20]}"


def external_contact_find(*, corp: Corp, external_userid: str) -> ExternalContact | None:
    """The customer with this external_userid, or the erased one it became."""
    external_userid = external_userid.strip()
    if not external_userid:
        return None
    candidates = [
        external_userid,
        erased_pseudonym(corp_id=corp.corp_id, external_userid=external_userid),
    ]
    contacts = {
        c.external_userid: c
        for c in ExternalContact.objects.filter(corp=corp, external_userid__in=candidates)
    }
    return next((contacts[i] for i in candidates if i in contacts), None)


def _audit(*, contact: ExternalContact, actor: User | None, action: str, detail: dict) -> AuditLog:
    # The target names the row, never the external_userid: the log outlives an erasure.
    return AuditLog.objects.create(
        corp_id=contact.corp_id,
        actor=actor,
        actor_label=actor.get_username() if actor is not None else "system",
        action=action,
        target=f"external_contact:{contact.pk}",
        detail=detail,
    )


# -- export ------------------------------------------------------------------------------------


def _jsonable(data: Any) -> Any:
    # Datetimes as ISO-8601, decimals as strings: what json.dumps would write, as plain data.
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))


# Apps above contacts (channels_app) hold data about customers too. They register here at
# start-up, so export and erasure cover them without contacts importing them.
ExportProvider = Callable[[ExternalContact], dict[str, list]]
EraseProvider = Callable[[ExternalContact, str], dict[str, int]]
export_providers: list[ExportProvider] = []
erase_providers: list[EraseProvider] = []


def _first_source(contact: ExternalContact) -> dict | None:
    first = (
        FirstSource.objects.filter(external_contact=contact)
        .values("staff__userid", "add_way", "state", "added_at", "backfilled")
        .first()
    )  # fmt: skip
    if first is not None:
        first["add_way_label"] = str(add_way_label(first["add_way"]))
    return first


@transaction.atomic
def contact_export(*, contact: ExternalContact, actor: User | None) -> dict[str, Any]:
    """Everything held about one customer, as JSON-serialisable data; writes an audit row."""
    contact = ExternalContact.objects.select_related("corp").get(pk=contact.pk)
    profile = {
        field: getattr(contact, field)
        for field in ("id", "external_userid", "name", "type", "gender", "unionid", "avatar",
                      "corp_name", "created_at", "updated_at", "details_fetched_at", "erased_at")
    }  # fmt: skip
    relations = list(
        FollowRelation.objects.filter(external_contact=contact)
        .order_by("created_at", "pk")
        .values(
            "id", "staff__userid", "staff__name", "created_at", "add_way", "state", "oper_userid",
            "remark", "description", "status", "status_changed_at", "deleted_at",
            "transfer_fail_reason", "backfilled",
        )
    )  # fmt: skip
    for relation in relations:
        relation["add_way_label"] = str(add_way_label(relation["add_way"]))
    history = list(
        RelationEvent.objects.filter(corp_id=contact.corp_id, external_contact=contact)
        .order_by("occurred_at", "pk")
        .values("id", "kind", "occurred_at", "staff__userid", "state", "add_way", "fail_reason",
                "backfilled")
    )  # fmt: skip
    tags = list(
        CustomerTag.objects.filter(follow_relation__external_contact=contact)
        .order_by("created_at", "pk")
        .values("id", "follow_relation__staff__userid", "tag__tag_id", "tag__group__name",
                "tag__name", "source", "created_at")
    )  # fmt: skip
    timeline = list(
        TimelineEvent.objects.filter(external_contact=contact)
        .order_by("occurred_at", "pk")
        .values("id", "kind", "occurred_at", "staff__userid", "summary", "data")
    )
    # Conversions sent with the customer's ids but not matched yet are theirs too: erasure
    # links them (and blanks the ids).
    conversions = list(
        ConversionEvent.objects.filter(_conversions_of(contact))
        .order_by("occurred_at", "pk")
        .values("id", "external_id", "kind", "custom_name", "amount", "currency", "occurred_at",
                "external_userid", "unionid", "matched_at", "note", "created_at")
    )  # fmt: skip
    identity = Identity.of(contact, pseudonym=contact.external_userid)
    callback_events = list(
        traces.callback_events_of(identity)
        .order_by("event_time", "pk")
        .values("id", "event", "change_type", "user_id", "external_user_id", "dedup_key",
                "event_time", "payload", "raw_body", "status", "last_error", "received_at",
                "processed_at")
    )  # fmt: skip
    admin_log = list(
        traces.admin_log_of(identity)
        .order_by("action_time", "pk")
        .values("id", "action_time", "user__username", "content_type__app_label",
                "content_type__model", "object_id", "object_repr", "action_flag",
                "change_message")
    )  # fmt: skip
    api_calls = list(
        traces.api_calls_of(identity)
        .order_by("created_at", "pk")
        .values("id", "created_at", "endpoint", "errcode", "errmsg")
    )
    batch_tag_errors = [
        {"job": job.pk, "created_at": job.created_at, **entry}
        for job, entries in traces.batch_tag_errors_of(identity)
        for entry in entries
    ]
    data = {
        "format": EXPORT_FORMAT,
        "exported_at": timezone.now(),
        "corp": {"corp_id": contact.corp.corp_id, "name": contact.corp.name},
        "profile": profile,
        "follow_relations": relations,
        "relation_history": history,
        "first_source": _first_source(contact),
        **{k: v for provider in export_providers for k, v in provider(contact).items()},
        "tags": tags,
        "timeline": timeline,
        "conversions": conversions,
        "callback_events": callback_events,
        "admin_log": admin_log,
        "api_calls": api_calls,
        "batch_tag_errors": batch_tag_errors,
    }
    counts = {key: len(value) for key, value in data.items() if isinstance(value, list)}
    _audit(contact=contact, actor=actor, action="export", detail={"sections": counts})
    return _jsonable(data)


# -- erasure -----------------------------------------------------------------------------------


@transaction.atomic
def contact_erase(*, contact: ExternalContact, actor: User | None) -> None:
    """Remove the customer's personal data everywhere we hold it, keep the rows (counts and
    reports stay the same), and write an audit row and a timeline line. One transaction.

    A second call is a no-op: the conditional update below finds the row already erased, so
    concurrent calls cannot both erase (or both write the audit row)."""
    contact = ExternalContact.objects.select_related("corp").get(pk=contact.pk)
    if contact.erased_at is not None:
        logger.info("contact %s already erased at %s", contact.pk, contact.erased_at)
        return
    original = contact.external_userid
    pseudonym = erased_pseudonym(corp_id=contact.corp.corp_id, external_userid=original)
    now = timezone.now()
    erased = ExternalContact.objects.filter(pk=contact.pk, erased_at__isnull=True).update(
        external_userid=pseudonym, name="", avatar="", unionid="", corp_name="",
        details_error="", erased_at=now, updated_at=now,
        # Nothing left to fetch: keep the pending-details sweeper off this row.
        details_attempts=DETAILS_MAX_ATTEMPTS,
    )  # fmt: skip
    if not erased:
        return

    relations = FollowRelation.objects.filter(external_contact_id=contact.pk).update(
        remark="", description="", oper_userid="", updated_at=now
    )
    # Conversions keep their amounts and links; a note is free text (a phone number, a name).
    # Rows sent with this customer's ids but not matched yet are linked first, so the blanked
    # ids do not orphan them.
    conversions = ConversionEvent.objects.filter(_conversions_of(contact)).update(
        external_contact_id=contact.pk,
        matched_at=Coalesce(F("matched_at"), Value(now)),
        external_userid="",
        unionid="",
        note="",
    )
    # `contact` still holds the values from before the update above.
    identity = Identity.of(contact, pseudonym=pseudonym)
    events = _callback_events_erase(identity)
    traced = {
        "admin_log": traces.admin_log_erase(identity),
        "api_calls": traces.api_calls_erase(identity),
        "batch_tag_errors": traces.batch_tag_errors_erase(identity),
    }
    others = {k: v for provider in erase_providers for k, v in provider(contact, pseudonym).items()}
    # Summaries and details can name tags, channels, reasons, amounts: keep only the kinds.
    timeline = TimelineEvent.objects.filter(external_contact_id=contact.pk).update(
        summary="", data={}
    )
    audit = _audit(
        contact=contact,
        actor=actor,
        action="erase",
        detail={"pseudonym": pseudonym, "follow_relations": relations,
                "conversions": conversions, "callback_events": events,
                "timeline_events": timeline, **traced, **others},
    )  # fmt: skip
    contact.refresh_from_db()
    timeline_record(
        contact=contact,
        kind=TimelineEvent.Kind.ERASED,
        occurred_at=now,
        dedup_key="erased",
        data={"audit_log": audit.pk},
    )


def _conversions_of(contact: ExternalContact) -> Q:
    """The customer's conversions, and those sent with their ids but not matched yet."""
    condition = Q(external_contact_id=contact.pk) | Q(
        external_contact__isnull=True, corp_id=contact.corp_id,
        external_userid=contact.external_userid,
    )  # fmt: skip
    if contact.unionid:
        condition |= Q(
            external_contact__isnull=True, corp_id=contact.corp_id, unionid=contact.unionid
        )
    return condition


def _callback_events_erase(identity: Identity) -> int:
    """The customer's own inbox rows lose their raw and parsed bodies; rows naming them among
    others (a group chat's MemChangeList) keep the others' fields with the customer's id
    replaced, and lose the raw body (it is encrypted, but decryptable with the corp's key).
    The id becomes the pseudonym in the columns and the dedup key. Own rows not processed yet
    are ignored: processing them would bring the customer back under the original id."""
    count = 0
    for event in traces.callback_events_of(identity):
        own = event.external_user_id == identity.external_userid
        changes: dict[str, object] = {
            "raw_body": "",
            "payload": {} if own else identity.scrub(event.payload),
            "external_user_id": identity.scrub(event.external_user_id),
            "dedup_key": identity.scrub(event.dedup_key),
            "last_error": identity.scrub(event.last_error),
        }
        if own and event.status in (CallbackEvent.Status.PENDING, CallbackEvent.Status.FAILED):
            changes.update(status=CallbackEvent.Status.IGNORED, last_error="personal data erased")
        CallbackEvent.objects.filter(pk=event.pk).update(**changes)
        count += 1
    return count


# -- retention ---------------------------------------------------------------------------------


def callback_bodies_prune(*, older_than_days: int | None = None) -> int:
    """Blank the raw bodies of inbox rows received more than the retention period ago
    (settings.WECOM_RAW_BODY_RETENTION_DAYS, default 90). The parsed fields stay for replay and
    audit. Batched UPDATEs in the database; returns the number of rows blanked."""
    days = older_than_days
    if days is None:
        days = getattr(settings, "WECOM_RAW_BODY_RETENTION_DAYS", RAW_BODY_RETENTION_DAYS)
    cutoff = timezone.now() - timedelta(days=days)
    old = CallbackEvent.objects.filter(received_at__lt=cutoff).exclude(raw_body="")
    total = 0
    while True:
        batch = old.order_by("pk").values("pk")[:PRUNE_BATCH]
        blanked = CallbackEvent.objects.filter(pk__in=batch).update(raw_body="")
        total += blanked
        if blanked < PRUNE_BATCH:
            return total
