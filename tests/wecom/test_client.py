"""The WeCom client: one cached token, bounded retries, pagination and a log of every call.

Faults are injected at the HTTP layer with `responses` against a real-looking base URL, and
through the in-process sandbox (SandboxFault) over the client's real request path.
"""

import json
import logging
import socket
import threading
import time
import traceback
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from django.utils import timezone

from scrm.wecom import client as client_module
from scrm.wecom.client import WeComClient, WeComError, WeComRateLimited, WeComTransientError
from scrm.wecom.models import ApiCall
from scrm.wecom.sandbox.models import SandboxAccessToken, SandboxFault

BASE = "https://qyapi.example.test/cgi-bin/"
FOLLOW = "externalcontact/get_follow_user_list"
LIST_WAYS = "externalcontact/list_contact_way"
TOKEN_ERRCODES = [40014, 42001, 40001]

pytestmark = pytest.mark.django_db


# -- helpers -------------------------------------------------------------------------------------


@pytest.fixture
def api(settings):
    """WeCom over `responses` at BASE; every request is answered by what the test registers."""
    settings.WECOM_API_BASE = BASE
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def sandbox(settings):
    settings.WECOM_API_BASE = ""  # the built-in sandbox, in-process


def _token(api, *tokens: str) -> None:
    """gettoken answers these tokens in turn (the last one repeats)."""
    for token in tokens:
        api.get(BASE + "gettoken", json={"errcode": 0, "access_token": token, "expires_in": 7200})


def _answer(api, path: str, *answers, method: str = "GET") -> None:
    """`path` answers these in turn, the last one repeating: a dict is JSON with HTTP 200, an
    int an HTTP status, a str a raw body, an exception is raised by the transport."""
    for answer in answers:
        if isinstance(answer, dict):
            api.add(method, BASE + path, json=answer)
        elif isinstance(answer, int):
            api.add(method, BASE + path, status=answer, body="<html>bad gateway</html>")
        else:
            api.add(method, BASE + path, body=answer)


def _calls(api, path: str) -> list[requests.PreparedRequest]:
    return [c.request for c in api.calls if urlsplit(c.request.url).path.endswith("/" + path)]


def _query(request: requests.PreparedRequest) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}


def _log(*fields: str) -> list[tuple]:
    return list(ApiCall.objects.order_by("id").values_list(*fields))


def _ok(**data) -> dict:
    return {"errcode": 0, "errmsg": "ok", **data}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- tokens --------------------------------------------------------------------------------------


def test_token_is_fetched_once_and_reused_by_later_calls_and_clients(api, corp):
    _token(api, "TOKEN-A")
    _answer(api, FOLLOW, _ok(follow_user=["staff01"]))
    client = WeComClient(corp)
    assert client.follow_user_list() == ["staff01"]
    assert client.follow_user_list() == ["staff01"]
    assert WeComClient(corp).follow_user_list() == ["staff01"]

    (gettoken,) = _calls(api, "gettoken")
    assert _query(gettoken) == {"corpid": corp.corp_id, "corpsecret": corp.secret}
    assert [_query(r)["access_token"] for r in _calls(api, FOLLOW)] == ["TOKEN-A"] * 3


@pytest.mark.parametrize("errcode", TOKEN_ERRCODES)
def test_refused_token_is_refreshed_and_the_call_retried_once(api, corp, errcode):
    _token(api, "TOKEN-A", "TOKEN-B")
    _answer(api, FOLLOW, {"errcode": errcode, "errmsg": "token"}, _ok(follow_user=["staff02"]))

    assert WeComClient(corp).follow_user_list() == ["staff02"]

    assert [_query(r)["access_token"] for r in _calls(api, FOLLOW)] == ["TOKEN-A", "TOKEN-B"]
    assert len(_calls(api, "gettoken")) == 2
    assert _log("endpoint", "errcode", "attempt") == [
        ("gettoken", 0, 1),
        (FOLLOW, errcode, 1),
        ("gettoken", 0, 1),
        (FOLLOW, 0, 2),
    ]


@pytest.mark.parametrize("errcode", TOKEN_ERRCODES)
def test_token_refused_twice_raises_wecom_error_after_one_refresh(api, corp, errcode):
    _token(api, "TOKEN-A", "TOKEN-B", "TOKEN-C")
    _answer(api, FOLLOW, {"errcode": errcode, "errmsg": "still refused"})

    with pytest.raises(WeComError) as info:
        WeComClient(corp).follow_user_list()

    assert not isinstance(info.value, WeComTransientError)
    assert (info.value.errcode, info.value.errmsg, info.value.endpoint) == (
        errcode,
        "still refused",
        FOLLOW,
    )
    assert len(_calls(api, FOLLOW)) == 2
    assert len(_calls(api, "gettoken")) == 2


