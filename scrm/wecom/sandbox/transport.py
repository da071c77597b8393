"""A requests transport that answers the built-in sandbox in-process (WECOM_API_BASE unset).

The client builds and sends the very same HTTP requests as against qyapi.weixin.qq.com; only
the last hop, the socket, is replaced by a call to the sandbox's dispatcher.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlsplit

import requests
from requests.adapters import BaseAdapter


class SandboxTransport(BaseAdapter):
    def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
        from scrm.wecom.sandbox.api import dispatch

        url = urlsplit(request.url or "")
        path = url.path.split("/cgi-bin/", 1)[-1]
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        raw = request.body or b"{}"
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            status, answer = 200, {"errcode": 40058, "errmsg": "invalid json"}
        else:
            status, answer = dispatch(request.method or "GET", path, query, body)
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(answer, ensure_ascii=False).encode()
        response.headers["Content-Type"] = "application/json; charset=utf-8"
        response.encoding = "utf-8"
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass
