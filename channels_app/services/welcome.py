"""Sending the channel welcome message (新客户欢迎语) with the add's welcome_code.

The code works once and only for 20 seconds after the add: this runs on the fast "welcome"
queue, and every outcome is recorded once per add (WelcomeDelivery + the timeline).

A worker can die holding a welcome (SIGKILL, OOM, a lost machine): its broker message comes
back only after Redis's visibility timeout (an hour), long after the code expired. So the add
writes its WelcomeDelivery row as QUEUED in the add's own transaction, a worker claims the row
(a short lease) before it calls WeCom, and a sweep every two seconds queues again the welcomes
whose claim went stale or that nobody started, while their code still lives. WeCom takes each
code once, so a second attempt can never send a second welcome.

The after-add task claims the welcome when it starts and renews the claim just before it
calls WeCom: a claim is a worker at work, an unclaimed row a task still waiting in the queue.

Deadline first (a burst): a welcome taken from the queue within DETAILS_FIRST_WITHIN_SECONDS
of the callback fetches the customer's details first (the name, add_way for the rules); a
later one is sent at once, {customer_name} filled with settings.WELCOME_NAME_FALLBACK; one
past SEND_BY_SECONDS is recorded expired without calling WeCom, so the calls go to the codes
that can still make it. The details and tags follow on the default queue.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from channels_app.models import Attribution, WelcomeDelivery
from contacts.models import RelationEvent, TimelineEvent
from contacts.timeline import timeline_record
from scrm.wecom.client import WeComClient, WeComError, WeComTransientError

logger = logging.getLogger("channels_app.welcome")

WELCOME_CODE_SECONDS = 20  # WeCom's lifetime of a welcome_code
# Later than this after the callback's receipt a send would reach WeCom after the code died
# (its clock started a little before our receipt): recorded expired without calling WeCom.
SEND_BY_SECONDS = 19.0
# A welcome picked up this soon after the receipt fetches the customer's details first (the
# name for {customer_name}, add_way for the rules); later, behind a burst, it goes out at
# once with settings.WELCOME_NAME_FALLBACK: a code that can still make it goes first.
DETAILS_FIRST_WITHIN_SECONDS = 5.0
# A claim older than this is a worker that died (details and send take well under a second;
# a slower worker that loses its claim does not send: the one that took over does).
CLAIM_LEASE_SECONDS = 5
# A claim younger than this is sent on without renewing it (a fifth of the lease: clock skew
# between workers up to 4 s cannot make the sweep take it over meanwhile).
CLAIM_FRESH_SECONDS = 1.0
# A welcome nobody claimed this long after it was queued waits behind a burst, or sat in a
# dead worker's prefetch: the sweep sends it itself.
UNCLAIMED_AFTER_SECONDS = 4
# Rows still queued this long after the callback will never be sent: recorded as expired.
GIVE_UP_SECONDS = 60
# One sweep sends for at most this long; the next one, two seconds later, goes on.
SWEEP_BUDGET_SECONDS = 8.0
MAX_TEXT_BYTES = 4000  # WeCom's limit for text.content
OUTCOME_BY_ERRCODE = {
    41050: WelcomeDelivery.Outcome.EXPIRED,
    41051: WelcomeDelivery.Outcome.ALREADY_CHATTING,
    41096: WelcomeDelivery.Outcome.ALREADY_CHATTING,  # already being sent
}


def welcome_details_in_time(*, received_at: datetime | None, now: datetime | None = None) -> bool:
    """Whether a welcome has time to fetch the customer's details before it is sent."""
    if received_at is None:
        return True
    age = ((now or timezone.now()) - received_at).total_seconds()
    return age <= DETAILS_FIRST_WITHIN_SECONDS


def welcome_past_deadline(*, received_at: datetime | None, now: datetime | None = None) -> bool:
    if received_at is None:
        return False
    return ((now or timezone.now()) - received_at).total_seconds() > SEND_BY_SECONDS


def welcome_render(template: str, *, customer_name: str, staff_name: str) -> str:
    """Fill {customer_name} and {staff_name}; any other brace is left as typed. A customer
    whose name is not known yet (details not fetched before the welcome, behind a burst) is
    greeted with settings.WELCOME_NAME_FALLBACK (default: empty)."""
    customer_name = customer_name or settings.WELCOME_NAME_FALLBACK
    text = template.replace("{customer_name}", customer_name).replace("{staff_name}", staff_name)
    encoded = text.encode()
    if len(encoded) > MAX_TEXT_BYTES:
        text = encoded[:MAX_TEXT_BYTES].decode(errors="ignore")
    return text


