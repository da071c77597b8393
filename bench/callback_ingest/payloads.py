"""Encrypted add events, built the way WeCom sends them, as ready-to-send HTTP requests.

Every event has its own ExternalUserID, so the inbox's dedup key never folds two of them into one
row. Timestamps are taken at build time: build just before each round, since the callback refuses
anything more than 10 minutes off.
"""

from __future__ import annotations

import secrets
import time
from urllib.parse import urlencode

from scrm.wecom.crypto import MessageCrypto

ADD_EVENT = (
    "<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName>"
    "<FromUserName><![CDATA[sys]]></FromUserName><CreateTime>{create_time}</CreateTime>"
    "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_external_contact]]></Event>"
    "<ChangeType><![CDATA[add_external_contact]]></ChangeType>"
    "<UserID><![CDATA[{user_id}]]></UserID>"
    "<ExternalUserID><![CDATA[{external_user_id}]]></ExternalUserID>"
    "<State><![CDATA[{state}]]></State><WelcomeCode><![CDATA[{welcome_code}]]></WelcomeCode></xml>"
)


def http_request(*, method: str, path: str, host: str, body: bytes, content_type: str) -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def add_event_requests(
    *,
    corp_id: str,
    token: str,
    aes_key: str,
    host: str,
    count: int,
    run_tag: str,
    first_index: int = 0,
    staff: int = 20,
) -> list[bytes]:
    """`count` distinct encrypted add events for `corp_id`, as raw POSTs to its callback URL."""
    crypto = MessageCrypto(token, aes_key, receive_id=corp_id)
    timestamp = str(int(time.time()))
    path = f"/wecom/callback/{corp_id}/"
    requests = []
    for index in range(first_index, first_index + count):
        nonce = secrets.token_hex(8)
        message = ADD_EVENT.format(
            corp_id=corp_id,
            create_time=timestamp,
            user_id=f"staff{index % staff}",
            # Real ids are "wm" + ~30 characters; a run tag keeps repeated runs apart.
            external_user_id=f"wm{run_tag}{index:012d}",
            state=f"s{index % 7}",
            welcome_code=secrets.token_hex(16),
        ).encode()
        body, signature = crypto.envelope(message, timestamp=timestamp, nonce=nonce)
        query = urlencode({"msg_signature": signature, "timestamp": timestamp, "nonce": nonce})
        requests.append(
            http_request(
                method="POST",
                path=f"{path}?{query}",
                host=host,
                body=body.encode(),
                content_type="text/xml",
            )
        )
    return requests
