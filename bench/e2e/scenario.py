"""The Django side of the benchmark (imported after django.setup()): the corp, its native code
with a welcome text and a tag, the burst, and the figures read back from the database."""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.db import connection
from django.db.models import Count, F

CORP_ID = "wwbenche2e000001"
WELCOME_TEXT = "您好 {customer_name}，我是{staff_name}，欢迎来到直播间！"
MEMBERS = 5


@dataclass(frozen=True)
class Scenario:
    corp_pk: int
    state: str
    tag_id: str


def scenario_setup() -> Scenario:
    """A sandbox corp with MEMBERS staff, registered in the app; a native code over all of
    them with a welcome text and a tag (so each add also costs its mark_tag), published."""
    from channels_app.models import Channel, LiveCode
    from channels_app.services.live_codes import live_code_create
    from channels_app.services.publishing import live_code_publish
    from contacts.services import staff_get_or_create
    from contacts.tags import tag_ensure
    from scrm.wecom.sandbox.simulate import sandbox_corp_setup
    from scrm.wecom.services import corp_create

    sandbox = sandbox_corp_setup(corp_id=CORP_ID, name="e2e 压测企业", members=MEMBERS)
    corp = corp_create(
        corp_id=sandbox.corp_id, name=sandbox.name, secret=sandbox.secret,
        callback_token=sandbox.callback_token, encoding_aes_key=sandbox.encoding_aes_key,
    )  # fmt: skip
    tag = tag_ensure(corp=corp, group_name="渠道", name="直播")
    channel = Channel.objects.create(corp=corp, name="直播间", code="live")
    pool = [
        {"staff": staff_get_or_create(corp=corp, userid=f"staff{n + 1:02d}")}
        for n in range(MEMBERS)
    ]
    code = live_code_create(
        corp=corp, channel=channel, name="直播 e2e", slug="live-e2e", mode=LiveCode.Mode.NATIVE,
        pool=pool, welcome_text=WELCOME_TEXT, tag_ids=[tag.tag_id],
    )  # fmt: skip
    code = live_code_publish(live_code=code)
    return Scenario(corp_pk=corp.pk, state=code.state, tag_id=tag.tag_id)


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    return round(values[max(0, math.ceil(share * len(values)) - 1)], 3)


def burst_figures(*, adds: int, tag_id: str) -> dict:
    """Outcomes, latencies and the exactly-once checks, from the app's and the sandbox's rows."""
    from channels_app.models import Attribution, WelcomeDelivery
    from contacts.models import CustomerTag, ExternalContact, FollowRelation
    from scrm.wecom.models import CallbackEvent
    from scrm.wecom.sandbox.models import SandboxFollow, SandboxWelcomeCode

    codes = SandboxWelcomeCode.objects.filter(used_at__isnull=False)
    # The sandbox's clock: from WeCom issuing the code (just before the callback) to the send.
    pairs = codes.values_list("issued_at", "used_at")
    wecom_delays = sorted((used - issued).total_seconds() for issued, used in pairs)
    # The app's clock: from the callback's receipt to the recorded outcome.
    receipt_to_welcome = sorted(
        (sent - received).total_seconds()
        for received, sent in WelcomeDelivery.objects.filter(
            outcome=WelcomeDelivery.Outcome.SENT
        ).values_list("received_at", "sent_at")
    )
    outcomes = dict(
        WelcomeDelivery.objects.values_list("outcome").annotate(n=Count("pk")).order_by()
    )
    inbox = dict(CallbackEvent.objects.values_list("status").annotate(n=Count("pk")).order_by())
    tagged = SandboxFollow.objects.filter(tag_ids__contains=[tag_id]).count()
    doubles = {
        "contacts": ExternalContact.objects.count() - adds,
        "relations": FollowRelation.objects.count() - adds,
        "attributions": Attribution.objects.count() - adds,
        "welcome_rows": WelcomeDelivery.objects.count() - adds,
        # The code's tag; a burst also raises a surge (analytics.surges) whose 紧急跟进 tags
        # are counted apart (surge_tagged).
        "tags_applied": CustomerTag.objects.filter(tag__tag_id=tag_id).count() - adds,
        "tags_in_wecom": tagged - adds,
    }
    within = sum(1 for d in wecom_delays if d <= 20)
    return {
        "surge_tagged": CustomerTag.objects.filter(source=CustomerTag.Source.SURGE).count(),
        "inbox": inbox,
        "welcome_outcomes": outcomes,
        "welcomes_sent_wecom": len(wecom_delays),
        "welcomes_within_20s": within,
        "welcomes_within_20s_share": round(within / adds, 4) if adds else None,
        "receipt_to_welcome_s": _spread(receipt_to_welcome),
        "wecom_issue_to_use_s": _spread(wecom_delays),
        "details_fetched": ExternalContact.objects.filter(details_fetched_at__isnull=False).count(),
        # rows minus adds: negative is lost, positive is double; all must be 0.
        "rows_minus_adds": doubles,
        "codes_used_late": codes.filter(used_at__gt=F("issued_at") + _seconds(20)).count(),
    }


def _seconds(n: int):
    from datetime import timedelta

    return timedelta(seconds=n)


def _spread(values: list[float]) -> dict:
    return {
        "n": len(values),
        "p50": percentile(values, 0.50),
        "p95": percentile(values, 0.95),
        "p99": percentile(values, 0.99),
        "max": round(values[-1], 3) if values else None,
    }


def progress_counts() -> dict[str, int]:
    """One round trip: how far the burst got (for the backlog curve and the end)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT
                 (SELECT count(*) FROM wecom_callbackevent),
                 (SELECT count(*) FROM wecom_callbackevent WHERE status IN ('processed','ignored')),
                 (SELECT count(*) FROM channels_app_welcomedelivery WHERE outcome <> 'queued'),
                 (SELECT count(*) FROM contacts_externalcontact
                    WHERE details_fetched_at IS NOT NULL),
                 (SELECT count(*) FROM contacts_customertag WHERE source <> 'surge')"""
        )
        received, processed, welcomed, detailed, tagged = cursor.fetchone()
    return {"received": received, "processed": processed, "welcomed": welcomed,
            "detailed": detailed, "tagged": tagged}  # fmt: skip
