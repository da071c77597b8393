"""PIPL: what channels_app holds about a customer, for export and erasure. Registered with
contacts.compliance at start-up (ChannelsAppConfig.ready)."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from channels_app.models import Attribution, GroupMemberJoin, Scan, WelcomeDelivery
from contacts.models import ExternalContact


def customer_channel_data(contact: ExternalContact) -> dict[str, list]:
    """What channels_app holds about one customer, for the PIPL export."""
    attributions = list(
        Attribution.objects.filter(external_contact=contact)
        .order_by("added_at", "pk")
        .values(
            "id", "added_at", "state", "state_kind", "is_first_touch", "scan_id", "referrer_id",
            "staff__userid", "live_code_id", "live_code__name", "channel_id", "channel__name",
            "channel__code", "store__name",
        )
    )  # fmt: skip
    scan_ids = [a["scan_id"] for a in attributions if a["scan_id"]]
    # No ip_hash or device_key: salted hashes, meaningful only with our secret salt.
    scans = list(
        Scan.objects.filter(pk__in=scan_ids)
        .order_by("created_at", "pk")
        .values(
            "id", "created_at", "live_code__name", "utm_source", "utm_medium", "utm_campaign",
            "utm_content", "utm_term", "device", "in_wechat", "referrer_url", "staff__userid",
            "store__name", "reused",
        )
    )  # fmt: skip
    welcomes = list(
        WelcomeDelivery.objects.filter(follow_relation__external_contact=contact)
        .order_by("added_at", "pk")
        .values("id", "follow_relation__staff__userid", "added_at", "source", "outcome",
                "errcode", "received_at", "sent_at")
    )  # fmt: skip
    group_joins = list(
        _group_joins_of(contact)
        .order_by("joined_at", "pk")
        .values("id", "chat_id", "member_id", "joined_at", "join_scene", "state",
                "channel__name")
    )  # fmt: skip
    return {
        "attributions": attributions,
        "scans": scans,
        "welcome_deliveries": welcomes,
        "group_joins": group_joins,
    }


def _group_joins_of(contact: ExternalContact) -> QuerySet[GroupMemberJoin]:
    """The customer's group joins, also those recorded before they were a customer (the
    member's id without the link). `contact` as it was before any erasure."""
    return GroupMemberJoin.objects.filter(
        Q(external_contact=contact) | Q(corp_id=contact.corp_id, member_id=contact.external_userid)
    )


def customer_channel_data_erase(contact: ExternalContact, pseudonym: str) -> dict[str, int]:
    """Unlink the customer's scans from the device (salted hashes), drop their referrer URLs
    (a shared link can carry a name or a phone number) and replace their id in group joins;
    attributions and counts stay, so reports do not change. `contact` is the row as it was
    before erasure."""
    scan_ids = Attribution.objects.filter(external_contact=contact).values("scan_id")
    scans = Scan.objects.filter(pk__in=scan_ids).update(ip_hash="", device_key="", referrer_url="")
    joins = _group_joins_of(contact).update(member_id=pseudonym)
    return {"scans": scans, "group_joins": joins}