def test_a_wrong_secret_on_gettoken_is_not_retried(api, corp):
    _answer(api, "gettoken", {"errcode": 40001, "errmsg": "invalid credential"})
    with pytest.raises(WeComError) as info:
        WeComClient(corp).access_token()
    assert info.value.errcode == 40001
    assert len(_calls(api, "gettoken")) == 1


# -- backoff -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("errcode", "error_class"),
    [(-1, WeComTransientError), (45009, WeComRateLimited), (45033, WeComRateLimited)],
)
def test_busy_or_rate_limited_is_retried_up_to_the_attempt_limit_then_raised(
    api, corp, settings, errcode, error_class
):
    settings.WECOM_RETRY_ATTEMPTS = 4
    _token(api, "TOKEN-A")
    _answer(api, FOLLOW, {"errcode": errcode, "errmsg": "busy"})

    with pytest.raises(error_class) as info:
        WeComClient(corp).follow_user_list()

    assert info.value.errcode == errcode
    assert isinstance(info.value, WeComTransientError)
    assert len(_calls(api, FOLLOW)) == 4
    assert len(_calls(api, "gettoken")) == 1  # backoff never throws the token away
    follow_log = [row for row in _log("endpoint", "errcode", "attempt") if row[0] == FOLLOW]
    assert follow_log == [(FOLLOW, errcode, n) for n in (1, 2, 3, 4)]


@pytest.mark.parametrize("errcode", [-1, 45009, 45033])
def test_busy_then_ok_returns_the_answer(api, corp, errcode):
    _token(api, "TOKEN-A")
    busy = {"errcode": errcode, "errmsg": "busy"}
    _answer(api, FOLLOW, busy, busy, _ok(follow_user=["staff03"]))
    assert WeComClient(corp).follow_user_list() == ["staff03"]
    assert len(_calls(api, FOLLOW)) == 3


def test_http_502_is_retried_then_raised_as_transient_with_the_status_logged(api, corp):
    _token(api, "TOKEN-A")
    _answer(api, FOLLOW, 502)

    with pytest.raises(WeComTransientError) as info:
        WeComClient(corp).follow_user_list()

    assert info.value.errcode is None
    assert "HTTP 502" in info.value.errmsg
    assert len(_calls(api, FOLLOW)) == 3
    rows = [
        r for r in _log("endpoint", "http_status", "errcode", "items_returned") if r[0] == FOLLOW
    ]
    assert rows == [(FOLLOW, 502, None, None)] * 3


def test_http_503_then_ok_returns_the_answer(api, corp):
    _token(api, "TOKEN-A")
    _answer(api, FOLLOW, 503, _ok(follow_user=["staff01"]))
    assert WeComClient(corp).follow_user_list() == ["staff01"]


@pytest.mark.parametrize(
    "error", [requests.ConnectionError("reset by peer"), requests.ReadTimeout("read timed out")]
)
def test_network_errors_are_retried_then_raised_as_transient(api, corp, error):
    _token(api, "TOKEN-A")
    _answer(api, FOLLOW, error)

    with pytest.raises(WeComTransientError) as info:
        WeComClient(corp).follow_user_list()

    assert info.value.errcode is None
    assert type(error).__name__ in info.value.errmsg
    rows = [r for r in _log("endpoint", "http_status", "errmsg", "attempt") if r[0] == FOLLOW]
    assert rows == [(FOLLOW, None, type(error).__name__, n) for n in (1, 2, 3)]


def test_a_timeout_then_ok_returns_the_answer(api, corp):
    _token(api, "TOKEN-A")
    _answer(api, FOLLOW, requests.ConnectTimeout("connect"), _ok(follow_user=[]))
    assert WeComClient(corp).follow_user_list() == []


def test_backoff_doubles_and_is_capped(api, corp, settings, monkeypatch):
    settings.WECOM_RETRY_ATTEMPTS = 5
    settings.WECOM_RETRY_BASE_DELAY = 0.5
    settings.WECOM_RETRY_MAX_DELAY = 1.5
    slept: list[float] = []
    monkeypatch.setattr(client_module.time, "sleep", slept.append)
    _token(api, "TOKEN-A")
    _answer(api, FOLLOW, {"errcode": -1, "errmsg": "busy"})

    with pytest.raises(WeComTransientError):
        WeComClient(corp).follow_user_list()

    assert slept == [0.5, 1.0, 1.5, 1.5]


