"""Sending the channel welcome message (新客户欢迎语) with the add's welcome_code.

The code works once and only for 20 seconds after the add: this runs on the fast "welcome"
queue, and every outcome is recorded once per add (WelcomeDelivery + the timeline).

A worker can die holding a welcome (SIGKILL, OOM, a lost machine): its broker message comes
back only after Redis's visibility timeout (an hour), long after the code expired. So the add
writes its WelcomeDelivery row as QUEUED in the add's own transaction, a worker claims the row
(a short lease) before it calls WeCom, and a sweep every two seconds queues again the welcomes
whose claim went stale or that nobody started, while their code still lives. WeCom takes each
code once, so a second attempt can never send a second welcome.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from channels_app.models import Attribution, WelcomeDelivery
from contacts.models import RelationEvent, TimelineEvent
from contacts.timeline import timeline_record
from scrm.wecom.client import WeComClient, WeComError, WeComTransientError

logger = logging.getLogger("channels_app.welcome")

WELCOME_CODE_SECONDS = 20  # WeCom's lifetime of a welcome_code
# A claim older than this is a worker that died sending (a send to WeCom takes well under a
# second; a slower one that loses its claim only races a second attempt that WeCom refuses).
CLAIM_LEASE_SECONDS = 5
# A queued welcome nobody claimed within this long may sit in a dead worker's prefetch: queue
# it again (a duplicate message costs one query: the row is claimed once).
REQUEUE_AFTER_SECONDS = 3
# Rows still queued this long after the callback will never be sent: recorded as expired.
GIVE_UP_SECONDS = 60
MAX_TEXT_BYTES = 4000  # WeCom's limit for text.content
OUTCOME_BY_ERRCODE = {
    41050: WelcomeDelivery.Outcome.EXPIRED,
    41051: WelcomeDelivery.Outcome.ALREADY_CHATTING,
    41096: WelcomeDelivery.Outcome.ALREADY_CHATTING,  # already being sent
}


def welcome_render(template: str, *, customer_name: str, staff_name: str) -> str:
    """Fill {customer_name} and {staff_name}; any other brace is left as typed."""
    text = template.replace("{customer_name}", customer_name).replace("{staff_name}", staff_name)
    encoded = text.encode()
    if len(encoded) > MAX_TEXT_BYTES:
        text = encoded[:MAX_TEXT_BYTES].decode(errors="ignore")
    return text


def welcome_queue(
    *, attribution: Attribution, welcome_code: str, received_at: datetime
) -> WelcomeDelivery:
    """The add's welcome, to be sent: a QUEUED row, written in the add's transaction so that a
    lost task leaves it behind for the sweep. Idempotent (a replayed add finds its row)."""
    now = timezone.now()
    delivery, _ = WelcomeDelivery.objects.get_or_create(
        corp_id=attribution.corp_id, follow_relation_id=attribution.follow_relation_id,
        added_at=attribution.added_at,
        defaults={"outcome": WelcomeDelivery.Outcome.QUEUED, "welcome_code": welcome_code,
                  "received_at": received_at, "queued_at": now},
    )  # fmt: skip
    return delivery


def _claim(
    attribution: Attribution, welcome_code: str, received_at: datetime | None
) -> WelcomeDelivery | None:
    """This worker's claim on the add's welcome (committed at once, outside any transaction
    of the caller's); None when it is done, or claimed by a live worker."""
    try:
        with transaction.atomic():
            delivery = welcome_queue(
                attribution=attribution, welcome_code=welcome_code,
                received_at=received_at or timezone.now(),
            )  # fmt: skip
    except IntegrityError:  # a concurrent attempt wrote it first
        delivery = WelcomeDelivery.objects.filter(
            corp_id=attribution.corp_id, follow_relation_id=attribution.follow_relation_id,
            added_at=attribution.added_at,
        ).first()  # fmt: skip
        if delivery is None:
            return None
    now = timezone.now()
    claimed = (
        WelcomeDelivery.objects.filter(pk=delivery.pk, outcome=WelcomeDelivery.Outcome.QUEUED)
        .filter(
            Q(claimed_at__isnull=True)
            | Q(claimed_at__lt=now - timedelta(seconds=CLAIM_LEASE_SECONDS))
        )
        .update(claimed_at=now)
    )
    if not claimed:
        return None
    delivery.claimed_at = now
    return delivery


def welcome_send(
    *,
    attribution: Attribution,
    welcome_code: str,
    chosen: tuple[str, str, list] | None,
    received_at: datetime | None = None,
) -> WelcomeDelivery | None:
    """Send once per add; None if this add's welcome was already handled (a replay) or is
    being sent by another live worker."""
    delivery = _claim(attribution, welcome_code, received_at)
    if delivery is None:
        return None
    relation = attribution.follow_relation
    errcode = None
    if chosen is None:
        source, outcome = "", WelcomeDelivery.Outcome.NONE_CONFIGURED
    else:
        source, template, attachments = chosen
        code = delivery.welcome_code or welcome_code
        body: dict = {"welcome_code": code, "attachments": attachments[:9]}
        if template:
            text = welcome_render(
                template,
                customer_name=relation.external_contact.name,
                staff_name=relation.staff.name or relation.staff.userid,
            )
            body["text"] = {"content": text}
        try:
            WeComClient(attribution.corp).send_welcome_msg(body)
            outcome = WelcomeDelivery.Outcome.SENT
        except WeComTransientError:
            raise  # the claim lapses; the task's retry (or the sweep) claims it again
        except WeComError as exc:
            errcode = exc.errcode
            outcome = OUTCOME_BY_ERRCODE.get(exc.errcode or 0, WelcomeDelivery.Outcome.FAILED)
    return _record(delivery, attribution, outcome=outcome, source=source, errcode=errcode)


def _record(
    delivery: WelcomeDelivery,
    attribution: Attribution,
    *,
    outcome: str,
    source: str,
    errcode: int | None,
) -> WelcomeDelivery | None:
    """The outcome, once: a row still queued takes it; a welcome WeCom accepted also replaces
    the refusal a racing attempt (its code already used) may have recorded first."""
    relation = attribution.follow_relation
    sent = outcome == WelcomeDelivery.Outcome.SENT
    now = timezone.now()
    with transaction.atomic():
        still_open = Q(outcome=WelcomeDelivery.Outcome.QUEUED)
        if sent:
            still_open |= ~Q(outcome=WelcomeDelivery.Outcome.SENT)
        updated = WelcomeDelivery.objects.filter(still_open, pk=delivery.pk).update(
            outcome=outcome, source=source, errcode=errcode, sent_at=now
        )
        if not updated:
            return None
        delivery.refresh_from_db()
        timeline_record(
            contact=relation.external_contact,
            kind=TimelineEvent.Kind.WELCOME_SENT if sent else TimelineEvent.Kind.WELCOME_FAILED,
            occurred_at=delivery.sent_at,
            dedup_key=f"welcome:{relation.pk}:{int(attribution.added_at.timestamp())}",
            staff=relation.staff,
            summary=str(delivery.get_outcome_display()),
            data={"outcome": outcome, "source": source, "errcode": errcode},
        )
    return delivery


def welcome_resend(*, delivery_id: int) -> WelcomeDelivery | None:
    """Send a welcome the sweep found queued (its worker died, or it waits in a dead worker's
    prefetch); None when it is no longer queued or another worker holds it."""
    from channels_app.services.rules import add_context, matching_rules, welcome_for

    delivery = WelcomeDelivery.objects.filter(
        pk=delivery_id, outcome=WelcomeDelivery.Outcome.QUEUED
    ).first()
    if delivery is None:
        return None
    attribution = (
        Attribution.objects.select_related(
            "corp", "live_code", "channel", "follow_relation__staff",
            "follow_relation__external_contact",
        )
        .filter(follow_relation_id=delivery.follow_relation_id, added_at=delivery.added_at)
        .first()
    )  # fmt: skip
    if attribution is None:
        return None
    add_way = RelationEvent.objects.values_list("add_way", flat=True).get(
        pk=attribution.add_event_id
    )
    rules = matching_rules(corp_id=attribution.corp_id, ctx=add_context(attribution, add_way))
    return welcome_send(
        attribution=attribution, welcome_code=delivery.welcome_code,
        chosen=welcome_for(attribution, rules), received_at=delivery.received_at,
    )  # fmt: skip


def welcomes_requeue_lost(*, now: datetime | None = None) -> int:
    """Queue again the welcomes whose worker died, while their code lives; the number queued.

    Beat runs this every two seconds on the welcome queue. A row counts as lost when its
    claim is older than CLAIM_LEASE_SECONDS, or when nobody claimed it REQUEUE_AFTER_SECONDS
    after it was last queued. Each row is queued again at most once per that interval, by one
    sweep (compare-and-set on queued_at). Rows left queued past GIVE_UP_SECONDS are recorded
    as expired."""
    from channels_app.tasks import welcome_send_task

    now = now or timezone.now()
    queued = WelcomeDelivery.objects.filter(outcome=WelcomeDelivery.Outcome.QUEUED)
    queued.filter(received_at__lt=now - timedelta(seconds=GIVE_UP_SECONDS)).update(
        outcome=WelcomeDelivery.Outcome.EXPIRED, sent_at=now
    )
    stale = now - timedelta(seconds=REQUEUE_AFTER_SECONDS)
    lost = (
        queued.filter(received_at__gte=now - timedelta(seconds=WELCOME_CODE_SECONDS))
        .filter(Q(queued_at__isnull=True) | Q(queued_at__lt=stale))
        .filter(
            Q(claimed_at__isnull=True)
            | Q(claimed_at__lt=now - timedelta(seconds=CLAIM_LEASE_SECONDS))
        )
        .order_by("received_at")
        .values_list("pk", "queued_at")
    )
    requeued = 0
    for pk, queued_at in list(lost):
        if not WelcomeDelivery.objects.filter(pk=pk, queued_at=queued_at).update(queued_at=now):
            continue  # another sweep took it
        try:
            welcome_send_task.delay(pk)
        except Exception:  # the broker is down: the next sweep tries again
            logger.warning("could not queue welcome %s again", pk)
            continue
        requeued += 1
    if requeued:
        logger.warning("queued %d welcomes again (a worker died or fell behind)", requeued)
    return requeued
