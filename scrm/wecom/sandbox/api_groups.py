"""The sandbox's customer-group endpoints: join ways (客户群「加入群聊」) and groupchat/get."""

from __future__ import annotations

import secrets

from django.conf import settings

from scrm.wecom.sandbox.api import Answer, ApiError, ok
from scrm.wecom.sandbox.models import SandboxCorp, SandboxGroupChat, SandboxJoinWay

MAX_JOIN_WAY_CHATS = 5


def _join_way(corp: SandboxCorp, body: Answer) -> SandboxJoinWay:
    way = SandboxJoinWay.objects.filter(corp=corp, config_id=body.get("config_id") or "").first()
    if way is None:
        raise ApiError(41044, "invalid config_id")
    return way


def _join_way_fields(corp: SandboxCorp, body: Answer) -> dict:
    chat_ids = list(body.get("chat_id_list") or [])
    if not 1 <= len(chat_ids) <= MAX_JOIN_WAY_CHATS:
        raise ApiError(40058, "chat_id_list must hold 1..5 chats")
    known = set(corp.group_chats.filter(chat_id__in=chat_ids).values_list("chat_id", flat=True))
    if set(chat_ids) - known:
        raise ApiError(90501, "chat is not external group chat")
    state = str(body.get("state") or "")
    if len(state) > 30:
        raise ApiError(40058, "state exceeds 30 characters")
    return {
        "remark": str(body.get("remark") or "")[:30],
        "auto_create_room": bool(body.get("auto_create_room", 1)),
        "room_base_name": str(body.get("room_base_name") or "")[:40],
        "room_base_id": int(body.get("room_base_id") or 1),
        "chat_ids": chat_ids,
        "state": state,
    }


def add_join_way(corp: SandboxCorp, query: dict[str, str], body: Answer) -> Answer:
    if body.get("scene") not in (1, 2):
        raise ApiError(41040, "invalid scene")
    config_id = secrets.token_hex(16)
    base = settings.WECOM_SANDBOX_PUBLIC_URL.rstrip("/")
    SandboxJoinWay.objects.create(
        corp=corp, config_id=config_id, scene=body["scene"],
        qr_code=f"{base}/wecom-sandbox/qr/{config_id}.png", **_join_way_fields(corp, body),
    )  # fmt: skip
    return ok(config_id=config_id)


def get_join_way(corp: SandboxCorp, query: dict[str, str], body: Answer) -> Answer:
    way = _join_way(corp, body)
    return ok(
        join_way={
            "config_id": way.config_id, "scene": way.scene, "remark": way.remark,
            "auto_create_room": int(way.auto_create_room), "room_base_name": way.room_base_name,
            "room_base_id": way.room_base_id, "chat_id_list": way.chat_ids, "qr_code": way.qr_code,
            "state": way.state,
        }
    )  # fmt: skip


def update_join_way(corp: SandboxCorp, query: dict[str, str], body: Answer) -> Answer:
    way = _join_way(corp, body)
    for name, value in _join_way_fields(corp, body).items():
        setattr(way, name, value)
    way.save()
    return ok()


def del_join_way(corp: SandboxCorp, query: dict[str, str], body: Answer) -> Answer:
    _join_way(corp, body).delete()
    return ok()


def groupchat_get(corp: SandboxCorp, query: dict[str, str], body: Answer) -> Answer:
    chat = SandboxGroupChat.objects.filter(corp=corp, chat_id=body.get("chat_id") or "").first()
    if chat is None:
        raise ApiError(90501, "chat is not external group chat")
    members = [
        {"userid": m.userid, "type": m.type, "join_time": m.join_time,
         "join_scene": m.join_scene, "state": m.state, "name": m.name}
        for m in chat.members.order_by("join_time", "pk")
    ]  # fmt: skip
    return ok(
        group_chat={
            "chat_id": chat.chat_id, "name": chat.name, "owner": chat.owner,
            "create_time": chat.create_time, "member_list": members,
            "admin_list": [], "member_version": str(len(members)),
        }
    )  # fmt: skip


ENDPOINTS = {
    ("POST", "externalcontact/groupchat/add_join_way"): add_join_way,
    ("POST", "externalcontact/groupchat/get_join_way"): get_join_way,
    ("POST", "externalcontact/groupchat/update_join_way"): update_join_way,
    ("POST", "externalcontact/groupchat/del_join_way"): del_join_way,
    ("POST", "externalcontact/groupchat/get"): groupchat_get,
}