@pytest.mark.parametrize(
    ("errcode", "errmsg"), [(40003, "invalid userid"), (48002, "api forbidden")]
)
def test_a_plain_error_is_not_retried_and_carries_errcode_and_errmsg(api, corp, errcode, errmsg):
    _token(api, "TOKEN-A")
    _answer(api, FOLLOW, {"errcode": errcode, "errmsg": errmsg})

    with pytest.raises(WeComError) as info:
        WeComClient(corp).follow_user_list()

    assert not isinstance(info.value, WeComTransientError)
    assert (info.value.errcode, info.value.errmsg) == (errcode, errmsg)
    assert str(errcode) in str(info.value)
    assert len(_calls(api, FOLLOW)) == 1
    assert _log("endpoint", "errcode", "errmsg", "items_returned")[-1] == (
        FOLLOW,
        errcode,
        errmsg,
        None,
    )


def test_a_non_json_answer_is_an_error_not_a_crash(api, corp):
    _token(api, "TOKEN-A")
    _answer(api, FOLLOW, "<html>proxy error page</html>")
    with pytest.raises(WeComError) as info:
        WeComClient(corp).follow_user_list()
    assert info.value.errcode == -2


# -- pagination ----------------------------------------------------------------------------------


def _paged(pages: dict[str, dict]):
    """A list_contact_way that answers the page for the cursor in the request body."""

    def callback(request):
        cursor = json.loads(request.body).get("cursor", "")
        return 200, {}, json.dumps(_ok(**pages[cursor]))

    return callback


def test_paginate_follows_next_cursor_over_three_pages(api, corp):
    _token(api, "TOKEN-A")
    pages = {
        "": {"contact_way": [{"config_id": "a"}, {"config_id": "b"}], "next_cursor": "c1"},
        "c1": {"contact_way": [{"config_id": "c"}, {"config_id": "d"}], "next_cursor": "c2"},
        "c2": {"contact_way": [{"config_id": "e"}], "next_cursor": ""},
    }
    api.add_callback(responses.POST, BASE + LIST_WAYS, callback=_paged(pages))

    assert list(WeComClient(corp).contact_way_ids(limit=2)) == ["a", "b", "c", "d", "e"]

    bodies = [json.loads(r.body) for r in _calls(api, LIST_WAYS)]
    assert [b.get("cursor") for b in bodies] == [None, "c1", "c2"]
    assert all(b["limit"] == 2 for b in bodies)
    rows = _log("endpoint", "items_returned")
    assert [items for endpoint, items in rows if endpoint == LIST_WAYS] == [2, 2, 1]


def test_paginate_stops_on_a_repeated_cursor(api, corp):
    _token(api, "TOKEN-A")
    pages = {
        "": {"contact_way": [{"config_id": "a"}], "next_cursor": "c1"},
        "c1": {"contact_way": [{"config_id": "b"}], "next_cursor": "c1"},
    }
    api.add_callback(responses.POST, BASE + LIST_WAYS, callback=_paged(pages))
    assert list(WeComClient(corp).contact_way_ids()) == ["a", "b"]
    assert len(_calls(api, LIST_WAYS)) == 2


def test_paginate_stops_on_an_empty_cursor_and_an_empty_page(api, corp):
    _token(api, "TOKEN-A")
    api.add_callback(responses.POST, BASE + LIST_WAYS, callback=_paged({"": {"contact_way": []}}))
    assert list(WeComClient(corp).contact_way_ids()) == []
    assert len(_calls(api, LIST_WAYS)) == 1
    assert _log("endpoint", "http_status", "errcode", "items_returned")[-1] == (
        LIST_WAYS,
        200,
        0,
        0,
    )


# -- the call log --------------------------------------------------------------------------------


def test_every_call_is_logged_with_status_errcode_items_and_duration(api, corp):
    def slow_gettoken(request):
        time.sleep(0.03)
        return 200, {}, json.dumps(_ok(access_token="TOKEN-A", expires_in=7200))

    api.add_callback(responses.GET, BASE + "gettoken", callback=slow_gettoken)
    _answer(api, FOLLOW, _ok(follow_user=["a", "b", "c"]), _ok(follow_user=[]))
    client = WeComClient(corp)
    client.follow_user_list()
    client.follow_user_list()

    rows = list(ApiCall.objects.order_by("id"))
    assert [
        (r.corp_id, r.endpoint, r.method, r.http_status, r.errcode, r.items_returned, r.attempt)
        for r in rows
    ] == [
        (corp.pk, "gettoken", "GET", 200, 0, None, 1),
        (corp.pk, FOLLOW, "GET", 200, 0, 3, 1),
        (corp.pk, FOLLOW, "GET", 200, 0, 0, 1),
    ]
    assert rows[0].duration_ms >= 30
    assert all(r.duration_ms >= 0 for r in rows)


