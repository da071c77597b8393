"""The WeCom server API client: access tokens, retries, pagination, and a log of every call.

Tokens are cached per corp in the shared cache and refreshed by one refresher at a time before
they expire. 40001/40014/42001 refresh the token and retry once; -1, 45009, 45033, HTTP 5xx and
timeouts back off (bounded) and finally raise WeComTransientError, which Celery tasks retry.
Every call writes an ApiCall row (no secrets, no tokens) and a log line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import requests
from django.conf import settings
from django.core.cache import cache

from scrm.wecom.models import ApiCall, Corp

logger = logging.getLogger("scrm.wecom.client")

SANDBOX_BASE = "http://wecom-sandbox.internal/cgi-bin/"
TOKEN_ERRCODES = frozenset({40001, 40014, 42001})
BACKOFF_ERRCODES = frozenset({-1, 45009, 45033})
TOKEN_REFRESH_MARGIN = 300  # seconds before expiry when a refresh starts
TOKEN_LOCK_TIMEOUT = 15
# Keys under which WeCom returns the list an endpoint is about (for items_returned).
LIST_KEYS = (
    "external_contact_list",
    "follow_user",
    "contact_way",
    "tag_group",
    "behavior_data",
    "external_userid",
    "customer",
    "group_chat_list",
    "info",
)


class WeComError(Exception):
    """An errcode other than 0, carrying errcode and errmsg."""

    def __init__(self, errcode: int | None, errmsg: str, endpoint: str = "") -> None:
        super().__init__(f"{endpoint}: errcode={errcode} {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg
        self.endpoint = endpoint


class WeComTransientError(WeComError):
    """Busy, rate limited, 5xx or network trouble that survived our own backoff: retry later."""


class WeComRateLimited(WeComTransientError):
    """45009 (frequency) or 45033 (concurrency)."""


def api_base() -> str:
    base = settings.WECOM_API_BASE or SANDBOX_BASE
    return base if base.endswith("/") else base + "/"


_local = threading.local()


def _session() -> requests.Session:
    """One keep-alive session per thread; the built-in sandbox is mounted in-process."""
    base = api_base()
    session = getattr(_local, "session", None)
    if session is None or getattr(_local, "base", None) != base:
        session = requests.Session()
        if base == SANDBOX_BASE:
            from scrm.wecom.sandbox.transport import SandboxTransport

            session.mount(SANDBOX_BASE, SandboxTransport())
        _local.session, _local.base = session, base
    return session


def _count_items(data: dict[str, Any], items_key: str | None) -> int | None:
    if items_key:
        value = data.get(items_key)
        return len(value) if isinstance(value, list) else 0
    for key in LIST_KEYS:
        if isinstance(data.get(key), list):
            return len(data[key])
    return None


class WeComClient:
    def __init__(self, corp: Corp) -> None:
        self.corp = corp
        self.base = api_base()

    # -- access token ------------------------------------------------------------------------

    @property
    def _token_key(self) -> str:
        return f"wecom:token:{self.corp.corp_id}:{self.corp.agent_id}"

    def access_token(self, *, stale: str | None = None) -> str:
        """A valid token; `stale` is a token WeCom just refused, which must not be returned."""
        cached = cache.get(self._token_key)
        now = time.time()
        if cached and cached["token"] != stale:
            remaining = cached["expires_at"] - now
            if remaining > TOKEN_REFRESH_MARGIN:
                return cached["token"]
            if remaining > 30 and not cache.add(self._lock_key, 1, TOKEN_LOCK_TIMEOUT):
                return cached["token"]  # someone else refreshes; the old token still works
            if remaining > 30:
                return self._refresh_holding_lock()
        return self._refresh_waiting(stale)

    @property
    def _lock_key(self) -> str:
        return self._token_key + ":lock"

    def _refresh_waiting(self, stale: str | None) -> str:
        deadline = time.monotonic() + TOKEN_LOCK_TIMEOUT
        while time.monotonic() < deadline:
            if cache.add(self._lock_key, 1, TOKEN_LOCK_TIMEOUT):
                cached = cache.get(self._token_key)
                if cached and cached["token"] != stale and cached["expires_at"] - time.time() > 30:
                    cache.delete(self._lock_key)
                    return cached["token"]
                return self._refresh_holding_lock()
            time.sleep(0.05)
            cached = cache.get(self._token_key)
            if cached and cached["token"] != stale and cached["expires_at"] - time.time() > 30:
                return cached["token"]
        return self._fetch_token()  # the refresher died holding the lock: do it ourselves

    def _refresh_holding_lock(self) -> str:
        try:
            return self._fetch_token()
        finally:
            cache.delete(self._lock_key)

    def _fetch_token(self) -> str:
        params = {"corpid": self.corp.corp_id, "corpsecret": self.corp.secret}
        data = self._send("GET", "gettoken", params=params, items_key=None, with_token=False)
        expires_in = int(data.get("expires_in") or 7200)
        cache.set(
            self._token_key,
            {"token": data["access_token"], "expires_at": time.time() + expires_in},
            timeout=expires_in,
        )
        return data["access_token"]

    # -- requests ----------------------------------------------------------------------------

    def get(self, path: str, params: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        return self._send("GET", path, params=params or {}, **kw)

    def post(self, path: str, body: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        return self._send("POST", path, json=body or {}, **kw)

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        items_key: str | None = None,
        with_token: bool = True,
    ) -> dict[str, Any]:
        attempts = max(1, settings.WECOM_RETRY_ATTEMPTS)
        token_refreshed = False
        attempt = 0
        while True:
            attempt += 1
            query = dict(params or {})
            token = self.access_token() if with_token else None
            if token:
                query["access_token"] = token
            started = time.monotonic()
            try:
                response = _session().request(
                    method,
                    self.base + path,
                    params=query,
                    json=json,
                    timeout=settings.WECOM_HTTP_TIMEOUT,
                )
            except requests.RequestException as exc:
                self._log(path, method, None, None, type(exc).__name__, None, started, attempt)
                if attempt < attempts:
                    self._backoff(attempt)
                    continue
                # Not `from exc`: its message holds the URL, with corpsecret or access_token.
                raise WeComTransientError(None, f"network: {type(exc).__name__}", path) from None

            if response.status_code >= 500:
                self._log(path, method, response.status_code, None, "", None, started, attempt)
                if attempt < attempts:
                    self._backoff(attempt)
                    continue
                raise WeComTransientError(None, f"HTTP {response.status_code}", path)
            try:
                data = response.json()
            except ValueError:
                data = {"errcode": -2, "errmsg": f"HTTP {response.status_code}, not JSON"}
            errcode = int(data.get("errcode") or 0)
            errmsg = str(data.get("errmsg", ""))[:255]
            items = _count_items(data, items_key) if errcode == 0 else None
            self._log(path, method, response.status_code, errcode, errmsg, items, started, attempt)

            if errcode == 0:
                return data
            if errcode in TOKEN_ERRCODES and with_token and not token_refreshed:
                token_refreshed = True
                cache.delete(self._token_key)
                self.access_token(stale=token)
                continue
            if errcode in BACKOFF_ERRCODES:
                if attempt < attempts:
                    self._backoff(attempt)
                    continue
                error_class = WeComTransientError if errcode == -1 else WeComRateLimited
                raise error_class(errcode, errmsg, path)
            raise WeComError(errcode, errmsg, path)

    @staticmethod
    def _backoff(attempt: int) -> None:
        delay = settings.WECOM_RETRY_BASE_DELAY * (2 ** (attempt - 1))
        time.sleep(min(delay, settings.WECOM_RETRY_MAX_DELAY))

    def _log(
        self,
        path: str,
        method: str,
        http_status: int | None,
        errcode: int | None,
        errmsg: str,
        items: int | None,
        started: float,
        attempt: int,
    ) -> None:
        duration_ms = int((time.monotonic() - started) * 1000)
        level = logging.INFO if errcode == 0 else logging.WARNING
        logger.log(
            level,
            "wecom call corp=%s endpoint=%s http=%s errcode=%s items=%s duration_ms=%s attempt=%s",
            self.corp.corp_id,
            path,
            http_status,
            errcode,
            items,
            duration_ms,
            attempt,
        )
        ApiCall.objects.create(
            corp=self.corp,
            endpoint=path,
            method=method,
            http_status=http_status,
            errcode=errcode,
            errmsg=errmsg[:255],
            items_returned=items,
            duration_ms=duration_ms,
            attempt=attempt,
        )

    def paginate(
        self,
        path: str,
        body: dict[str, Any],
        *,
        items_key: str,
        cursor_field: str = "cursor",
        next_field: str = "next_cursor",
    ) -> Iterator[dict[str, Any]]:
        """Yield every item of a cursor-paginated POST endpoint, page by page."""
        cursor = ""
        seen: set[str] = set()
        while True:
            page_body = {**body, cursor_field: cursor} if cursor else dict(body)
            data = self.post(path, page_body, items_key=items_key)
            yield from data.get(items_key) or []
            cursor = data.get(next_field) or ""
            if not cursor or cursor in seen:  # a repeated cursor would loop forever
                return
            seen.add(cursor)

    # -- endpoints ---------------------------------------------------------------------------

    def external_contact_get(self, external_userid: str) -> dict[str, Any]:
        return self.get(
            "externalcontact/get", {"external_userid": external_userid}, items_key="follow_user"
        )

    def external_contacts_by_user(self, userids: list[str]) -> Iterator[dict[str, Any]]:
        # WeCom takes at most 100 userids a request and 100 contacts a page.
        for start in range(0, len(userids), 100):
            yield from self.paginate(
                "externalcontact/batch/get_by_user",
                {"userid_list": userids[start : start + 100], "limit": 100},
                items_key="external_contact_list",
            )

    def follow_user_list(self) -> list[str]:
        data = self.get("externalcontact/get_follow_user_list", items_key="follow_user")
        return list(data.get("follow_user") or [])

    def contact_way_add(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.post("externalcontact/add_contact_way", body)

    def contact_way_get(self, config_id: str) -> dict[str, Any]:
        data = self.post("externalcontact/get_contact_way", {"config_id": config_id})
        return data["contact_way"]

    def contact_way_update(self, body: dict[str, Any]) -> None:
        self.post("externalcontact/update_contact_way", body)

    def contact_way_delete(self, config_id: str) -> None:
        self.post("externalcontact/del_contact_way", {"config_id": config_id})

    def contact_way_ids(self, **body: Any) -> Iterator[str]:
        for item in self.paginate(
            "externalcontact/list_contact_way", {"limit": 1000, **body}, items_key="contact_way"
        ):
            yield item["config_id"]

    def join_way_add(self, body: dict[str, Any]) -> str:
        return self.post("externalcontact/groupchat/add_join_way", body)["config_id"]

    def join_way_get(self, config_id: str) -> dict[str, Any]:
        data = self.post("externalcontact/groupchat/get_join_way", {"config_id": config_id})
        return data["join_way"]

    def join_way_update(self, body: dict[str, Any]) -> None:
        self.post("externalcontact/groupchat/update_join_way", body)

    def group_chat_get(self, chat_id: str) -> dict[str, Any]:
        data = self.post("externalcontact/groupchat/get", {"chat_id": chat_id, "need_name": 1})
        return data["group_chat"]

    def corp_tag_list(self) -> list[dict[str, Any]]:
        data = self.post("externalcontact/get_corp_tag_list", {}, items_key="tag_group")
        return list(data.get("tag_group") or [])

    def mark_tag(
        self, *, userid: str, external_userid: str, add: list[str], remove: list[str]
    ) -> None:
        body = {"userid": userid, "external_userid": external_userid}
        self.post("externalcontact/mark_tag", {**body, "add_tag": add, "remove_tag": remove})

    def send_welcome_msg(self, body: dict[str, Any]) -> None:
        self.post("externalcontact/send_welcome_msg", body)

    def user_behavior_data(
        self, *, userids: list[str], start_time: int, end_time: int
    ) -> list[dict[str, Any]]:
        body = {"userid": userids, "start_time": start_time, "end_time": end_time}
        data = self.post("externalcontact/get_user_behavior_data", body, items_key="behavior_data")
        return list(data.get("behavior_data") or [])
