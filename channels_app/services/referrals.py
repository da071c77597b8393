"""老带新: a customer's own referral link (landing codes) or contact way (native codes)."""

from __future__ import annotations

import secrets

from django.db import transaction

from channels_app.models import LiveCode, ReferralCode
from channels_app.services.assignment import native_userids
from channels_app.services.publishing import PublishError, errcode_message, skip_verify_now
from channels_app.state import encode_state
from contacts.models import ExternalContact
from scrm.wecom.client import WeComClient, WeComError


def referral_code_get_or_create(*, live_code: LiveCode, referrer: ExternalContact) -> ReferralCode:
    """The referrer's code for this live code, made once. For a native code, a contact way of
    its own is created whose state names the referral, so adds through it record the referrer;
    for a landing code the link /l/<slug>/?r=<token> carries it through the scan."""
    if referrer.corp_id != live_code.corp_id:
        raise PublishError("The customer belongs to another corp.")
    with transaction.atomic():
        referral, _created = ReferralCode.objects.get_or_create(
            live_code=live_code,
            referrer=referrer,
            defaults={"corp_id": live_code.corp_id, "token": secrets.token_urlsafe(9)[:12]},
        )
    if live_code.mode != LiveCode.Mode.NATIVE or referral.config_id:
        return referral
    users = native_userids(live_code) or list(live_code.published_users)
    if not users:
        raise PublishError("Nobody in the pool can receive customers now (caps, shifts).")
    state = encode_state("referral", referral.pk)
    try:
        answer = WeComClient(live_code.corp).contact_way_add(
            {"type": 2, "scene": 2, "state": state, "user": users,
             "remark": f"老带新 {referrer.name or referrer.external_userid}"[:30],
             "skip_verify": skip_verify_now(live_code), "is_exclusive": live_code.is_exclusive}
        )  # fmt: skip
    except WeComError as exc:
        raise PublishError(errcode_message(exc), errcode=exc.errcode) from exc
    ReferralCode.objects.filter(pk=referral.pk).update(
        config_id=answer["config_id"], qr_code=answer.get("qr_code", ""), state=state
    )
    referral.refresh_from_db()
    return referral


def referral_link(referral: ReferralCode, base_url: str) -> str:
    return f"{base_url.rstrip('/')}/l/{referral.live_code.slug}/?r={referral.token}"