def test_secret_and_tokens_never_reach_the_call_log_or_the_log_output(api, corp, caplog):
    caplog.set_level(logging.DEBUG)
    _token(api, "TOKEN-AAAA-1111", "TOKEN-BBBB-2222")
    _answer(
        api,
        FOLLOW,
        {"errcode": 42001, "errmsg": "access_token expired"},
        {"errcode": -1, "errmsg": "system busy"},
        502,
        requests.ConnectionError("reset"),
        {"errcode": 40003, "errmsg": "invalid userid"},
    )
    with pytest.raises(WeComError):
        WeComClient(corp).follow_user_list()
    with pytest.raises(WeComError):
        WeComClient(corp).follow_user_list()

    secrets = [corp.secret, "TOKEN-AAAA-1111", "TOKEN-BBBB-2222"]
    logged = [str(value) for row in ApiCall.objects.values() for value in row.values()]
    assert len(logged) > 0
    assert "wecom call" in caplog.text
    for secret in secrets:
        assert not any(secret in value for value in logged)
        assert secret not in caplog.text


def test_a_real_network_failure_does_not_carry_the_secret_or_token_in_its_traceback(settings, corp):
    # requests puts the full URL, query string included, into ConnectionError's message;
    # WeCom wants corpsecret and access_token in the query, and tracebacks reach the logs.
    settings.WECOM_API_BASE = f"http://127.0.0.1:{_free_port()}/cgi-bin/"
    settings.WECOM_HTTP_TIMEOUT = 2
    client = WeComClient(corp)
    with pytest.raises(WeComTransientError) as info:
        client.access_token()
    assert corp.secret not in "".join(traceback.format_exception(info.value))

    client_module.cache.set(
        client._token_key, {"token": "TOKEN-IN-CACHE", "expires_at": time.time() + 7200}
    )
    with pytest.raises(WeComTransientError) as info:
        client.follow_user_list()
    assert "TOKEN-IN-CACHE" not in "".join(traceback.format_exception(info.value))


@pytest.mark.django_db(transaction=True)
def test_eight_threads_with_an_empty_cache_fetch_the_token_once(api, corp):
    from django.db import connection

    def slow_gettoken(request):
        time.sleep(0.2)  # long enough for every thread to find the refresh under way
        return 200, {}, json.dumps(_ok(access_token="TOKEN-SHARED", expires_in=7200))

    api.add_callback(responses.GET, BASE + "gettoken", callback=slow_gettoken)
    start = threading.Barrier(8)
    tokens: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            start.wait()
            tokens.append(WeComClient(corp).access_token())
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert tokens == ["TOKEN-SHARED"] * 8
    assert len(_calls(api, "gettoken")) == 1
    assert ApiCall.objects.filter(endpoint="gettoken").count() == 1


# -- against the sandbox (the real request path, in-process) ---------------------------------------


def test_sandbox_token_is_fetched_once_for_many_calls(sandbox, corp, sandbox_corp):
    client = WeComClient(corp)
    first = client.follow_user_list()
    assert client.follow_user_list() == first == ["staff01", "staff02", "staff03"]
    assert SandboxAccessToken.objects.filter(corp=sandbox_corp).count() == 1
    assert ApiCall.objects.filter(endpoint="gettoken").count() == 1


def test_sandbox_expired_token_42001_is_refreshed_and_the_call_retried(sandbox, corp, sandbox_corp):
    client = WeComClient(corp)
    client.follow_user_list()
    SandboxAccessToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    assert client.follow_user_list() == ["staff01", "staff02", "staff03"]
    assert SandboxAccessToken.objects.count() == 2
    assert [e for e in ApiCall.objects.order_by("id").values_list("errcode", flat=True)] == [
        0,
        0,
        42001,
        0,
        0,
    ]


def test_sandbox_revoked_token_40014_is_refreshed_and_the_call_retried(sandbox, corp):
    client = WeComClient(corp)
    client.follow_user_list()
    SandboxAccessToken.objects.all().delete()
    assert client.follow_user_list() == ["staff01", "staff02", "staff03"]
    assert ApiCall.objects.filter(errcode=40014).count() == 1


@pytest.mark.parametrize("errcode", TOKEN_ERRCODES)
def test_sandbox_token_error_twice_raises_after_one_refresh(sandbox, corp, errcode):
    SandboxFault.objects.create(endpoint=FOLLOW, errcode=errcode, remaining=5)
    with pytest.raises(WeComError) as info:
        WeComClient(corp).follow_user_list()
    assert info.value.errcode == errcode
    assert SandboxFault.objects.get().remaining == 3
    assert ApiCall.objects.filter(endpoint="gettoken").count() == 2


