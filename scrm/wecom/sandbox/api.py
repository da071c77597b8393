"""The sandbox's WeCom server API: the endpoints our client uses, with WeCom's errcodes.

`dispatch()` answers one request; it is served over HTTP by views.py and in-process by
transport.py (the default when WECOM_API_BASE is unset). State lives in the sandbox tables.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from scrm.wecom.sandbox.models import (
    SandboxAccessToken,
    SandboxContactWay,
    SandboxCorp,
    SandboxCustomer,
    SandboxFault,
    SandboxFollow,
    SandboxTag,
    SandboxTagGroup,
    SandboxWelcomeCode,
)

Answer = dict[str, Any]
TOKEN_LIFETIME = 7200
WELCOME_CODE_LIFETIME = 20  # seconds, as WeCom
MAX_CONTACT_WAY_USERS = 100
CST = ZoneInfo("Asia/Shanghai")


class ApiError(Exception):
    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(errmsg)
        self.errcode = errcode
        self.errmsg = errmsg


def ok(**data: Any) -> Answer:
    return {"errcode": 0, "errmsg": "ok", **data}


def _encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"sbx:{last_id}".encode()).decode()


def _decode_cursor(cursor: str) -> int:
    if not cursor:
        return 0
    try:
        prefix, value = base64.urlsafe_b64decode(cursor.encode()).decode().split(":")
        if prefix != "sbx":
            raise ValueError(prefix)
        return int(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(40058, "invalid cursor") from exc


def _limit(body: dict[str, Any], default: int, maximum: int) -> int:
    try:
        limit = int(body.get("limit") or default)
    except (TypeError, ValueError) as exc:
        raise ApiError(40058, "invalid limit") from exc
    if limit < 1 or limit > maximum:
        raise ApiError(40058, f"limit must be 1..{maximum}")
    return limit


# -- token -------------------------------------------------------------------------------------


def gettoken(query: dict[str, str], body: dict[str, Any]) -> Answer:
    corp = SandboxCorp.objects.filter(corp_id=query.get("corpid", "")).first()
    if corp is None:
        raise ApiError(40013, "invalid corpid")
    if not query.get("corpsecret"):
        raise ApiError(41004, "corpsecret missing")
    if not secrets.compare_digest(query["corpsecret"], corp.secret):
        raise ApiError(40001, "invalid credential")
    token = secrets.token_urlsafe(48)
    expires_at = timezone.now() + timedelta(seconds=TOKEN_LIFETIME)
    SandboxAccessToken.objects.create(corp=corp, token=token, expires_at=expires_at)
    return ok(access_token=token, expires_in=TOKEN_LIFETIME)


def authenticate(query: dict[str, str]) -> SandboxCorp:
    token = query.get("access_token")
    if not token:
        raise ApiError(41001, "access_token missing")
    row = SandboxAccessToken.objects.select_related("corp").filter(token=token).first()
    if row is None:
        raise ApiError(40014, "invalid access_token")
    if row.expires_at <= timezone.now():
        raise ApiError(42001, "access_token expired")
    return row.corp


# -- customers ---------------------------------------------------------------------------------


def _contact_json(customer: SandboxCustomer) -> dict[str, Any]:
    data = {
        "external_userid": customer.external_userid,
        "name": customer.name,
        "type": customer.type,
        "gender": customer.gender,
        "avatar": customer.avatar,
    }
    if customer.unionid:
        data["unionid"] = customer.unionid
    if customer.type == 2:
        data["corp_name"] = customer.corp_name
    return data


def _follow_json(follow: SandboxFollow, *, tags_as_ids: bool) -> dict[str, Any]:
    data = {
        "userid": follow.userid,
        "remark": follow.remark,
        "description": follow.description,
        "createtime": follow.createtime,
        "add_way": follow.add_way,
        "oper_userid": follow.oper_userid,
    }
    if follow.state:
        data["state"] = follow.state
    if tags_as_ids:
        data["tag_id"] = list(follow.tag_ids)
    else:
        data["tags"] = [{"tag_id": t, "type": 1} for t in follow.tag_ids]
    return data


def externalcontact_get(corp: SandboxCorp, query: dict[str, str], body: Answer) -> Answer:
    external_userid = query.get("external_userid", "")
    if not external_userid:
        raise ApiError(41035, "external_userid missing")
    customer = SandboxCustomer.objects.filter(corp=corp, external_userid=external_userid).first()
    if customer is None:
        raise ApiError(40096, "invalid external userid")
    follows = list(customer.follows.filter(deleted=False).order_by("createtime", "id"))
    if not follows:
        raise ApiError(84061, "not external contact")
    return ok(
        external_contact=_contact_json(customer),
        follow_user=[_follow_json(f, tags_as_ids=False) for f in follows],
    )


def batch_get_by_user(corp: SandboxCorp, query: dict[str, str], body: Answer) -> Answer:
    userids = body.get("userid_list") or []
    if not isinstance(userids, list) or not userids or len(userids) > 100:
        raise ApiError(40058, "userid_list must hold 1..100 userids")
    limit = _limit(body, 50, 100)
    after = _decode_cursor(body.get("cursor") or "")
    follows = list(
        SandboxFollow.objects.select_related("customer")
        .filter(customer__corp=corp, userid__in=userids, deleted=False, id__gt=after)
        .order_by("id")[: limit + 1]
    )
    page, more = follows[:limit], len(follows) > limit
    return ok(
        external_contact_list=[
            {
                "external_contact": _contact_json(f.customer),
                "follow_info": _follow_json(f, tags_as_ids=True),
            }
            for f in page
        ],
        next_cursor=_encode_cursor(page[-1].id) if more else "",
    )


def get_follow_user_list(corp: SandboxCorp, query: dict[str, str], body: Answer) -> Answer:
    members = corp.members.filter(customer_contact_enabled=True).order_by("userid")
    return ok(follow_user=list(members.values_list("userid", flat=True)))


# -- contact ways ------------------------------------------------------------------------------


def _check_users(corp: SandboxCorp, users: list[str]) -> None:
    members = {m.userid: m for m in corp.members.filter(userid__in=users)}
    for userid in users:
        member = members.get(userid)
        if member is None:
            raise ApiError(40003, f"invalid userid: {userid}")
        if not member.activated:
            raise ApiError(41054, f"user not activated: {userid}")
        if not member.customer_contact_enabled:
            raise ApiError(84074, f"no external contact permission: {userid}")


def _contact_way_fields(corp: SandboxCorp, body: Answer, *, creating: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if creating:
        if "type" not in body:
            raise ApiError(41037, "type missing")
        if "scene" not in body:
            raise ApiError(41038, "scene missing")
        if body["type"] not in (1, 2):
            raise ApiError(41039, "invalid type")
        if body["scene"] not in (1, 2):
            raise ApiError(41040, "invalid scene")
        fields.update(type=body["type"], scene=body["scene"])
    if "state" in body:
        state = str(body["state"] or "")
        if len(state) > 30:
            raise ApiError(40058, "state exceeds 30 characters")
        fields["state"] = state
    if "remark" in body:
        if len(str(body["remark"] or "")) > 30:
            raise ApiError(40058, "remark exceeds 30 characters")
        fields["remark"] = str(body["remark"] or "")
    for flag in ("skip_verify", "is_exclusive"):
        if flag in body:
            fields[flag] = bool(body[flag])
    if "style" in body:
        fields["style"] = body["style"]
    if "user" in body:
        fields["users"] = list(dict.fromkeys(body["user"] or []))
    if "party" in body:
        fields["party"] = list(body["party"] or [])
    return fields


def add_contact_way(corp: SandboxCorp, query: dict[str, str], body: Answer) -> Answer:
    fields = _contact_way_fields(corp, body, creating=True)
    fields.setdefault("skip_verify", True)
    users = fields.get("users", [])
    if fields["type"] == 1 and len(users) != 1:
        raise ApiError(40058, "type 1 needs exactly one user")
    if len(users) + len(fields.get("party", [])) > MAX_CONTACT_WAY_USERS:
        raise ApiError(41041, "too many users")
    if not users and not fields.get("party"):
        raise ApiError(40058, "user or party required")
    _check_users(corp, users)
    config_id = secrets.token_hex(16)
    # Served by the sandbox itself (views.qr_image), so demo pages show a real image.
    qr_code = f"{settings.WECOM_SANDBOX_PUBLIC_URL.rstrip('/')}/wecom-sandbox/qr/{config_id}.png"
    SandboxContactWay.objects.create(
        corp=corp, config_id=config_id, qr_code=qr_code, created_at=int(time.time()), **fields
    )
    answer = ok(config_id=config_id)
    if fields["scene"] == 2:
        answer["qr_code"] = qr_code
    return answer


def _contact_way(corp: SandboxCorp, body: Answer) -> SandboxContactWay:
    if not body.get("config_id"):
        raise ApiError(41043, "config_id missing")
    way = SandboxContactWay.objects.filter(corp=corp, config_id=body["config_id"]).first()
    if way is None:
        raise ApiError(41044, "invalid config_id")
    return way


def get_contact_way(corp: SandboxCorp, query: dict[str, str], body: Answer) -> Answer:
    way = _contact_way(corp, body)
    return ok(
        contact_way={
            "config_id": way.config_id,
            "type": way.type,
            "scene": way.scene,
            "style": way.style,
            "remark": way.remark,
            "skip_verify": way.skip_verify,
            "state": way.state,
            "qr_code": way.qr_code if way.scene == 2 else "",
            "user": way.users,
            "party": way.party,
            "is_temp": False,
            "is_exclusive": way.is_exclusive,
        }
    )


def update_contact_way(corp: SandboxCorp, query: dict[str, str], body: Answer) -> Answer:
    way = _contact_way(corp, body)
    fields = _contact_way_fields(corp, body, creating=False)
    users = fields.get("users", way.users)
    if way.type == 1 and len(users) != 1:
        raise ApiError(40058, "type 1 needs exactly one user")
    if len(users) + len(fields.get("party", way.party)) > MAX_CONTACT_WAY_USERS:
        raise ApiError(41041, "too many users")
    _check_users(corp, users)
    for name, value in fields.items():
        setattr(way, name, value)
    way.save()
    return ok()


def del_contact_way(corp: SandboxCorp, query: dict[str, str], body: Answer) -> Answer:
    _contact_way(corp, body).delete()
    return ok()


def list_contact_way(corp: SandboxCorp, query: dict[str, str], body: Answer) -> Answer:
    limit = _limit(body, 100, 1000)
    now = int(time.time())
    start = int(body.get("start_time") or now - 90 * 86400)
    end = int(body.get("end_time") or now)
    after = _decode_cursor(body.get("cursor") or "")
    ways = list(
        corp.contact_ways.filter(created_at__gte=start, created_at__lte=end, id__gt=after)
        .order_by("id")
        .values("id", "config_id")[: limit + 1]
    )
    page, more = ways[:limit], len(ways) > limit
    return ok(
        contact_way=[{"config_id": w["config_id"]} for w in page],
        next_cursor=_encode_cursor(page[-1]["id"]) if more else "",
    )


# -- tags --------------------------------------------------------------------------------------


def get_corp_tag_list(corp: SandboxCorp, query: dict[str, str], body: Answer) -> Answer:
    groups = corp.tag_groups.prefetch_related("tags").order_by("-order", "id")
    if body.get("group_id"):
        groups = groups.filter(group_id__in=body["group_id"])
    wanted = set(body.get("tag_id") or []) if not body.get("group_id") else set()
    result = []
    for group in groups:
        tags = [
            {"id": t.tag_id, "name": t.name, "create_time": t.create_time, "order": t.order}
            for t in group.tags.all()
            if not wanted or t.tag_id in wanted
        ]
        if tags:
            result.append(
                {
                    "group_id": group.group_id,
                    "group_name": group.name,
                    "create_time": group.create_time,
                    "order": group.order,
                    "tag": tags,
                }
            )
    return ok(tag_group=result)


def add_corp_tag(corp: SandboxCorp, query: dict[str, str], body: Answer) -> Answer:
    tags = body.get("tag") or []
    if not tags:
        raise ApiError(40058, "tag missing")
    now = int(time.time())
    if body.get("group_id"):
        group = corp.tag_groups.filter(group_id=body["group_id"]).first()
        if group is None:
            raise ApiError(40068, "invalid tag group id")
    else:
        name = str(body.get("group_name") or "")
        if not name or len(name) > 30:
            raise ApiError(40072, "invalid group name")
        group = corp.tag_groups.filter(name=name).first() or SandboxTagGroup.objects.create(
            corp=corp,
            group_id="et" + secrets.token_hex(8),
            name=name,
            order=int(body.get("order") or 0),
            create_time=now,
        )
    created = []
    for item in tags:
        name = str(item.get("name") or "")
        if not name or len(name) > 30:
            raise ApiError(40072, "invalid tag name")
        tag = group.tags.filter(name=name).first() or SandboxTag.objects.create(
            group=group,
            tag_id="et" + secrets.token_hex(10),
            name=name,
            order=int(item.get("order") or 0),
            create_time=now,
        )
        created.append(
            {"id": tag.tag_id, "name": tag.name, "create_time": tag.create_time, "order": tag.order}
        )
    return ok(
        tag_group={
            "group_id": group.group_id,
            "group_name": group.name,
            "create_time": group.create_time,
            "order": group.order,
            "tag": created,
        }
    )


def edit_corp_tag(corp: SandboxCorp, query: dict[str, str], body: Answer) -> Answer:
    target = SandboxTag.objects.filter(group__corp=corp, tag_id=body.get("id")).first() or (
        corp.tag_groups.filter(group_id=body.get("id")).first()
    )
    if target is None:
        raise ApiError(40068, "invalid tag id")
    if "name" in body:
        target.name = str(body["name"])[:30]
    if "order" in body:
        target.order = int(body["order"])
    target.save()
    return ok()


def del_corp_tag(corp: SandboxCorp, query: dict[str, str], body: Answer) -> Answer:
    tag_ids, group_ids = body.get("tag_id") or [], body.get("group_id") or []
    if not tag_ids and not group_ids:
        raise ApiError(40058, "tag_id or group_id required")
    SandboxTag.objects.filter(group__corp=corp, tag_id__in=tag_ids).delete()
    corp.tag_groups.filter(group_id__in=group_ids).delete()
    corp.tag_groups.filter(tags__isnull=True).delete()  # WeCom drops emptied groups
    return ok()


def mark_tag(corp: SandboxCorp, query: dict[str, str], body: Answer) -> Answer:
    add, remove = body.get("add_tag") or [], body.get("remove_tag") or []
    if not add and not remove:
        raise ApiError(40058, "add_tag or remove_tag required")
    # Locked (dispatch's transaction): WeCom applies each mark_tag whole, so two at once for
    # one customer (a rule's tag and a surge's) must not lose one of them.
    follow = (
        SandboxFollow.objects.select_for_update(of=("self",))
        .filter(
            customer__corp=corp,
            customer__external_userid=body.get("external_userid"),
            userid=body.get("userid"),
            deleted=False,
        )
        .first()
    )
    if follow is None:
        raise ApiError(84061, "not external contact")
    known = set(
        SandboxTag.objects.filter(group__corp=corp, tag_id__in=add + remove).values_list(
            "tag_id", flat=True
        )
    )
    if set(add + remove) - known:
        raise ApiError(40068, "invalid tag id")
    follow.tag_ids = [t for t in dict.fromkeys(follow.tag_ids + add) if t not in remove]
    follow.save(update_fields=["tag_ids"])
    return ok()


# -- welcome, statistics -----------------------------------------------------------------------


def send_welcome_msg(corp: SandboxCorp, query: dict[str, str], body: Answer) -> Answer:
    if not body.get("welcome_code"):
        raise ApiError(41049, "welcome_code missing")
    if len(body.get("attachments") or []) > 9:
        raise ApiError(41064, "too many attachments")
    now = timezone.now()
    code = SandboxWelcomeCode.objects.filter(corp=corp, code=body["welcome_code"]).first()
    if code is None or now - code.issued_at > timedelta(seconds=WELCOME_CODE_LIFETIME):
        raise ApiError(41050, "invalid welcome_code")
    used = SandboxWelcomeCode.objects.filter(pk=code.pk, used_at__isnull=True).update(
        used_at=now, message={k: v for k, v in body.items() if k != "welcome_code"}
    )
    if not used:
        raise ApiError(41051, "externaluser has started chatting")
    return ok()


def get_user_behavior_data(corp: SandboxCorp, query: dict[str, str], body: Answer) -> Answer:
    userids = body.get("userid") or []
    if not userids and not body.get("partyid"):
        raise ApiError(40058, "userid or partyid required")
    try:
        start, end = int(body["start_time"]), int(body["end_time"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ApiError(600018, "invalid start endtime") from exc
    if end < start or end - start > 30 * 86400 or start > 10**10:
        raise ApiError(600018, "invalid start endtime")
    first_day = datetime.fromtimestamp(start, CST).replace(hour=0, minute=0, second=0)
    last_day = datetime.fromtimestamp(end, CST).replace(hour=0, minute=0, second=0)
    follows = SandboxFollow.objects.filter(
        customer__corp=corp,
        userid__in=userids,
        createtime__gte=int(first_day.timestamp()),
        createtime__lt=int((last_day + timedelta(days=1)).timestamp()),
    )
    per_day: dict[int, int] = {}
    for createtime in follows.values_list("createtime", flat=True):
        day = datetime.fromtimestamp(createtime, CST).replace(hour=0, minute=0, second=0)
        per_day[int(day.timestamp())] = per_day.get(int(day.timestamp()), 0) + 1
    data, day = [], first_day
    while day <= last_day:
        stamp = int(day.timestamp())
        data.append(
            {
                "stat_time": stamp,
                "chat_cnt": 0,
                "message_cnt": 0,
                "negative_feedback_cnt": 0,
                "new_apply_cnt": 0,
                "new_contact_cnt": per_day.get(stamp, 0),
            }
        )
        day = (day + timedelta(days=1)).astimezone(CST)
    return ok(behavior_data=data)


Handler = Callable[[SandboxCorp, dict[str, str], Answer], Answer]

ENDPOINTS: dict[tuple[str, str], Handler] = {
    ("GET", "externalcontact/get"): externalcontact_get,
    ("POST", "externalcontact/batch/get_by_user"): batch_get_by_user,
    ("GET", "externalcontact/get_follow_user_list"): get_follow_user_list,
    ("POST", "externalcontact/add_contact_way"): add_contact_way,
    ("POST", "externalcontact/get_contact_way"): get_contact_way,
    ("POST", "externalcontact/update_contact_way"): update_contact_way,
    ("POST", "externalcontact/del_contact_way"): del_contact_way,
    ("POST", "externalcontact/list_contact_way"): list_contact_way,
    ("POST", "externalcontact/get_corp_tag_list"): get_corp_tag_list,
    ("POST", "externalcontact/add_corp_tag"): add_corp_tag,
    ("POST", "externalcontact/edit_corp_tag"): edit_corp_tag,
    ("POST", "externalcontact/del_corp_tag"): del_corp_tag,
    ("POST", "externalcontact/mark_tag"): mark_tag,
    ("POST", "externalcontact/send_welcome_msg"): send_welcome_msg,
    ("POST", "externalcontact/get_user_behavior_data"): get_user_behavior_data,
}


# The group endpoints live in their own module; it imports this one, so it is loaded here,
# after everything it needs is defined.
from scrm.wecom.sandbox import api_groups  # noqa: E402

ENDPOINTS.update(api_groups.ENDPOINTS)


def _injected_fault(path: str) -> Answer | None:
    """Tests and demos can make the next calls of an endpoint fail with a given errcode."""
    fault = SandboxFault.objects.filter(endpoint=path, remaining__gt=0).order_by("id").first()
    if fault is None:
        return None
    SandboxFault.objects.filter(pk=fault.pk).update(remaining=F("remaining") - 1)
    return {"errcode": fault.errcode, "errmsg": fault.errmsg or "sandbox fault"}


def dispatch(method: str, path: str, query: dict[str, str], body: Answer) -> tuple[int, Answer]:
    """Answer one API request as (HTTP status, JSON). WeCom answers HTTP 200 with an errcode."""
    path = path.strip("/")
    try:
        # A savepoint: a failing sandbox call must not break the caller's transaction.
        with transaction.atomic():
            fault = _injected_fault(path)
            if fault is not None:
                if fault["errcode"] >= 500 and fault["errcode"] < 600:
                    return fault["errcode"], {}
                return 200, fault
            if path == "gettoken" and method == "GET":
                return 200, gettoken(query, body)
            handler = ENDPOINTS.get((method, path))
            if handler is None:
                known = any(p == path for _, p in ENDPOINTS)
                return 200, {
                    "errcode": 40058 if known else 404,
                    "errmsg": "method not allowed" if known else "api not found",
                }
            corp = authenticate(query)
            return 200, handler(corp, query, body)
    except ApiError as exc:
        return 200, {"errcode": exc.errcode, "errmsg": exc.errmsg}
