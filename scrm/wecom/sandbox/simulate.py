"""Simulated customers: the sandbox adds customers on its side and calls the app's callback URL
with real encrypted events, exactly as WeCom does (signature, timestamp, nonce, retries)."""

from __future__ import annotations

import base64
import os
import random
import re
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

import requests
from django.db import transaction
from django.utils import timezone

from scrm.wecom.crypto import MessageCrypto
from scrm.wecom.sandbox.models import (
    SandboxContactWay,
    SandboxCorp,
    SandboxCustomer,
    SandboxDelivery,
    SandboxFollow,
    SandboxGroupChat,
    SandboxGroupMember,
    SandboxJoinWay,
    SandboxMember,
    SandboxWelcomeCode,
)

# (url, query params, body) -> HTTP status, or None when the request itself failed.
Poster = Callable[[str, dict[str, str], str], int | None]
WECOM_RETRIES = 3  # WeCom retries an unanswered callback three more times
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰"
STAFF_NAMES = ["客服小美", "顾问阿杰", "店长老王", "助理小林", "专员晓雪", "客服阿东", "顾问Coco"]


@dataclass
class SimulationReport:
    customers: list[str] = field(default_factory=list)
    deliveries: int = 0
    answered_200: int = 0
    failed: int = 0
    scans: int = 0
    scans_without_add: int = 0
    scans_without_code: int = 0
    dropped: int = 0
    # Requests that reached no server (connection refused, timeout): the app is not there.
    unreachable: int = 0
    # Landing pages answered with another status than 200 (404: no such code, 410: paused or
    # not published, 503: no staff member available), by status.
    page_statuses: dict[int, int] = field(default_factory=dict)
    target: str = ""  # the callback URL the events were delivered to


def random_aes_key() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(43))


def new_external_userid() -> str:
    return "wm" + base64.b32encode(os.urandom(20)).decode().rstrip("=").lower()[:30]


def requests_poster(url: str, params: dict[str, str], body: str) -> int | None:
    try:
        response = requests.post(
            url,
            params=params,
            data=body.encode(),
            timeout=5,
            headers={"Content-Type": "text/xml; charset=utf-8"},
        )
    except requests.RequestException:
        return None
    return response.status_code


@transaction.atomic
def sandbox_corp_setup(
    *, corp_id: str, name: str, members: int = 5, callback_url: str = ""
) -> SandboxCorp:
    """Create (or return) a sandbox corp with members who have customer contact enabled."""
    corp, _created = SandboxCorp.objects.get_or_create(
        corp_id=corp_id,
        defaults={
            "name": name,
            "secret": secrets.token_urlsafe(32),
            "callback_token": secrets.token_hex(16),
            "encoding_aes_key": random_aes_key(),
            "callback_url": callback_url,
        },
    )
    for index in range(corp.members.count(), members):
        SandboxMember.objects.get_or_create(
            corp=corp,
            userid=f"staff{index + 1:02d}",
            defaults={"name": STAFF_NAMES[index % len(STAFF_NAMES)], "department": "销售部"},
        )
    return corp


def event_xml(
    corp_id: str,
    change_type: str,
    create_time: int,
    *,
    event: str = "change_external_contact",
    **fields: str | list[str],
) -> bytes:
    """A decrypted callback event as WeCom writes it; list values become <Item> elements."""
    parts = [
        f"<ToUserName><![CDATA[{corp_id}]]></ToUserName>",
        "<FromUserName><![CDATA[sys]]></FromUserName>",
        f"<CreateTime>{create_time}</CreateTime>",
        "<MsgType><![CDATA[event]]></MsgType>",
        f"<Event><![CDATA[{event}]]></Event>",
        f"<ChangeType><![CDATA[{change_type}]]></ChangeType>",
    ]
    for key, value in fields.items():
        if isinstance(value, list):
            items = "".join(f"<Item><![CDATA[{escape(v)}]]></Item>" for v in value)
            parts.append(f"<{key}>{items}</{key}>")
        else:
            parts.append(f"<{key}><![CDATA[{escape(value)}]]></{key}>")
    return ("<xml>" + "".join(parts) + "</xml>").encode()