@pytest.mark.parametrize(
    ("errcode", "error_class"),
    [
        (-1, WeComTransientError),
        (45009, WeComRateLimited),
        (45033, WeComRateLimited),
        (502, WeComTransientError),
    ],
)
def test_sandbox_faults_back_off_up_to_the_attempt_limit(
    sandbox, corp, settings, errcode, error_class
):
    settings.WECOM_RETRY_ATTEMPTS = 3
    SandboxFault.objects.create(endpoint=FOLLOW, errcode=errcode, remaining=10)
    with pytest.raises(error_class) as info:
        WeComClient(corp).follow_user_list()
    assert info.value.errcode == (None if errcode == 502 else errcode)
    assert SandboxFault.objects.get().remaining == 7
    rows = ApiCall.objects.filter(endpoint=FOLLOW).order_by("id")
    assert [r.attempt for r in rows] == [1, 2, 3]
    if errcode == 502:
        assert {(r.http_status, r.errcode) for r in rows} == {(502, None)}
    else:
        assert {(r.http_status, r.errcode) for r in rows} == {(200, errcode)}


def test_sandbox_fault_that_clears_before_the_last_attempt_is_invisible_to_the_caller(
    sandbox, corp
):
    SandboxFault.objects.create(endpoint=FOLLOW, errcode=45033, remaining=2)
    assert WeComClient(corp).follow_user_list() == ["staff01", "staff02", "staff03"]
    assert list(
        ApiCall.objects.filter(endpoint=FOLLOW).order_by("id").values_list("errcode", flat=True)
    ) == [45033, 45033, 0]


def test_sandbox_plain_error_is_not_retried(sandbox, corp):
    SandboxFault.objects.create(
        endpoint=FOLLOW, errcode=40003, errmsg="invalid userid", remaining=5
    )
    with pytest.raises(WeComError) as info:
        WeComClient(corp).follow_user_list()
    assert (info.value.errcode, info.value.errmsg) == (40003, "invalid userid")
    assert SandboxFault.objects.get().remaining == 4


def test_sandbox_pagination_returns_every_contact_way_page_by_page(sandbox, corp):
    client = WeComClient(corp)
    created = [
        client.contact_way_add({"type": 1, "scene": 2, "user": ["staff01"], "state": f"s{i}"})[
            "config_id"
        ]
        for i in range(5)
    ]
    assert list(client.contact_way_ids(limit=2)) == created
    items = ApiCall.objects.filter(endpoint=LIST_WAYS).order_by("id")
    assert list(items.values_list("items_returned", flat=True)) == [2, 2, 1]


def test_sandbox_empty_list_is_logged_as_zero_items(sandbox, corp):
    contacts = list(WeComClient(corp).external_contacts_by_user(["staff01"]))
    assert contacts == []
    row = ApiCall.objects.get(endpoint="externalcontact/batch/get_by_user")
    assert (row.http_status, row.errcode, row.items_returned) == (200, 0, 0)


def test_sandbox_calls_never_log_the_secret_or_token(sandbox, corp, caplog):
    caplog.set_level(logging.DEBUG)
    client = WeComClient(corp)
    client.follow_user_list()
    SandboxAccessToken.objects.all().delete()
    client.follow_user_list()
    SandboxFault.objects.create(endpoint=FOLLOW, errcode=40003, remaining=1)
    with pytest.raises(WeComError):
        client.follow_user_list()

    tokens = list(SandboxAccessToken.objects.values_list("token", flat=True))
    assert tokens
    logged = [str(value) for row in ApiCall.objects.values() for value in row.values()]
    for secret in [corp.secret, *tokens]:
        assert not any(secret in value for value in logged)
        assert secret not in caplog.text


def test_a_token_near_expiry_is_refreshed_ahead_of_time(api, corp):
    client = WeComClient(corp)
    client_module.cache.set(client._token_key, {"token": "OLD", "expires_at": time.time() + 100})
    _token(api, "NEW")
    assert client.access_token() == "NEW"
    assert client.access_token() == "NEW"
    assert len(_calls(api, "gettoken")) == 1


def test_a_token_near_expiry_is_still_used_while_another_refresher_holds_the_lock(api, corp):
    client = WeComClient(corp)
    client_module.cache.set(client._token_key, {"token": "OLD", "expires_at": time.time() + 100})
    client_module.cache.add(client._lock_key, 1, 15)
    _token(api, "NEW")
    assert client.access_token() == "OLD"
    assert _calls(api, "gettoken") == []
