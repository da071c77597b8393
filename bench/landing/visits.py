"""Landing-page visits as ready-to-send HTTP/1.1 GET requests, each from a different visitor.

The landing service keeps a device's staff member for 30 minutes (device key = hashed IP + user
agent). Every request comes from 127.0.0.1, so each gets its own User-Agent (a counter and a run
tag appended to a WeChat-on-iPhone one): every visit is a new visitor and a new assignment, the
costly path and the one daily caps apply to.
"""

from __future__ import annotations

from urllib.parse import urlencode

USER_AGENT = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.49(0x18003130) NetType/WIFI "
    "Language/zh_CN bench/{tag}-{index:08d}"
)
CAMPAIGNS = ("618", "double11", "spring", "livestream", "poster")


def visit_request(*, path: str, host: str, tag: str, index: int) -> bytes:
    """One GET of `path` with utm parameters and a User-Agent unique to (tag, index)."""
    query = urlencode(
        {
            "utm_source": "pyq",
            "utm_medium": "qr",
            "utm_campaign": CAMPAIGNS[index % len(CAMPAIGNS)],
            "utm_content": f"ad{index % 12:02d}",
        }
    )
    head = (
        f"GET {path}?{query} HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        f"User-Agent: {USER_AGENT.format(tag=tag, index=index)}\r\n"
        "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
        "Accept-Language: zh-CN,zh-Hans;q=0.9\r\n"
        "Accept-Encoding: identity\r\n"
        "\r\n"
    )
    return head.encode()


def visit_requests(*, path: str, host: str, tag: str, first_index: int, count: int) -> list[bytes]:
    """`count` visits of `path`, visitor numbers first_index .. first_index + count - 1."""
    return [
        visit_request(path=path, host=host, tag=tag, index=index)
        for index in range(first_index, first_index + count)
    ]