def callback_url_for(corp: SandboxCorp, url: str | None) -> str:
    if not url:
        return corp.callback_url or f"http://127.0.0.1:8000/wecom/callback/{corp.corp_id}/"
    if "/wecom/callback/" in url:
        return url
    return url.rstrip("/") + f"/wecom/callback/{corp.corp_id}/"


def deliver(
    corp: SandboxCorp,
    xml: bytes,
    url: str,
    *,
    poster: Poster = requests_poster,
    change_type: str = "",
    external_userid: str = "",
    create_time: int = 0,
) -> int | None:
    """POST one encrypted event; retried like WeCom until an HTTP 200 (at most 3 more times)."""
    crypto = MessageCrypto(corp.callback_token, corp.encoding_aes_key, corp.corp_id)
    status: int | None = None
    for _attempt in range(1 + WECOM_RETRIES):
        timestamp, nonce = str(int(time.time())), str(secrets.randbelow(10**10))
        body, signature = crypto.envelope(xml, timestamp=timestamp, nonce=nonce)
        params = {"msg_signature": signature, "timestamp": timestamp, "nonce": nonce}
        status = poster(url, params, body)
        SandboxDelivery.objects.create(
            corp=corp,
            change_type=change_type,
            external_userid=external_userid,
            create_time=create_time,
            http_status=status,
        )
        if status == 200:
            break
    return status


def customer_name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(["", *GIVEN])


def sandbox_customer_get_or_create(
    *, corp: SandboxCorp, external_userid: str, name: str, gender: int = 0, unionid: str = ""
) -> SandboxCustomer:
    """A customer WeCom knows, with the identity given (a demo's history replays its own)."""
    customer, _created = SandboxCustomer.objects.get_or_create(
        corp=corp,
        external_userid=external_userid,
        defaults={"name": name, "type": 1, "gender": gender, "unionid": unionid,
                  "avatar": f"https://wework.qpic.cn/sandbox/avatar/{external_userid[-12:]}/0"},
    )  # fmt: skip
    return customer


def sandbox_follow_add(
    *, customer: SandboxCustomer, userid: str, createtime: int, state: str = "", add_way: int = 1
) -> SandboxFollow:
    """The customer adds member `userid` at `createtime` (no callback, no welcome code: an add
    of the past). A relation WeCom holds already is returned as it is."""
    follow, _created = SandboxFollow.objects.get_or_create(
        customer=customer,
        userid=userid,
        defaults={"createtime": createtime, "add_way": add_way, "state": state,
                  "oper_userid": customer.external_userid},
    )  # fmt: skip
    return follow


def sandbox_follow_delete(*, corp: SandboxCorp, external_userid: str, userid: str) -> bool:
    """The relation ends on WeCom's side (either side deleted): externalcontact/get and
    batch/get_by_user no longer list it; its add stays in the statistics. False if unknown."""
    return bool(
        SandboxFollow.objects.filter(
            customer__corp=corp, customer__external_userid=external_userid, userid=userid
        ).update(deleted=True)
    )


def sandbox_customer_add(
    *,
    corp: SandboxCorp,
    userid: str,
    rng: random.Random,
    state: str = "",
    add_way: int = 1,
    create_time: int | None = None,
    oper_userid: str | None = None,
) -> tuple[SandboxCustomer, SandboxFollow, str]:
    """A new customer adds member `userid` on WeCom's side; returns its welcome code too.
    `oper_userid` is who initiated the add, as WeCom reports it: by default the customer (its
    external_userid); the member's own userid when the member added the customer; the sharer
    or admin for add_way 201/202."""
    customer = SandboxCustomer.objects.create(
        corp=corp,
        external_userid=new_external_userid(),
        name=customer_name(rng),
        type=1,
        gender=rng.choice([0, 1, 2]),
        unionid="o" + secrets.token_hex(13),
        avatar=f"https://wework.qpic.cn/sandbox/avatar/{secrets.token_hex(6)}/0",
    )
    follow = SandboxFollow.objects.create(
        customer=customer,
        userid=userid,
        createtime=create_time or int(time.time()),
        add_way=add_way,
        state=state,
        oper_userid=customer.external_userid if oper_userid is None else oper_userid,
    )
    code = secrets.token_urlsafe(24)
    SandboxWelcomeCode.objects.create(
        corp=corp,
        code=code,
        userid=userid,
        external_userid=customer.external_userid,
        issued_at=timezone.now(),
    )
    return customer, follow, code