def welcome_queue(
    *, attribution: Attribution, welcome_code: str, received_at: datetime, new_add: bool = False
) -> WelcomeDelivery:
    """The add's welcome, to be sent: a QUEUED row, written in the add's transaction so that a
    lost task leaves it behind for the sweep. Idempotent (a replayed add finds its row).
    `new_add`: the add was appended to the history in this transaction, so it has no row yet
    (the history keeps one add per relation and time): inserted without a lookup."""
    now = timezone.now()
    key = {"corp_id": attribution.corp_id, "follow_relation_id": attribution.follow_relation_id,
           "added_at": attribution.added_at}  # fmt: skip
    values = {"outcome": WelcomeDelivery.Outcome.QUEUED, "welcome_code": welcome_code,
              "received_at": received_at, "queued_at": now}  # fmt: skip
    if new_add:
        return WelcomeDelivery.objects.create(**key, **values)
    delivery, _ = WelcomeDelivery.objects.get_or_create(**key, defaults=values)
    return delivery


def welcome_claim(
    *, attribution: Attribution, welcome_code: str, received_at: datetime | None
) -> WelcomeDelivery | None:
    """This worker's claim on the add's welcome, for CLAIM_LEASE_SECONDS (committed at once,
    outside any transaction of the caller's); None when it is done, or claimed by a live
    worker."""
    # The add wrote the row (welcome_queue): found with one read, no savepoint; an add of
    # before that wrote none gets it now.
    delivery = WelcomeDelivery.objects.filter(
        corp_id=attribution.corp_id, follow_relation_id=attribution.follow_relation_id,
        added_at=attribution.added_at,
    ).first()  # fmt: skip
    if delivery is None:
        delivery = _delivery_write(attribution, welcome_code, received_at)
        if delivery is None:
            return None
    if delivery.outcome != WelcomeDelivery.Outcome.QUEUED:
        return None  # handled already: a replay
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


def _delivery_write(
    attribution: Attribution, welcome_code: str, received_at: datetime | None
) -> WelcomeDelivery | None:
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
    return delivery


def _claim_renew(claim: WelcomeDelivery) -> WelcomeDelivery | None:
    """The claim, renewed just before WeCom is called; None when it lapsed and another
    worker took the welcome over (or finished it)."""
    now = timezone.now()
    renewed = WelcomeDelivery.objects.filter(
        pk=claim.pk, outcome=WelcomeDelivery.Outcome.QUEUED, claimed_at=claim.claimed_at
    ).update(claimed_at=now)
    if not renewed:
        return None
    claim.claimed_at = now
    return claim


def _claim_aged(claim: WelcomeDelivery) -> bool:
    """Whether the claim must be renewed before calling WeCom: one taken a moment ago (the
    welcome went first, no details fetched) cannot have been taken over, as the sweep only
    takes claims older than CLAIM_LEASE_SECONDS."""
    age = (timezone.now() - claim.claimed_at).total_seconds() if claim.claimed_at else 1e9
    return age > CLAIM_FRESH_SECONDS


def _claim_release(claim: WelcomeDelivery) -> None:
    """Give the claim up (WeCom was busy): the task's retry claims it again at once."""
    WelcomeDelivery.objects.filter(
        pk=claim.pk, outcome=WelcomeDelivery.Outcome.QUEUED, claimed_at=claim.claimed_at
    ).update(claimed_at=None)


