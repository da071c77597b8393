"""Sending the channel welcome message (新客户欢迎语) with the add's welcome_code.

The code works once and only for 20 seconds after the add: this runs on the fast "welcome"
queue, and every outcome is recorded once per add (WelcomeDelivery + the timeline)."""

from __future__ import annotations

from datetime import datetime

from django.db import IntegrityError, transaction

from channels_app.models import Attribution, WelcomeDelivery
from contacts.models import TimelineEvent
from contacts.timeline import timeline_record
from scrm.wecom.client import WeComClient, WeComError, WeComTransientError

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


def welcome_send(
    *,
    attribution: Attribution,
    welcome_code: str,
    chosen: tuple[str, str, list] | None,
    received_at: datetime | None = None,
) -> WelcomeDelivery | None:
    """Send once per add; None if this add's welcome was already handled (a replay)."""
    if WelcomeDelivery.objects.filter(
        follow_relation_id=attribution.follow_relation_id, added_at=attribution.added_at
    ).exists():
        return None
    relation = attribution.follow_relation
    errcode = None
    if chosen is None:
        source, outcome = "", WelcomeDelivery.Outcome.NONE_CONFIGURED
    else:
        source, template, attachments = chosen
        body: dict = {"welcome_code": welcome_code, "attachments": attachments[:9]}
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
            raise
        except WeComError as exc:
            errcode = exc.errcode
            outcome = OUTCOME_BY_ERRCODE.get(exc.errcode or 0, WelcomeDelivery.Outcome.FAILED)
    try:
        with transaction.atomic():
            delivery = WelcomeDelivery.objects.create(
                corp_id=attribution.corp_id, follow_relation=relation,
                added_at=attribution.added_at, source=source, outcome=outcome, errcode=errcode,
                received_at=received_at,
            )  # fmt: skip
            sent = outcome == WelcomeDelivery.Outcome.SENT
            timeline_record(
                contact=relation.external_contact,
                kind=TimelineEvent.Kind.WELCOME_SENT if sent else TimelineEvent.Kind.WELCOME_FAILED,
                occurred_at=delivery.sent_at,
                dedup_key=f"welcome:{relation.pk}:{int(attribution.added_at.timestamp())}",
                staff=relation.staff,
                summary=str(delivery.get_outcome_display()),
                data={"outcome": outcome, "source": source, "errcode": errcode},
            )
    except IntegrityError:  # a concurrent duplicate recorded it first
        return None
    return delivery