QR_IMAGE_RE = re.compile(r"/wecom-sandbox/qr/([0-9a-f]+)\.png")
MOBILE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.49"
)


def _landing_base(corp: SandboxCorp, url: str | None) -> str:
    target = callback_url_for(corp, url)
    return target.split("/wecom/callback/", 1)[0]


def simulate_scans(
    *,
    corp_id: str,
    slug: str,
    scans: int,
    no_add: float = 0.0,
    rate: float = 0.0,
    url: str | None = None,
    seed: int | None = None,
    poster: Poster = requests_poster,
    progress: Callable[[int, int], None] | None = None,
    drop: float = 0.0,
) -> SimulationReport:
    """Visitors open the landing link /l/<slug>/ (each from its own IP and phone), read the
    contact way from the QR the page shows, and add that member; a fraction `no_add` scans
    and leaves. Each add is delivered as a callback, like simulate_adds; `drop` is the chance
    that an add's callback is lost (the customer exists only in WeCom, for calibration)."""
    corp = SandboxCorp.objects.get(corp_id=corp_id)
    rng = random.Random(seed)
    base = _landing_base(corp, url)
    target = callback_url_for(corp, url)
    report = SimulationReport(target=target)
    for index in range(1, scans + 1):
        utm = {"utm_source": "sandbox", "utm_campaign": f"sim{rng.randint(1, 3)}"}
        ip = f"198.18.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        try:
            page = requests.get(
                f"{base}/l/{slug}/", params=utm, timeout=10,
                # Each visitor its own phone: the app keeps one device's assignment.
                headers={"User-Agent": f"{MOBILE_UA} Build/{rng.getrandbits(40):x}",
                         "X-Forwarded-For": ip},
            )  # fmt: skip
        except requests.RequestException:
            report.unreachable += 1  # no page at all: not a page without a code
            continue
        report.scans += 1
        if page.status_code != 200:
            report.page_statuses[page.status_code] = (
                report.page_statuses.get(page.status_code, 0) + 1
            )
        match = QR_IMAGE_RE.search(page.text)
        way = (
            SandboxContactWay.objects.filter(corp=corp, config_id=match.group(1)).first()
            if (match)
            else None
        )
        if way is None or not way.users:
            report.scans_without_code += 1
            continue
        if rng.random() < no_add:
            report.scans_without_add += 1
            continue
        customer, follow, code = sandbox_customer_add(
            corp=corp, userid=way.users[0], rng=rng, state=way.state
        )
        report.customers.append(customer.external_userid)
        if rng.random() < drop:  # lost on the way
            report.dropped += 1
            continue
        xml = event_xml(corp.corp_id, "add_external_contact", follow.createtime,
                        UserID=follow.userid, ExternalUserID=customer.external_userid,
                        State=way.state, WelcomeCode=code)  # fmt: skip
        status = deliver(corp, xml, target, poster=poster, change_type="add_external_contact",
                         external_userid=customer.external_userid,
                         create_time=follow.createtime)  # fmt: skip
        report.deliveries += 1
        if status == 200:
            report.answered_200 += 1
        else:
            report.failed += 1
            report.unreachable += status is None
        if progress:
            progress(index, scans)
        if rate > 0:
            time.sleep(1.0 / rate)
    return report


def sandbox_group_chat_create(*, corp: SandboxCorp, name: str, owner: str) -> SandboxGroupChat:
    return SandboxGroupChat.objects.create(
        corp=corp, chat_id="wr" + secrets.token_hex(14), name=name, owner=owner,
        create_time=int(time.time()),
    )  # fmt: skip