def welcome_send(
    *,
    attribution: Attribution,
    welcome_code: str,
    chosen: tuple[str, str, list] | None,
    received_at: datetime | None = None,
    claim: WelcomeDelivery | None = None,
) -> WelcomeDelivery | None:
    """Send once per add; None if this add's welcome was already handled (a replay) or is
    being sent by another live worker. `claim`: taken earlier by welcome_claim."""
    if claim is not None:
        delivery = _claim_renew(claim) if _claim_aged(claim) else claim
    else:
        delivery = welcome_claim(
            attribution=attribution, welcome_code=welcome_code, received_at=received_at
        )
    if delivery is None:
        return None
    relation = attribution.follow_relation
    errcode = None
    if chosen is None:
        source, outcome = "", WelcomeDelivery.Outcome.NONE_CONFIGURED
    elif welcome_past_deadline(received_at=delivery.received_at or received_at):
        # Behind a burst: WeCom would refuse the code (41050); the call is saved for the
        # welcomes that can still make it.
        source, outcome = chosen[0], WelcomeDelivery.Outcome.EXPIRED
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
            _claim_release(delivery)
            raise  # the task's retry (or the sweep) claims it again
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
        # The row as just written, without reading it back.
        delivery.outcome, delivery.source, delivery.errcode = outcome, source, errcode
        delivery.sent_at = now
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
    """Send a welcome the sweep found queued (its worker died, or it waits behind a burst);
    None when it is no longer queued or another worker holds it. The customer's details are
    fetched first when no worker got to them and there is time, so the welcome still greets
    them by name."""
    from channels_app.services.rules import add_context, matching_rules, welcome_for
    from contacts.services import external_contact_refresh

    delivery = WelcomeDelivery.objects.filter(
        pk=delivery_id, outcome=WelcomeDelivery.Outcome.QUEUED
    ).first()
    if delivery is None:
        return None
    # No first(): its ORDER BY and LIMIT made PostgreSQL plan this join in milliseconds (see
    # scrm.pipeline._attribution_for_after_add); one add has one attribution.
    attribution = next(iter(
        Attribution.objects.select_related(
            "corp", "live_code", "channel", "follow_relation__staff",
            "follow_relation__external_contact",
        )
        .filter(follow_relation_id=delivery.follow_relation_id, added_at=delivery.added_at)
        .order_by()
    ), None)  # fmt: skip
    if attribution is None:
        return None
    claim = welcome_claim(
        attribution=attribution, welcome_code=delivery.welcome_code,
        received_at=delivery.received_at,
    )  # fmt: skip
    if claim is None:
        return None
    contact = attribution.follow_relation.external_contact
    if contact.details_fetched_at is None and welcome_details_in_time(
        received_at=delivery.received_at
    ):
        try:
            external_contact_refresh(contact_id=contact.pk)
            contact.refresh_from_db()
        except WeComError:
            logger.warning("details of contact %s not fetched yet", contact.pk)
    add_way = RelationEvent.objects.values_list("add_way", flat=True).get(
        pk=attribution.add_event_id
    )
    rules = matching_rules(corp_id=attribution.corp_id, ctx=add_context(attribution, add_way))
    return welcome_send(
        attribution=attribution, welcome_code=delivery.welcome_code,
        chosen=welcome_for(attribution, rules), received_at=delivery.received_at, claim=claim,
    )  # fmt: skip


def welcomes_recover(*, now: datetime | None = None) -> int:
    """Send the welcomes whose worker died, while their code lives; the number attempted.

    Beat runs this every two seconds on the welcome_sweep queue, which the welcome workers
    take in turn with the welcome queue (so it never waits behind a burst). A welcome counts
    as lost when its
    claim is older than CLAIM_LEASE_SECONDS, or when nobody claimed it UNCLAIMED_AFTER_SECONDS
    after it was queued; the oldest go first. Each attempt claims the row, so overlapping
    sweeps and the late original task never send twice. Rows left queued past
    GIVE_UP_SECONDS are recorded as expired."""
    started = time.monotonic()
    now = now or timezone.now()
    queued = WelcomeDelivery.objects.filter(outcome=WelcomeDelivery.Outcome.QUEUED)
    queued.filter(received_at__lt=now - timedelta(seconds=GIVE_UP_SECONDS)).update(
        outcome=WelcomeDelivery.Outcome.EXPIRED, sent_at=now
    )
    lost = (
        queued.filter(received_at__gte=now - timedelta(seconds=WELCOME_CODE_SECONDS))
        .filter(
            Q(
                claimed_at__isnull=True,
                queued_at__lt=now - timedelta(seconds=UNCLAIMED_AFTER_SECONDS),
            )
            | Q(claimed_at__lt=now - timedelta(seconds=CLAIM_LEASE_SECONDS))
        )
        .order_by("received_at")
        .values_list("pk", flat=True)
    )
    attempted = 0
    for delivery_id in list(lost[:200]):
        if time.monotonic() - started > SWEEP_BUDGET_SECONDS:
            break
        try:
            if welcome_resend(delivery_id=delivery_id) is not None:
                attempted += 1
        except WeComTransientError:
            logger.warning("welcome %s: WeCom busy, the next sweep tries again", delivery_id)
    if attempted:
        logger.warning("sent %d welcomes left by a dead or lagging worker", attempted)
    return attempted
