"""PIPL: where else a customer is named, besides the rows that point at them.

The customer's own rows (relations, conversions, timeline...) are found by their foreign keys.
Their ids and name also reach rows that do not point at them: group-chat events name every
member who joined (MemChangeList, the dedup key, the encrypted raw body), Django's admin log
keeps each edited object's str() and change message, a batch tagging job's errors keep
str(customer), the WeCom API call log keeps WeCom's errmsg. The same selection serves the
export (everything we hold) and the erasure (everything it rewrites), so the two cannot drift.

Free text is rewritten, not blanked, where the rest is not about the customer: each personal
string becomes the pseudonym, so "王小明 × 张三" in the admin log reads "erased-… × 张三".
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db.models import Model, Q, QuerySet, TextField
from django.db.models.functions import Cast

from contacts.models import BatchTagJob, ExternalContact, FollowRelation
from scrm.wecom.models import ApiCall, CallbackEvent


@dataclass(frozen=True)
class Identity:
    """The customer's personal strings as they were before erasure, and their pseudonym."""

    corp_pk: int
    contact_pk: int
    external_userid: str
    unionid: str
    name: str
    pseudonym: str

    @classmethod
    def of(cls, contact: ExternalContact, pseudonym: str) -> Identity:
        return cls(
            corp_pk=contact.corp_id, contact_pk=contact.pk,
            external_userid=contact.external_userid, unionid=contact.unionid,
            name=contact.name, pseudonym=pseudonym,
        )  # fmt: skip

    @property
    def ids(self) -> list[str]:
        """Strings unique enough to search the whole corp's rows for."""
        return [i for i in (self.external_userid, self.unionid) if i]

    def scrub(self, value: Any) -> Any:
        """`value` (text, or JSON data) with every personal string replaced by the pseudonym."""
        if isinstance(value, str):
            # Longest first: a name may be part of an id, never the other way round that matters.
            for personal in sorted((*self.ids, self.name), key=len, reverse=True):
                if personal:
                    value = value.replace(personal, self.pseudonym)
            return value
        if isinstance(value, list):
            return [self.scrub(item) for item in value]
        if isinstance(value, dict):
            return {self.scrub(k): self.scrub(v) for k, v in value.items()}
        return value


def _text_contains(field: str, needles: Iterable[str]) -> Q:
    condition = Q(pk__in=[])
    for needle in needles:
        condition |= Q(**{f"{field}__contains": needle})
    return condition


# -- callback events -----------------------------------------------------------------------------


def callback_events_of(identity: Identity) -> QuerySet[CallbackEvent]:
    """The inbox rows about the customer (their own events) or naming them (group chats)."""
    return (
        CallbackEvent.objects.filter(corp_id=identity.corp_pk)
        .annotate(payload_text=Cast("payload", TextField()))
        .filter(
            Q(external_user_id=identity.external_userid)
            | _text_contains("payload_text", identity.ids)
            | _text_contains("dedup_key", identity.ids)
        )
    )


# -- the admin log -------------------------------------------------------------------------------


def _owned_rows(identity: Identity) -> list[tuple[type[Model], list[int]]]:
    """Every row pointing at the customer or one of their follow relations, by model. Found
    through the models' relations, so apps above contacts are covered without importing them."""
    relation_pks = list(
        FollowRelation.objects.filter(external_contact_id=identity.contact_pk).values_list(
            "pk", flat=True
        )
    )
    owned: list[tuple[type[Model], list[int]]] = [
        (ExternalContact, [identity.contact_pk]),
        (FollowRelation, relation_pks),
    ]
    for parent, pks in ((ExternalContact, [identity.contact_pk]), (FollowRelation, relation_pks)):
        for relation in parent._meta.related_objects:
            if not (relation.one_to_many or relation.one_to_one) or not pks:
                continue
            model = relation.related_model
            found = model._default_manager.filter(**{f"{relation.field.name}__in": pks})
            owned.append((model, list(found.values_list("pk", flat=True))))
    return owned


def admin_log_of(identity: Identity) -> QuerySet[LogEntry]:
    """Admin log entries of the customer's rows, or naming their ids anywhere."""
    condition = _text_contains("object_repr", identity.ids) | _text_contains(
        "change_message", identity.ids
    )
    for model, pks in _owned_rows(identity):
        if pks:
            content_type = ContentType.objects.get_for_model(model)
            condition |= Q(content_type=content_type, object_id__in=[str(pk) for pk in pks])
    return LogEntry.objects.filter(condition)


def _change_message_scrub(identity: Identity, message: str) -> str:
    # Django keeps a JSON list here (names escaped as \\uXXXX), or plain text from older code.
    try:
        data = json.loads(message)
    except ValueError:
        return identity.scrub(message)
    return json.dumps(identity.scrub(data))


def admin_log_erase(identity: Identity) -> int:
    count = 0
    for entry in admin_log_of(identity):
        repr_, message = identity.scrub(entry.object_repr)[:200], entry.change_message
        message = _change_message_scrub(identity, message) if message else message
        if (repr_, message) != (entry.object_repr, entry.change_message):
            LogEntry.objects.filter(pk=entry.pk).update(object_repr=repr_, change_message=message)
            count += 1
    return count


# -- batch tagging errors and the API call log ---------------------------------------------------


def batch_tag_errors_of(identity: Identity) -> list[tuple[BatchTagJob, list[dict]]]:
    """(job, the error entries about the customer) for the corp's batch tagging jobs."""
    relation_pks = set(
        FollowRelation.objects.filter(external_contact_id=identity.contact_pk).values_list(
            "pk", flat=True
        )
    )
    found = []
    for job in BatchTagJob.objects.filter(corp_id=identity.corp_pk).exclude(errors=[]):
        mine = [
            entry
            for entry in job.errors
            if isinstance(entry, dict) and entry.get("relation") in relation_pks
        ]
        if mine:
            found.append((job, mine))
    return found


def batch_tag_errors_erase(identity: Identity) -> int:
    count = 0
    for job, mine in batch_tag_errors_of(identity):
        errors = [identity.scrub(entry) if entry in mine else entry for entry in job.errors]
        BatchTagJob.objects.filter(pk=job.pk).update(errors=errors)
        count += len(mine)
    return count


def api_calls_of(identity: Identity) -> QuerySet[ApiCall]:
    return ApiCall.objects.filter(corp_id=identity.corp_pk).filter(
        _text_contains("errmsg", identity.ids) | _text_contains("endpoint", identity.ids)
    )


def api_calls_erase(identity: Identity) -> int:
    count = 0
    for call in api_calls_of(identity):
        ApiCall.objects.filter(pk=call.pk).update(
            errmsg=identity.scrub(call.errmsg)[:255], endpoint=identity.scrub(call.endpoint)[:128]
        )
        count += 1
    return count
