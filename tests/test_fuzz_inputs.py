"""Fuzz: no input gets a 5xx from the three doors strangers knock on. A seeded loop (the same
cases on every run, so a failure reproduces) of 3,000 requests, each a valid request with one
to three parts made hostile:

- the WeCom callback (1,300): unsigned (any corp id, query and body) and signed with the
  corp's key (timestamps, bodies in other encodings, inner XML with hostile, list-valued,
  over-long or missing fields and CreateTimes);
- the landing page (850): slugs, utm_*/store/r and unknown parameters, User-Agent, Referer,
  X-Forwarded-For and REMOTE_ADDR, with the rate limits on;
- the conversions API (850): JSON bodies (hostile values, shapes, nesting, numbers) and a few
  that are not JSON;
- the API's other writes (600): channels, channel costs, live codes (created and changed, welcome
  attachments and tags included) and referral codes, each a valid body with hostile values.

Meaningful on PostgreSQL above all (NUL, lone surrogates and out-of-range values fail there
and not on SQLite); CI runs the suite on both. FUZZ_SEED=<n> explores other cases.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from urllib.parse import quote, urlencode

import pytest
from rest_framework.authtoken.models import Token

from channels_app.models import LiveCode
from channels_app.services.publishing import live_code_publish
from scrm.wecom.crypto import MessageCrypto
from scrm.wecom.models import Corp
from tests.channels.conftest import channel, make_code, staff  # noqa: F401 (the same fixtures)
from tests.tenancy import member

pytestmark = pytest.mark.django_db

SEED = int(os.environ.get("FUZZ_SEED", "20261206"))
CASES = {
    "callback_unsigned": 400,
    "callback_signed": 900,
    "landing": 850,
    "conversions": 850,
    "api_writes": 600,
}
NONCE = "1320562132"

HOSTILE_TEXT = [
    "", " ", "\x00", "a\x00b", "%00", "\t\r\n", "9" * 400, "9" * 5000, "-1", "0", "1e9", "0x1F",
    "+1700000000", "1_700_000_000", "١٧٠٠٠٠٠٠٠٠", "99999999999999999999", "NaN", "Infinity",
    "null", "true", "[]", "{}", "<xml/>", "]]>", "<![CDATA[", "&amp;", "&#0;", "&lt;x&gt;",
    "' OR '1'='1", "../../etc/passwd", "\u202e\u2066", "\ufeff", "\ufffd", "😀" * 40,
    "小" * 300, "Ａ" * 65, "x" * 64, "x" * 65, "x" * 2000, "\ud800", "a\udfffb", "\x7f\x1b[2J",
]  # fmt: skip
ROBOT_UAS = ["", "curl/8.5.0", "Googlebot/2.1", "WhatsApp/2.23", "HeadlessChrome/131"]
PHONE_UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) MicroMessenger/8.0.40"


def _text(rng: random.Random) -> str:
    if rng.random() < 0.15:  # random code points, NUL and surrogates included
        return "".join(chr(rng.choice([0, rng.randrange(1, 0x110000)])) for _ in
                       range(rng.randrange(1, 12)))  # fmt: skip
    return rng.choice(HOSTILE_TEXT)


def _url_text(rng: random.Random) -> str:
    """Hostile text that a URL can carry (UTF-8: no lone surrogates)."""
    value = _text(rng)
    return value.encode("utf-8", "replace").decode("utf-8")


def _header(rng: random.Random) -> str:
    """Hostile text as a WSGI server hands a header over: its bytes read as latin-1."""
    return _text(rng).encode("utf-8", "replace").decode("latin-1")


def _json_value(rng: random.Random, depth: int = 0) -> object:
    roll = rng.random()
    if roll < 0.45 or depth > 3:
        return rng.choice([_text(rng), rng.randrange(-(10**30), 10**30), rng.random() * 1e308,
                           -0.0, 10**4000, True, False, None, "199.00", "-0.001"])  # fmt: skip
    if roll < 0.7:
        return [_json_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    return {_text(rng): _json_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))}


def _deep(rng: random.Random) -> str:
    depth = rng.choice([900, 5_000, 10_000, 50_000])
    opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
    return opener * depth + ("1" if opener != "[" else "") + closer * depth


# -- the doors -----------------------------------------------------------------------------------


def _callback_unsigned(rng: random.Random, corp: Corp) -> tuple[str, dict]:
    corp_id = corp.corp_id if rng.random() < 0.6 else _url_text(rng)
    query = {name: _url_text(rng) if rng.random() < 0.5 else str(int(time.time()))
             for name in ("msg_signature", "timestamp", "nonce", "echostr")
             if rng.random() < 0.8}  # fmt: skip
    url = f"/wecom/callback/{quote(corp_id, safe='')}/?{urlencode(query)}"
    if rng.random() < 0.3:
        return "get", {"path": url}
    body = rng.choice([
        _text(rng).encode("utf-8", "surrogatepass"),
        rng.randbytes(rng.randrange(0, 300)),
        f"<xml><Encrypt><![CDATA[{_url_text(rng)}]]></Encrypt></xml>".encode(),
        b"<xml>" + b"<a>" * 5000 + b"</a>" * 5000 + b"</xml>",
        b"<xml><Encrypt><Item>a</Item></Encrypt></xml>",
    ])  # fmt: skip
    return "post", {"path": url, "data": body, "content_type": "text/xml"}


EVENT_FIELDS = ["Event", "ChangeType", "UserID", "ExternalUserID", "ChatId", "State",
                "WelcomeCode", "Source", "FailReason", "UpdateDetail", "TagType", "Id",
                "MemChangeList", "CreateTime", "Unknown"]  # fmt: skip


def _inner_xml(rng: random.Random, corp: Corp) -> bytes:
    fields: dict[str, object] = {
        "ToUserName": corp.corp_id, "FromUserName": "sys",
        "CreateTime": str(int(time.time()) - rng.randrange(0, 100_000)), "MsgType": "event",
        "Event": rng.choice(["change_external_contact", "change_external_chat",
                             "change_external_tag"]),
        "ChangeType": rng.choice(["add_external_contact", "del_follow_user", "update",
                                  "edit_external_contact", "delete", "add_half_external_contact"]),
        "UserID": "staff01", "ExternalUserID": f"wm{rng.getrandbits(64):x}",
    }  # fmt: skip
    for _ in range(rng.randrange(1, 4)):
        name = rng.choice(EVENT_FIELDS)
        roll = rng.random()
        if roll < 0.15:
            fields.pop(name, None)
        elif roll < 0.35:
            fields[name] = [_url_text(rng) for _ in range(rng.randrange(0, 3))]
        elif roll < 0.5 and name == "CreateTime":
            fields[name] = rng.choice(["0", "1451606399", str(10**17), "-5", "", "1e9",
                                       str(int(time.time()) + 10**6)])  # fmt: skip
        else:
            fields[name] = _url_text(rng)
    parts = []
    for name, value in fields.items():
        if isinstance(value, list):
            items = "".join(f"<Item><![CDATA[{v}]]></Item>" for v in value)
            parts.append(f"<{name}>{items}</{name}>")
        else:
            parts.append(f"<{name}><![CDATA[{value}]]></{name}>")
    xml = "<xml>" + "".join(parts) + "</xml>"
    if rng.random() < 0.05:
        xml = "<xml>" + "<a>" * 3000 + "</a>" * 3000 + "</xml>"
    return xml.encode("utf-8", "surrogatepass")


def _callback_signed(rng: random.Random, corp: Corp, crypto: MessageCrypto) -> tuple[str, dict]:
    timestamp = str(int(time.time()))
    if rng.random() < 0.1:
        timestamp = _url_text(rng)
    encrypt = crypto.encrypt(_inner_xml(rng, corp))
    if rng.random() < 0.1:
        query = {"msg_signature": crypto.sign(timestamp, NONCE, encrypt), "timestamp": timestamp,
                 "nonce": NONCE, "echostr": encrypt}  # fmt: skip
        return "get", {"path": f"/wecom/callback/{corp.corp_id}/?{urlencode(query)}"}
    envelope = (f"<xml><ToUserName><![CDATA[{corp.corp_id}]]></ToUserName>"
                f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>")  # fmt: skip
    encoding = rng.choice(["utf-8"] * 6 + ["utf-16", "utf-16-le", "utf-32", "latin-1"])
    if encoding != "utf-8":
        envelope = f'<?xml version="1.0" encoding="{encoding}"?>' + envelope
    query = {"msg_signature": crypto.sign(timestamp, NONCE, encrypt), "timestamp": timestamp,
             "nonce": NONCE}  # fmt: skip
    return "post", {"path": f"/wecom/callback/{corp.corp_id}/?{urlencode(query)}",
                    "data": envelope.encode(encoding), "content_type": "text/xml"}  # fmt: skip


def _landing(rng: random.Random, slugs: list[str]) -> tuple[str, dict]:
    slug = rng.choice(slugs) if rng.random() < 0.85 else _url_text(rng)
    params = {name: _url_text(rng) for name in ("utm_source", "utm_medium", "utm_campaign",
                                                 "utm_content", "utm_term", "store", "r")
              if rng.random() < 0.3}  # fmt: skip
    if rng.random() < 0.2:
        params[_url_text(rng)] = _url_text(rng)
    extra = {
        "HTTP_USER_AGENT": rng.choice([PHONE_UA, f"{PHONE_UA} d/{rng.randrange(50)}",
                                       *ROBOT_UAS, _header(rng)]),
        "REMOTE_ADDR": rng.choice(["10.0.0.1", f"10.0.{rng.randrange(3)}.{rng.randrange(9)}",
                                   "", "::1", _header(rng)]),
    }  # fmt: skip
    if rng.random() < 0.4:
        extra["HTTP_REFERER"] = _header(rng)
    if rng.random() < 0.3:
        extra["HTTP_X_FORWARDED_FOR"] = _header(rng)
    if rng.random() < 0.2:
        extra["HTTP_ACCEPT_LANGUAGE"] = _header(rng)
    path = f"/l/{quote(slug, safe='')}/"
    if params:
        path += "?" + urlencode(params)
    return "get", {"path": path, **extra}


def _conversions(rng: random.Random, corp: Corp) -> tuple[str, dict]:
    url = "/api/v1/conversions/"
    roll = rng.random()
    if roll < 0.05:
        return "post", {"path": url, "data": _deep(rng), "content_type": "application/json"}
    if roll < 0.1:
        body = rng.choice([rng.randbytes(rng.randrange(0, 200)), b"[1,", b'["\\ud800"]',
                           b"[" + b"9" * 5000 + b"]", b"NaN", b'[{"a":1e999}]'])  # fmt: skip
        return "post", {"path": url, "data": body,
                        "content_type": rng.choice(["application/json", "text/plain"])}  # fmt: skip
    if roll < 0.15:
        name = rng.choice(["corp", "kind", "external_userid", "occurred_after", "day", "limit"])
        return "get", {"path": url + "?" + urlencode({name: _url_text(rng)})}
    rows = []
    for index in range(rng.randrange(1, 4)):
        row: dict = {
            "corp_id": corp.corp_id, "external_id": f"o-{rng.getrandbits(48):x}-{index}",
            "kind": rng.choice(["order", "refund", "consult", "custom"]),
            "custom_name": "试驾", "amount": "199.00", "currency": "CNY",
            "occurred_at": "2026-06-18T20:30:00+08:00",
            "external_userid": "wmCUSTOMER01", "unionid": "oUNION", "note": "n",
        }  # fmt: skip
        for _ in range(rng.randrange(1, 4)):
            name = rng.choice([*row, _text(rng)])
            if rng.random() < 0.15:
                row.pop(name, None)
            elif name == "occurred_at" and rng.random() < 0.5:
                row[name] = rng.choice(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",
                                        "2026-02-30T00:00:00", "2026-06-18T25:00", "2026-06-18",
                                        "2026-06-18T20:30:00+99:00"])  # fmt: skip
            else:
                row[name] = _json_value(rng)
        rows.append(row if rng.random() < 0.9 else _json_value(rng))
    body: object = rows if rng.random() < 0.9 else _json_value(rng)
    data = json.dumps(body, ensure_ascii=rng.random() < 0.5, allow_nan=True)
    return "post", {"path": url, "data": data.encode("utf-8", "surrogatepass"),
                    "content_type": "application/json"}  # fmt: skip


def _api_write(rng: random.Random, corp: Corp, channel_id: int, code_id: int, staff_userid: str
               ) -> tuple[str, dict]:  # fmt: skip
    """A valid write with one to three values made hostile (or a key of its own)."""
    suffix = f"{rng.getrandbits(32):x}"
    writes = [
        ("post", "/api/v1/channels/", {"corp": corp.corp_id, "name": f"渠道{suffix}",
                                      "code": f"c{suffix}", "channel_type": "ads"}),
        ("post", "/api/v1/channel-costs/", {"corp": corp.corp_id, "channel": channel_id,
                                           "start_date": "2026-06-01", "end_date": "2026-06-30",
                                           "amount": "1000.00", "currency": "CNY"}),
        ("post", "/api/v1/live-codes/", {
            "corp": corp.corp_id, "channel": channel_id, "name": f"码{suffix}", "slug": suffix,
            "mode": "landing", "welcome_text": "您好", "tag_ids": ["et1"],
            "welcome_attachments": [{"msgtype": "link", "link": {"title": "t",
                                                                 "url": "https://a.example"}}],
            "pool": [{"staff": staff_userid, "weight": 1}]}),
        ("patch", f"/api/v1/live-codes/{code_id}/", {
            "welcome_text": "您好", "tag_ids": ["et1"], "welcome_attachments": [
                {"msgtype": "image", "image": {"media_id": "MEDIA"}}]}),
        ("post", "/api/v1/referral-codes/", {"corp": corp.corp_id, "live_code": code_id,
                                            "referrer": f"r{suffix}", "referrer_name": "老客"}),
    ]  # fmt: skip
    method, url, body = rng.choice(writes)
    data: object = dict(body)
    if rng.random() < 0.3:  # JSON stored as it comes: WeCom's attachment shape, hostile inside
        kind, key = rng.choice([("link", "title"), ("link", "url"), ("image", "media_id"),
                                ("file", "media_id"), (_text(rng), _text(rng))])  # fmt: skip
        inner = {key: _json_value(rng), "url": "https://a.b", "title": "t"}
        if rng.random() < 0.3:
            inner[_text(rng)] = "x"
        method, url = "patch", f"/api/v1/live-codes/{code_id}/"
        data = {"welcome_attachments": [{"msgtype": kind, kind: inner}]}
    for _ in range(rng.randrange(1, 4) if rng.random() < 0.7 else 0):
        name = rng.choice([*body, _text(rng)])
        if name in ("welcome_attachments", "tag_ids", "pool") and rng.random() < 0.5:
            data[name] = [_json_value(rng, depth=2) for _ in range(rng.randrange(0, 3))]
        else:
            data[name] = _json_value(rng)
    if rng.random() < 0.05:
        data = _json_value(rng)
    text = json.dumps(data, ensure_ascii=rng.random() < 0.5, allow_nan=True)
    return method, {"path": url, "data": text.encode("utf-8", "surrogatepass"),
                    "content_type": "application/json"}  # fmt: skip


# -- the test ------------------------------------------------------------------------------------


def test_no_input_gets_a_5xx(
    corp,
    sandbox_corp,
    crypto,
    client,
    make_code,  # noqa: F811 (the fixture imported above)
    django_user_model,
    settings,
):
    settings.LANDING_RATE_LIMIT_PER_IP = 3  # the 429 path is part of what is fuzzed
    settings.LANDING_RATE_LIMIT_PER_CODE = 200
    settings.TRUST_X_FORWARDED_FOR = True  # the hostile X-Forwarded-For is the visitor's IP
    client.raise_request_exception = False
    landing = live_code_publish(live_code=make_code(caps=(30, 30, None)))
    native = live_code_publish(live_code=make_code(mode="native"))
    paused = make_code(status=LiveCode.Status.PAUSED)
    slugs = [landing.slug, native.slug, paused.slug, "nope"]
    sender = member(django_user_model.objects.create_user(username="shop-sync"), corp)
    token = f"Token {Token.objects.create(user=sender).key}"
    pool_userid = landing.pool.first().staff.userid

    doors: dict[str, Callable[[random.Random], tuple[str, dict]]] = {
        "callback_unsigned": lambda rng: _callback_unsigned(rng, corp),
        "callback_signed": lambda rng: _callback_signed(rng, corp, crypto),
        "landing": lambda rng: _landing(rng, slugs),
        "conversions": lambda rng: _conversions(rng, corp),
        "api_writes": lambda rng: _api_write(rng, corp, landing.channel_id, native.pk,
                                             pool_userid),
    }  # fmt: skip
    statuses: Counter = Counter()
    failures = []
    started = time.monotonic()
    for door, count in CASES.items():
        for index in range(count):
            rng = random.Random(f"{SEED}:{door}:{index}")
            method, request = doors[door](rng)
            if door in ("conversions", "api_writes"):  # an operator's token
                request["HTTP_AUTHORIZATION"] = token
            response = getattr(client, method)(**request)
            statuses[(door, response.status_code)] += 1
            if response.status_code >= 500:
                shown = {k: v[:200] if isinstance(v, bytes) else v for k, v in request.items()}
                failures.append((door, index, method, shown))
    elapsed = time.monotonic() - started
    assert not failures, f"{len(failures)} 5xx (FUZZ_SEED={SEED}); first: {failures[:3]!r}"
    assert sum(statuses.values()) == sum(CASES.values()) >= 3000
    # The fuzz reached past the guards too, or it proves little: some of every door succeeded.
    for door, ok in (("callback_signed", 200), ("landing", 200), ("landing", 429),
                     ("conversions", 201), ("conversions", 400), ("api_writes", 400)):  # fmt: skip
        assert statuses[(door, ok)] > 0, (door, ok, sorted(statuses.items()))
    print(f"fuzz: {sum(statuses.values())} requests in {elapsed:.1f} s", sorted(statuses.items()))
