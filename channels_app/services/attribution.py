"""Attribution: each add of the relation history resolved, through its state, to a live code,
channel, scan or referrer; and the first touch, projected from the earliest add."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Case, Q, Value, When

from channels_app.models import Attribution, LandingSlot, LiveCode, ReferralCode, Scan
from channels_app.services.assignment import counter_bump_added
from channels_app.services.landing_scans import landing_scan_for_slot
from channels_app.state import parse_state
from contacts.models import ExternalContact, FirstSource, RelationEvent
from contacts.services import first_source_project
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

    def code(**lookup: object) -> LiveCode | None:
        found = LiveCode.objects.filter(corp=corp, **lookup).select_related("channel").first()
        if found is not None:
            found.corp = corp  # the row in hand: not joined, its secrets not decrypted again
        return found

    if parsed.kind == "native":
        return Resolved(parsed.kind, live_code=code(pk=parsed.object_id))
    if parsed.kind == "landing":
        slot = LandingSlot.objects.filter(
            pk=parsed.second_id, live_code_id=parsed.object_id, corp=corp
        ).first()
        # The slot's lease holder: the latest scan that leased it before the add (written
        # from the landing page's Redis buffer if it is still only there).
        scan = landing_scan_for_slot(slot=slot, added_at=added_at) if slot else None
        return Resolved(
            parsed.kind,
            live_code=code(pk=parsed.object_id),
            scan=scan,
            referral=scan.referral if scan else None,
        )
    if parsed.kind == "referral":
        referral = ReferralCode.objects.filter(pk=parsed.object_id, corp=corp).first()
        live_code = code(pk=referral.live_code_id) if referral else None
        return Resolved(parsed.kind, live_code=live_code, referral=referral)
    if parsed.kind == "foreign":
        # Codes adopted from WeCom keep their original state.
        return Resolved(parsed.kind, live_code=code(state=parsed.raw))
    return Resolved(parsed.kind)


def attribution_record(
    *, add_event: RelationEvent, new_add: bool = False
) -> tuple[Attribution, bool]:
    """The add's Attribution, resolved from its state when new; returns (attribution, created).
    Idempotent per add (attribution_once_per_add). The add's counter is bumped only when the
    attribution is new, in the caller's transaction. `new_add`: the add was appended to the
    history in the caller's transaction, so it has no attribution yet (no lookup)."""
    if not new_add:
        existing = (
            Attribution.objects.filter(corp_id=add_event.corp_id, add_event=add_event)
            .select_related("live_code", "channel")
            .first()
        )
        if existing is not None:
            return existing, False
    corp = add_event.corp
    resolved = state_resolve(corp=corp, state=add_event.state, added_at=add_event.occurred_at)
    live_code = resolved.live_code
    attribution = Attribution.objects.create(
        corp=corp,
        add_event=add_event,
        external_contact_id=add_event.external_contact_id,
        follow_relation_id=add_event.follow_relation_id,
        staff_id=add_event.staff_id,
        live_code=live_code,
        channel=live_code.channel if live_code else None,
        scan=resolved.scan,
        referrer_id=resolved.referral.referrer_id if resolved.referral else None,
        store_id=resolved.scan.store_id if resolved.scan else None,
        state=add_event.state,
        state_kind=resolved.kind,
        added_at=add_event.occurred_at,
    )
    if live_code is not None:
        counter_bump_added(
            live_code=live_code, staff_id=add_event.staff_id, at=add_event.occurred_at
        )
    return attribution, True


def first_touch_project(
    *, contact: ExternalContact, only_add: RelationEvent | None = None
) -> FirstSource | None:
    """The customer's first touch, derived in one place: the first source (contacts'
    projection of the earliest add) and the is_first_touch flag of the Attribution of that add,
    and of no other. Call after every change to the customer's adds, with the customer's row
    locked. `only_add`: the customer is new in this transaction, this add its whole history."""
    first_source = first_source_project(contact=contact, only_add=only_add)
    first_add_id = first_source.add_event_id if first_source else None
    attributions = Attribution.objects.filter(corp_id=contact.corp_id, external_contact=contact)
    if first_add_id is None:
        attributions.filter(is_first_touch=True).update(is_first_touch=False)
        return None
    # One statement: the flag set on that add's attribution and cleared on any other.
    is_first = Q(add_event_id=first_add_id)
    attributions.filter(
        (is_first & Q(is_first_touch=False)) | (~is_first & Q(is_first_touch=True))
    ).update(is_first_touch=Case(When(is_first, then=Value(True)), default=Value(False)))
    return first_source
