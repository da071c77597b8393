"""Attribution: each add resolved, through its state, to a live code, channel, scan or
referrer; the first source gets its code and channel when the add is the customer's first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction

from channels_app.models import Attribution, LandingSlot, LiveCode, ReferralCode, Scan
from channels_app.services.assignment import counter_bump_added
from channels_app.services.landing_scans import landing_scan_for_slot
from channels_app.state import parse_state
from contacts.models import FirstSource, FollowRelation
from contacts.services import first_source_set_channel
from scrm.wecom.models import Corp


@dataclass
class Resolved:
    kind: str
    live_code: LiveCode | None = None
    scan: Scan | None = None
    referral: ReferralCode | None = None


def state_resolve(*, corp: Corp, state: str, added_at: datetime) -> Resolved:
    """What a state points at, with one or two indexed lookups; unknown states resolve to
    nothing and are kept as they are (foreign)."""
    parsed = parse_state(state)
    codes = LiveCode.objects.filter(corp=corp).select_related("channel", "corp")
    if parsed.kind == "native":
        return Resolved(parsed.kind, live_code=codes.filter(pk=parsed.object_id).first())
    if parsed.kind == "landing":
        slot = LandingSlot.objects.filter(
            pk=parsed.second_id, live_code_id=parsed.object_id, corp=corp
        ).first()
        # The slot's lease holder: the latest scan that leased it before the add (written
        # from the landing page's Redis buffer if it is still only there).
        scan = landing_scan_for_slot(slot=slot, added_at=added_at) if slot else None
        return Resolved(
            parsed.kind,
            live_code=codes.filter(pk=parsed.object_id).first(),
            scan=scan,
            referral=scan.referral if scan else None,
        )
    if parsed.kind == "referral":
        referral = ReferralCode.objects.filter(pk=parsed.object_id, corp=corp).first()
        live_code = codes.filter(pk=referral.live_code_id).first() if referral else None
        return Resolved(parsed.kind, live_code=live_code, referral=referral)
    if parsed.kind == "foreign":
        # Codes adopted from WeCom keep their original state.
        return Resolved(parsed.kind, live_code=codes.filter(state=parsed.raw).first())
    return Resolved(parsed.kind)


@transaction.atomic
def attribution_record(
    *, relation: FollowRelation, first_source: FirstSource, state: str, added_at: datetime
) -> tuple[Attribution, bool]:
    """Record one add (idempotent per relation and add time); returns (attribution, created).
    Counters are bumped only when the attribution is new, in the same transaction."""
    corp = relation.corp
    resolved = state_resolve(corp=corp, state=state, added_at=added_at)
    live_code = resolved.live_code
    is_first = first_source.staff_id == relation.staff_id and first_source.added_at == added_at
    attribution, created = Attribution.objects.get_or_create(
        follow_relation=relation,
        added_at=added_at,
        defaults={
            "corp": corp,
            "external_contact_id": relation.external_contact_id,
            "staff_id": relation.staff_id,
            "live_code": live_code,
            "channel_id": live_code.channel_id if live_code else None,
            "scan": resolved.scan,
            "referrer_id": resolved.referral.referrer_id if resolved.referral else None,
            "store_id": resolved.scan.store_id if resolved.scan else None,
            "state": state[:64],
            "state_kind": resolved.kind,
            "is_first_touch": is_first,
        },
    )
    if is_first:
        # An earlier add delivered late may have taken the first source from another one.
        Attribution.objects.filter(external_contact_id=relation.external_contact_id).exclude(
            pk=attribution.pk
        ).update(is_first_touch=False)
        if not attribution.is_first_touch:
            Attribution.objects.filter(pk=attribution.pk).update(is_first_touch=True)
        if live_code is not None:
            first_source_set_channel(
                first_source=first_source,
                live_code_id=live_code.pk,
                channel_id=live_code.channel_id,
            )
    if created and live_code is not None:
        counter_bump_added(live_code=live_code, staff_id=relation.staff_id, at=added_at)
    return attribution, created