def simulate_group_joins(
    *,
    corp_id: str,
    config_id: str,
    joins: int,
    url: str | None = None,
    poster: Poster = requests_poster,
) -> SimulationReport:
    """Customers scan a group chat code and join its first group; each join is delivered as a
    change_external_chat update/add_member callback (join scene 3: scanned the QR)."""
    corp = SandboxCorp.objects.get(corp_id=corp_id)
    way = SandboxJoinWay.objects.get(corp=corp, config_id=config_id)
    chat = SandboxGroupChat.objects.get(corp=corp, chat_id=way.chat_ids[0])
    target = callback_url_for(corp, url)
    report = SimulationReport()
    for _ in range(joins):
        member_id = new_external_userid()
        joined = int(time.time())
        SandboxGroupMember.objects.create(
            chat=chat, userid=member_id, type=2, join_time=joined, join_scene=3, state=way.state
        )
        report.customers.append(member_id)
        xml = event_xml(
            corp.corp_id, "update", joined, event="change_external_chat", ChatId=chat.chat_id,
            UpdateDetail="add_member", JoinScene="3", MemChangeCnt="1", MemChangeList=[member_id],
        )  # fmt: skip
        status = deliver(corp, xml, target, poster=poster, change_type="update",
                         external_userid=member_id, create_time=joined)  # fmt: skip
        report.deliveries += 1
        report.answered_200 += status == 200
        report.failed += status != 200
    return report


def simulate_adds(
    *,
    corp_id: str,
    adds: int,
    rate: float = 0.0,
    duplicates: float = 0.0,
    shuffle: bool = False,
    url: str | None = None,
    states: list[str] | None = None,
    seed: int | None = None,
    poster: Poster = requests_poster,
    progress: Callable[[int, int], None] | None = None,
    drop: float = 0.0,
) -> SimulationReport:
    """`adds` new customers add a random member; each add is delivered as a callback.

    `duplicates` is the chance that an event is delivered again (as WeCom's retries do),
    `shuffle` delivers in random order, `rate` caps deliveries per second (0: as fast as
    possible, so many adds share one CreateTime second, as in a real burst), `drop` is the
    chance that an add's callback is lost (the customer still exists in WeCom, for
    calibration to find).
    """
    corp = SandboxCorp.objects.get(corp_id=corp_id)
    members = list(
        corp.members.filter(customer_contact_enabled=True, activated=True).values_list(
            "userid", flat=True
        )
    )
    if not members:
        raise ValueError(f"sandbox corp {corp_id} has no member with customer contact enabled")
    rng = random.Random(seed)
    target = callback_url_for(corp, url)
    report = SimulationReport(target=target)
    queue: list[tuple[bytes, str, int, str]] = []
    for _ in range(adds):
        state = rng.choice(states) if states else ""
        add_way = 1 if state else rng.choice([1, 1, 1, 2, 3, 4, 6])
        customer, follow, code = sandbox_customer_add(
            corp=corp, userid=rng.choice(members), rng=rng, state=state, add_way=add_way
        )
        report.customers.append(customer.external_userid)
        fields = {"UserID": follow.userid, "ExternalUserID": customer.external_userid}
        if state:
            fields["State"] = state
        fields["WelcomeCode"] = code
        xml = event_xml(corp.corp_id, "add_external_contact", follow.createtime, **fields)
        if rng.random() < drop:  # lost on the way: the customer exists only in WeCom
            report.dropped += 1
            continue
        queue.append((xml, customer.external_userid, follow.createtime, code))
        while rng.random() < duplicates:
            queue.append((xml, customer.external_userid, follow.createtime, code))
            if len(queue) > adds * 4:
                break
    if shuffle:
        rng.shuffle(queue)
    issued: set[str] = set()
    for index, (xml, external_userid, create_time, code) in enumerate(queue, start=1):
        if code not in issued:
            # WeCom issues the welcome_code at the add, just before the callback: its 20 s
            # start now, not when this batch was prepared.
            SandboxWelcomeCode.objects.filter(code=code).update(issued_at=timezone.now())
            issued.add(code)
        status = deliver(
            corp,
            xml,
            target,
            poster=poster,
            change_type="add_external_contact",
            external_userid=external_userid,
            create_time=create_time,
        )
        report.deliveries += 1
        if status == 200:
            report.answered_200 += 1
        else:
            report.failed += 1
            report.unreachable += status is None
        if progress:
            progress(index, len(queue))
        if rate > 0:
            time.sleep(1.0 / rate)
    return report
