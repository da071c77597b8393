"""Hostile input on the callback: each case that answered 500 (or stored garbage) answers a 4xx
with a reason, or, for a validly signed event with unusable fields, is stored marked invalid
and never processed. Run on SQLite and PostgreSQL (the NUL cases only failed there)."""

from __future__ import annotations

import time
from urllib.parse import urlencode

import pytest

from scrm.wecom.crypto import MessageCrypto
from scrm.wecom.models import CallbackEvent, Corp
from scrm.wecom.sandbox.simulate import event_xml

pytestmark = pytest.mark.django_db

NONCE = "1320562132"
processed: list[int] = []


def pipeline_records(event: CallbackEvent) -> bool:
    processed.append(event.pk)
    return True


@pytest.fixture(autouse=True)
def _recording_pipeline(settings):
    processed.clear()
    settings.WECOM_EVENT_PIPELINE = "tests.wecom.test_callback_hostile.pipeline_records"


@pytest.fixture
def client(client):
    client.raise_request_exception = False  # a 500 is what these tests look for
    return client


def _post(client, corp: Corp, crypto: MessageCrypto, xml: bytes, *, timestamp=None,
          encoding: str | None = None, corp_id: str | None = None):  # fmt: skip
    timestamp = str(int(time.time())) if timestamp is None else timestamp
    encrypt = crypto.encrypt(xml)
    body = (f"<xml><ToUserName><![CDATA[{corp.corp_id}]]></ToUserName>"
            f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>")  # fmt: skip
    if encoding:
        body = (f'<?xml version="1.0" encoding="{encoding}"?>' + body).encode(encoding)
    query = urlencode({"msg_signature": crypto.sign(timestamp, NONCE, encrypt),
                       "timestamp": timestamp, "nonce": NONCE})  # fmt: skip
    return client.post(f"/wecom/callback/{corp_id or corp.corp_id}/?{query}", data=body,
                       content_type="text/xml")  # fmt: skip


def _add(corp: Corp, create_time: int | str | None = None, **fields) -> bytes:
    fields.setdefault("UserID", "staff01")
    fields.setdefault("ExternalUserID", "wmCUSTOMER01")
    create_time = int(time.time()) - 5 if create_time is None else create_time
    return event_xml(corp.corp_id, "add_external_contact", create_time, **fields)


def _refused(response, status: int, reason: str) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("text/plain")
    assert reason in response.content.decode()
    assert CallbackEvent.objects.count() == 0


@pytest.mark.parametrize(
    "timestamp",
    ["9" * 400, "1" * 13, "+1700000000", "1_700_000_000", "١٧٠٠٠٠٠٠٠٠", " 1700000000", "-1"],
)
def test_a_timestamp_that_is_not_plain_unix_seconds_is_a_400(corp, crypto, client, timestamp):
    # 400 digits overflowed the float comparison with the clock: OverflowError, a 500.
    _refused(_post(client, corp, crypto, _add(corp), timestamp=timestamp), 400, "timestamp")
    verify = client.get(f"/wecom/callback/{corp.corp_id}/", {"timestamp": timestamp})
    _refused(verify, 400, "timestamp")


@pytest.mark.parametrize("path_corp_id", ["ww%00x", "%00", "wwtest0000000001%00"])
def test_a_nul_in_the_corp_id_path_is_a_400(corp, crypto, client, path_corp_id):
    # PostgreSQL refuses NUL in the corp lookup's parameter: a 500 there, not on SQLite.
    _refused(_post(client, corp, crypto, _add(corp), corp_id=path_corp_id), 400, "NUL")
    response = client.get(f"/wecom/callback/{path_corp_id}/?timestamp={int(time.time())}")
    _refused(response, 400, "NUL")


def test_a_nul_in_the_query_string_is_a_400(corp, client):
    response = client.get(f"/wecom/callback/{corp.corp_id}/?timestamp=1%00&nonce=a")
    _refused(response, 400, "NUL")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_a_validly_signed_body_in_utf16_is_a_400(corp, crypto, client, encoding):
    # The XML parser read it, and its NUL-riddled text failed PostgreSQL's insert: a 500.
    response = _post(client, corp, crypto, _add(corp), encoding=encoding)
    _refused(response, 400, "UTF-8")


def test_a_body_that_is_not_utf8_is_a_400(corp, crypto, client):
    encrypt = crypto.encrypt(_add(corp))
    body = f"<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt><Note>caf\xe9</Note></xml>"
    timestamp = str(int(time.time()))
    query = urlencode({"msg_signature": crypto.sign(timestamp, NONCE, encrypt),
                       "timestamp": timestamp, "nonce": NONCE})  # fmt: skip
    response = client.post(f"/wecom/callback/{corp.corp_id}/?{query}",
                           data=body.encode("latin-1"), content_type="text/xml")  # fmt: skip
    _refused(response, 400, "UTF-8")


@pytest.mark.parametrize("field", ["UserID", "ExternalUserID", "State", "WelcomeCode"])
def test_a_list_valued_field_of_a_signed_event_is_stored_invalid_and_never_processed(
    corp, crypto, client, django_capture_on_commit_callbacks, field
):
    xml = _add(corp, **{field: ["a", "b"]})
    for _delivery in range(2):  # WeCom resends: one row
        with django_capture_on_commit_callbacks(execute=True) as queued:
            response = _post(client, corp, crypto, xml)
        assert response.status_code == 200
        assert response.content == b""
        assert queued == []  # nothing queued for processing
    event = CallbackEvent.objects.get()
    assert event.status == CallbackEvent.Status.INVALID
    assert event.last_error == f"{field} is a list, not text"
    assert event.duplicates == 1
    # Not stored as "['a', 'b']": the ids stay blank, the payload keeps what WeCom sent.
    assert (event.user_id, event.external_user_id) == ("", "")
    assert event.payload[field] == ["a", "b"]
    assert processed == []


def test_over_long_external_user_ids_are_stored_invalid_not_truncated_into_one(
    corp, crypto, client, django_capture_on_commit_callbacks
):
    # Truncated to 64 characters, these two customers shared one ExternalUserID.
    first, second = "wm" + "x" * 62 + "1", "wm" + "x" * 62 + "2"
    with django_capture_on_commit_callbacks(execute=True):
        for external_userid in (first, second):
            response = _post(client, corp, crypto, _add(corp, ExternalUserID=external_userid))
            assert response.status_code == 200
    events = list(CallbackEvent.objects.order_by("pk"))
    assert [e.status for e in events] == [CallbackEvent.Status.INVALID] * 2
    assert {e.last_error for e in events} == {"ExternalUserID longer than 64 characters"}
    assert [e.payload["ExternalUserID"] for e in events] == [first, second]
    assert {e.external_user_id for e in events} == {""}
    assert processed == []


def test_a_long_user_id_is_invalid_but_64_characters_are_fine(
    corp, crypto, client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        _post(client, corp, crypto, _add(corp, UserID="s" * 65))
        _post(client, corp, crypto, _add(corp, UserID="s" * 64, ExternalUserID="w" * 64))
    invalid, fine = CallbackEvent.objects.order_by("pk")
    assert invalid.status == CallbackEvent.Status.INVALID
    assert invalid.last_error == "UserID longer than 64 characters"
    assert fine.status == CallbackEvent.Status.PROCESSED
    assert (fine.user_id, fine.external_user_id) == ("s" * 64, "w" * 64)
    assert processed == [fine.pk]


def test_invalid_events_are_not_swept_or_retried(corp, crypto, client):
    from scrm.wecom.services import callback_events_requeue, callback_events_retry

    _post(client, corp, crypto, _add(corp, UserID=["a"]))
    event = CallbackEvent.objects.get()
    assert callback_events_requeue(older_than_seconds=0) == 0
    assert callback_events_retry(event_ids=[event.pk]) == 0
    event.refresh_from_db()
    assert event.status == CallbackEvent.Status.INVALID


@pytest.mark.parametrize(
    ("create_time", "reason"),
    [
        (0, "CreateTime out of range"),  # was stored as 1970-01-01
        (1451606399, "CreateTime out of range"),  # before WeCom existed
        ("now+2d", "CreateTime out of range"),
        ("-5", "malformed CreateTime"),
        ("1e9", "malformed CreateTime"),
        ("9" * 400, "malformed CreateTime"),
    ],
)
def test_an_implausible_create_time_is_a_400(corp, crypto, client, create_time, reason):
    if create_time == "now+2d":
        create_time = int(time.time()) + 2 * 86400
    xml = _add(corp, create_time=create_time)
    assert f"<CreateTime>{create_time}</CreateTime>".encode() in xml
    _refused(_post(client, corp, crypto, xml), 400, reason)


def test_an_event_element_that_is_a_list_is_not_an_event(corp, crypto, client):
    xml = _add(corp).replace(
        b"<Event><![CDATA[change_external_contact]]></Event>",
        b"<Event><Item>a</Item></Event>",
    )
    _refused(_post(client, corp, crypto, xml), 400, "not an event")


def test_an_inner_message_in_utf16_is_read_as_the_event_it_is(
    corp, crypto, client, django_capture_on_commit_callbacks
):
    # The signature covers the encrypted message, whatever its encoding: the XML parser decodes
    # it, and only text without NUL reaches the row (the stored raw body is the UTF-8 envelope).
    xml = _add(corp, ExternalUserID="wm客户01").decode()
    inner = ('<?xml version="1.0" encoding="UTF-16"?>' + xml).encode("utf-16")
    with django_capture_on_commit_callbacks(execute=True):
        response = _post(client, corp, crypto, inner)
    assert response.status_code == 200
    event = CallbackEvent.objects.get()
    assert (event.status, event.external_user_id) == (CallbackEvent.Status.PROCESSED, "wm客户01")
    assert "\x00" not in event.raw_body
