"""客户群活码: publishing join ways with our state, and attributing members who join."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.utils import timezone

from channels_app.models import GroupJoinWay, GroupMemberJoin
from channels_app.services.publishing import PublishError, errcode_message
from channels_app.state import encode_state, parse_state
from contacts.models import ExternalContact
from scrm.wecom.client import WeComClient, WeComError
from scrm.wecom.models import Corp

JOIN_TIME_SLACK = timedelta(
    minutes=5
)  # members listed without MemChangeList: joined near the event


def group_join_way_publish(*, join_way: GroupJoinWay) -> GroupJoinWay:
    """Create (or update in place, keeping the printed QR) the join way in WeCom."""
    join_way.full_clean()
    if not join_way.state:
        join_way.state = encode_state("group", join_way.pk)
    body = {
        "scene": join_way.scene,
        "remark": join_way.name[:30],
        "auto_create_room": int(join_way.auto_create_room),
        "room_base_name": join_way.room_base_name,
        "room_base_id": join_way.room_base_id,
        "chat_id_list": join_way.chat_ids,
        "state": join_way.state,
    }
    client = WeComClient(join_way.corp)
    try:
        if join_way.config_id:
            client.join_way_update({"config_id": join_way.config_id, **body})
        else:
            join_way.config_id = client.join_way_add(body)
        join_way.qr_code = client.join_way_get(join_way.config_id).get("qr_code", "")
    except WeComError as exc:
        raise PublishError(errcode_message(exc), errcode=exc.errcode) from exc
    join_way.published_at = timezone.now()
    join_way.save(update_fields=["state", "config_id", "qr_code", "published_at"])
    return join_way


def _join_way_for(corp: Corp, state: str) -> tuple[GroupJoinWay | None, str]:
    parsed = parse_state(state)
    ways = GroupJoinWay.objects.filter(corp=corp)
    if parsed.kind == "group":
        return ways.filter(pk=parsed.object_id).first(), parsed.kind
    if parsed.kind == "foreign":
        return ways.filter(state=parsed.raw).first(), parsed.kind
    return None, parsed.kind


def group_joins_record(
    *, corp: Corp, chat_id: str, member_ids: list[str], event_time: datetime
) -> int:
    """Resolve who joined (groupchat/get gives each member's join state and time) and record
    each join once. Called from a task, outside the inbox transaction; returns new joins."""
    chat = WeComClient(corp).group_chat_get(chat_id)
    wanted = set(member_ids)
    created = 0
    with transaction.atomic():
        for member in chat.get("member_list") or []:
            joined = datetime.fromtimestamp(int(member.get("join_time") or 0), UTC)
            if wanted and member.get("userid") not in wanted:
                continue
            if not wanted and joined < event_time - JOIN_TIME_SLACK:
                continue
            state = str(member.get("state") or "")
            join_way, kind = _join_way_for(corp, state)
            contact = None
            if int(member.get("type") or 0) == 2:
                contact = ExternalContact.objects.filter(
                    corp=corp, external_userid=member.get("userid")
                ).first()
            _join, was_created = GroupMemberJoin.objects.get_or_create(
                corp=corp,
                chat_id=chat_id,
                member_id=str(member.get("userid"))[:64],
                joined_at=joined,
                defaults={
                    "member_type": int(member.get("type") or 2),
                    "external_contact": contact,
                    "join_way": join_way,
                    "channel_id": join_way.channel_id if join_way else None,
                    "join_scene": member.get("join_scene"),
                    "state": state[:64],
                    "state_kind": kind,
                },
            )
            created += was_created
    return created
