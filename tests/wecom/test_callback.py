"""The callback view: every way in, every way out. Rejects store nothing but a log line."""

import datetime as dt
import io
import logging
import random
import time
from urllib.parse import urlencode

import pytest
import time_machine
from django.db import OperationalError
from django.test import RequestFactory
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from contacts.models import ExternalContact
from scrm import debounce
from scrm.wecom import services, tasks, views
from scrm.wecom.client import WeComTransientError
from scrm.wecom.crypto import MessageCrypto
from scrm.wecom.models import CallbackEvent, Corp
from scrm.wecom.sandbox.simulate import event_xml, sandbox_customer_add
from scrm.wecom.services import (
    callback_event_process,
    callback_events_requeue,
    callback_events_retry,
    corp_create,
)

pytestmark = pytest.mark.django_db

LIMIT = 64 * 1024
NONCE = "1320562132"
handled: list[int] = []
PIPELINE = "tests.wecom.test_callback."

BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "lol">'
    + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9))
    + "]>"
)
EXTERNAL_ENTITY = '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY ext SYSTEM "file:///etc/passwd">]>'
PLAIN_DTD = '<?xml version="1.0"?><!DOCTYPE xml [<!ELEMENT xml ANY>]>'


# -- pipelines the tests plug in through settings.WECOM_EVENT_PIPELINE ---------------------------


def pipeline_records(event: CallbackEvent) -> bool:
    handled.append(event.pk)
    return True


def pipeline_raises(event: CallbackEvent) -> bool:
    raise ValueError(f"no live code for state {event.payload.get('State')!r}")


def pipeline_busy(event: CallbackEvent) -> bool:
    raise WeComTransientError(-1, "system busy", "externalcontact/get")


def pipeline_deadlocks(event: CallbackEvent) -> bool:
    raise OperationalError("deadlock detected")  # what Django raises for PostgreSQL's 40P01


@pytest.fixture(autouse=True)
def _recording_pipeline(settings):
    handled.clear()
    settings.WECOM_EVENT_PIPELINE = PIPELINE + "pipeline_records"


# -- helpers -------------------------------------------------------------------------------------


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks):
    """Run what the request queued on commit, as the real commit would (the test never commits)."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def _url(corp_id: str, **params: str) -> str:
    return f"/wecom/callback/{corp_id}/?{urlencode(params)}"


def _event(corp: Corp, external_userid: str = "wmCUSTOMER01", **fields) -> bytes:
    fields.setdefault("UserID", "staff01")
    create_time = fields.pop("create_time", int(time.time()) - 5)
    return event_xml(
        corp.corp_id, "add_external_contact", create_time, ExternalUserID=external_userid, **fields
    )


def _envelope(encrypt: str, corp_id: str = "wwtest0000000001", extra: str = "") -> str:
    return (
        f"<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName><AgentID><![CDATA[]]></AgentID>"
        f"<Encrypt><![CDATA[{encrypt}]]></Encrypt>{extra}</xml>"
    )


def _signed_url(corp_id: str, crypto: MessageCrypto, encrypt: str) -> str:
    timestamp = str(int(time.time()))
    signature = crypto.sign(timestamp, NONCE, encrypt)
    return _url(corp_id, msg_signature=signature, timestamp=timestamp, nonce=NONCE)


def _post(client, corp_id, body, *, crypto=None, encrypt=None, timestamp=None, **query):
    """POST `body` signed over `encrypt` (unless a msg_signature is given)."""
    timestamp = str(int(time.time())) if timestamp is None else timestamp
    if "msg_signature" not in query:
        query["msg_signature"] = crypto.sign(timestamp, NONCE, encrypt)
    url = _url(corp_id, timestamp=timestamp, nonce=NONCE, **query)
    return client.post(url, data=body, content_type="text/xml")


def _post_event(client, corp, crypto, xml: bytes, **kw):
    encrypt = crypto.encrypt(xml)
    body = _envelope(encrypt, corp.corp_id)
    return _post(client, corp.corp_id, body, crypto=crypto, encrypt=encrypt, **kw)


def _assert_rejected(response, status: int, caplog) -> str:
    body = response.content.decode()
    assert response.status_code == status, body
    assert response["Content-Type"].startswith("text/plain")
    assert 0 < len(body) < 100
    assert "Traceback" not in body
    assert 'File "' not in body
    assert CallbackEvent.objects.count() == 0
    warnings = [
        r
        for r in caplog.records
        if r.name == "scrm.wecom.callback" and r.levelno == logging.WARNING
    ]
    assert [r.getMessage() for r in warnings if "callback rejected" in r.getMessage()]
    return body


# -- GET: URL verification -----------------------------------------------------------------------


def test_url_verification_answers_the_decrypted_echostr_as_plain_text(corp, crypto, client):
    for plain in (b"5927782489442352469", "验证 echo+/=".encode()):
        echostr = crypto.encrypt(plain)
        timestamp = str(int(time.time()))
        response = client.get(
            _url(
                corp.corp_id,
                msg_signature=crypto.sign(timestamp, NONCE, echostr),
                timestamp=timestamp,
                nonce=NONCE,
                echostr=echostr,
            )
        )
        assert response.status_code == 200
        assert response.content == plain  # no quotes, BOM or newline
        assert response["Content-Type"].startswith("text/plain")
    assert CallbackEvent.objects.count() == 0


def test_url_verification_with_the_published_wechatpy_vector(db, client):
    corp_create(
        corp_id="wx49f0ab532d5d035a",
        name="wechatpy",
        secret="s",
        callback_token="123456",
        encoding_aes_key="kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR",
    )
    query = {
        "msg_signature": "dd6b9c95b495b3f7e2901bfbc76c664930ffdb96",
        "timestamp": "1411443780",
        "nonce": "437374425",
        "echostr": (
            "4ByGGj+sVCYcvGeQYhaKIk1o0pQRNbRjxybjTGblXrBaXlTXeOo1+bXFXDQQb1o6co6Yh9Bv41n7hOch"
            "LF6p+Q=="
        ),
    }
    with time_machine.travel(1411443780 + 30, tick=False):
        response = client.get(_url("wx49f0ab532d5d035a", **query))
    assert response.status_code == 200
    assert response.content == b"5927782489442352469"


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("bad_signature", 403),
        ("other_corp", 403),
        ("garbage_echostr", 400),
        ("old_timestamp", 403),
        ("unknown_corp", 404),
        ("missing_everything", 400),
    ],
)
def test_url_verification_rejects(corp, crypto, client, caplog, case, status):
    timestamp = str(int(time.time()) - (700 if case == "old_timestamp" else 0))
    echostr = crypto.encrypt(b"echo")
    if case == "other_corp":
        echostr = MessageCrypto(corp.callback_token, corp.encoding_aes_key, "wwother").encrypt(
            b"echo"
        )
    if case == "garbage_echostr":
        echostr = "bm90IGEgY2lwaGVydGV4dA=="
    query = {
        "msg_signature": crypto.sign(timestamp, NONCE, echostr),
        "timestamp": timestamp,
        "nonce": NONCE,
        "echostr": echostr,
    }
    if case == "bad_signature":
        query["msg_signature"] = "f" * 40
    corp_id = "wwnosuchcorp" if case == "unknown_corp" else corp.corp_id
    url = f"/wecom/callback/{corp_id}/" if case == "missing_everything" else _url(corp_id, **query)
    response = client.get(url)
    assert "echo" not in _assert_rejected(response, status, caplog)


# -- POST: accepted ------------------------------------------------------------------------------


def test_valid_event_is_stored_with_parsed_fields_dedup_key_and_raw_body(
    corp, crypto, client, on_commit
):
    create_time = int(time.time()) - 3
    xml = _event(corp, "wmCUSTOMER01", create_time=create_time, State="pyq_0012", WelcomeCode="w1")
    encrypt = crypto.encrypt(xml)
    body = _envelope(encrypt, corp.corp_id)
    with on_commit():
        response = _post(client, corp.corp_id, body, crypto=crypto, encrypt=encrypt)

    assert response.status_code == 200
    assert response.content == b""
    event = CallbackEvent.objects.get()
    assert (event.corp_id, event.event, event.change_type) == (
        corp.pk,
        "change_external_contact",
        "add_external_contact",
    )
    assert (event.user_id, event.external_user_id) == ("staff01", "wmCUSTOMER01")
    assert int(event.event_time.timestamp()) == create_time
    assert event.event_time.utcoffset().total_seconds() == 0
    assert event.dedup_key == (
        f"change_external_contact|add_external_contact|staff01|wmCUSTOMER01|{create_time}"
    )
    assert event.payload["State"] == "pyq_0012"
    assert event.payload["WelcomeCode"] == "w1"
    assert event.payload["ToUserName"] == corp.corp_id
    assert event.raw_body == body
    assert event.duplicates == 0
    assert handled == [event.pk]
    event.refresh_from_db()
    assert event.status == CallbackEvent.Status.PROCESSED


def test_the_same_event_three_times_is_one_row_with_two_duplicates(corp, crypto, client, on_commit):
    xml = _event(corp, "wmCUSTOMER01", create_time=int(time.time()) - 10)
    for _ in range(3):
        # WeCom re-encrypts (a new random prefix) on every retry: the body differs each time.
        with on_commit():
            response = _post_event(client, corp, crypto, xml)
        assert response.status_code == 200
        assert response.content == b""
    event = CallbackEvent.objects.get()
    assert event.duplicates == 2
    assert handled == [event.pk]


def test_two_customers_adding_the_same_staff_in_the_same_second_are_two_rows(
    corp, crypto, client, on_commit
):
    now = int(time.time())
    for external_userid in ("wmCUSTOMER01", "wmCUSTOMER02", "wmCUSTOMER01", "wmCUSTOMER02"):
        with on_commit():
            response = _post_event(
                client, corp, crypto, _event(corp, external_userid, create_time=now)
            )
        assert response.status_code == 200
    rows = CallbackEvent.objects.order_by("external_user_id")
    assert [(r.external_user_id, r.duplicates) for r in rows] == [
        ("wmCUSTOMER01", 1),
        ("wmCUSTOMER02", 1),
    ]
    assert len(handled) == 2


def test_the_same_event_for_two_corps_is_two_rows(corp, crypto, client, on_commit):
    other = corp_create(
        corp_id="wwother",
        name="other",
        secret="s",
        callback_token=corp.callback_token,
        encoding_aes_key=corp.encoding_aes_key,
    )
    other_crypto = MessageCrypto(other.callback_token, other.encoding_aes_key, other.corp_id)
    now = int(time.time())
    for target, target_crypto in ((corp, crypto), (other, other_crypto)):
        with on_commit():
            response = _post_event(
                client, target, target_crypto, _event(target, "wmCUSTOMER01", create_time=now)
            )
        assert response.status_code == 200
    assert CallbackEvent.objects.filter(duplicates=0).count() == 2


@pytest.mark.parametrize("minutes", [-9, 9])
def test_timestamps_inside_the_window_are_accepted(corp, crypto, client, minutes):
    response = _post_event(
        client, corp, crypto, _event(corp), timestamp=str(int(time.time()) + minutes * 60)
    )
    assert response.status_code == 200
    assert CallbackEvent.objects.count() == 1


def test_the_window_is_configurable(corp, crypto, client, settings):
    settings.WECOM_CALLBACK_MAX_SKEW = 15 * 60
    old = str(int(time.time()) - 11 * 60)
    assert _post_event(client, corp, crypto, _event(corp), timestamp=old).status_code == 200
    settings.WECOM_CALLBACK_MAX_SKEW = 60
    late = str(int(time.time()) - 2 * 60)
    assert _post_event(client, corp, crypto, _event(corp, "wm2"), timestamp=late).status_code == 403
    assert CallbackEvent.objects.count() == 1


def test_a_body_of_exactly_64_kib_is_accepted(corp, crypto, client):
    encrypt = crypto.encrypt(_event(corp))
    base = _envelope(encrypt, corp.corp_id, extra="<Pad></Pad>")
    body = base.replace("<Pad>", "<Pad>" + "x" * (LIMIT - len(base)))
    assert len(body.encode()) == LIMIT
    response = _post(client, corp.corp_id, body, crypto=crypto, encrypt=encrypt)
    assert response.status_code == 200
    assert CallbackEvent.objects.count() == 1


# -- POST: rejected ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "msg_signature",
    ["0" * 40, "", "签名不对", "dd6b9c95b495b3f7e290"],
    ids=["zeros", "empty", "non-ascii", "truncated"],
)
def test_bad_signature_is_rejected_403(corp, crypto, client, caplog, msg_signature):
    encrypt = crypto.encrypt(_event(corp))
    response = _post(client, corp.corp_id, _envelope(encrypt), msg_signature=msg_signature)
    _assert_rejected(response, 403, caplog)


def test_unknown_corp_is_rejected_404(corp, crypto, client, caplog):
    encrypt = crypto.encrypt(_event(corp))
    response = _post(client, "wwnosuchcorp", _envelope(encrypt), crypto=crypto, encrypt=encrypt)
    _assert_rejected(response, 404, caplog)


def test_inactive_corp_is_rejected_404(corp, crypto, client, caplog):
    Corp.objects.filter(pk=corp.pk).update(is_active=False)
    response = _post_event(client, corp, crypto, _event(corp))
    _assert_rejected(response, 404, caplog)


@pytest.mark.parametrize("minutes", [-11, 11])
def test_timestamp_eleven_minutes_off_either_way_is_rejected_403(
    corp, crypto, client, caplog, minutes
):
    timestamp = str(int(time.time()) + minutes * 60)
    response = _post_event(client, corp, crypto, _event(corp), timestamp=timestamp)
    _assert_rejected(response, 403, caplog)


@pytest.mark.parametrize(
    "timestamp",
    ["", "abc", "1.7e9", "0x65000000", "9" * 5000],
    ids=["empty", "letters", "float", "hex", "5000-digits"],
)
def test_malformed_timestamp_is_rejected_400(corp, crypto, client, caplog, timestamp):
    response = _post_event(client, corp, crypto, _event(corp), timestamp=timestamp)
    _assert_rejected(response, 400, caplog)


@pytest.mark.parametrize(
    "body",
    ["", "not xml", "<xml><Encrypt>abc</Encrypt>", "<xml></yml>", "\xff\xfe<xml/>"],
    ids=["empty", "text", "unclosed", "mismatched", "bom-garbage"],
)
def test_malformed_outer_xml_is_rejected_400(corp, crypto, client, caplog, body):
    response = _post(client, corp.corp_id, body, msg_signature="0" * 40)
    _assert_rejected(response, 400, caplog)


@pytest.mark.parametrize(
    ("prolog", "encrypt_as"),
    [
        (PLAIN_DTD, "cdata"),
        (BILLION_LAUGHS, "cdata"),
        (BILLION_LAUGHS.replace("]>", "<!ENTITY enc '{encrypt}'>]>"), "&enc;"),
        (EXTERNAL_ENTITY, "cdata"),
        (EXTERNAL_ENTITY.replace("file:///etc/passwd", "http://127.0.0.1:9/x"), "cdata"),
    ],
    ids=["dtd", "billion-laughs", "entity-as-encrypt", "external-file", "external-url"],
)
def test_outer_xml_with_a_dtd_or_entities_is_rejected_400(
    corp, crypto, client, caplog, prolog, encrypt_as
):
    # The Encrypt inside is genuine and signed: only the DTD makes the request unacceptable.
    encrypt = crypto.encrypt(_event(corp))
    if encrypt_as == "cdata":
        body = prolog + _envelope(encrypt, corp.corp_id)
    else:
        body = prolog.format(encrypt=encrypt) + (
            f"<xml><ToUserName>{corp.corp_id}</ToUserName><Encrypt>&enc;</Encrypt>"
            "<AgentID>&i;</AgentID></xml>"
        )
    response = _post(client, corp.corp_id, body, crypto=crypto, encrypt=encrypt)
    _assert_rejected(response, 400, caplog)


@pytest.mark.parametrize(
    ("prolog", "user_id"),
    [(PLAIN_DTD, "staff01"), (BILLION_LAUGHS, "&j;"), (EXTERNAL_ENTITY, "&ext;")],
    ids=["dtd", "billion-laughs", "external-entity"],
)
def test_hostile_inner_xml_is_rejected_400(corp, crypto, client, caplog, prolog, user_id):
    # Genuinely encrypted and signed: the sender holds the key, the XML is still refused.
    inner = prolog + _event(corp).decode().replace("<![CDATA[staff01]]>", user_id)
    response = _post_event(client, corp, crypto, inner.encode())
    _assert_rejected(response, 400, caplog)


@pytest.mark.parametrize(
    "body",
    [
        "<xml><ToUserName><![CDATA[wwtest0000000001]]></ToUserName></xml>",
        "<xml><Encrypt></Encrypt></xml>",
        "<xml><Encrypt><Item>a</Item></Encrypt></xml>",
    ],
)
def test_missing_or_empty_encrypt_is_rejected_400(corp, client, caplog, body):
    response = _post(client, corp.corp_id, body, msg_signature="0" * 40)
    _assert_rejected(response, 400, caplog)


def test_a_message_encrypted_for_another_corp_is_rejected_403(corp, client, caplog):
    # Same token and key (a copied configuration), but the receiveid inside names another corp.
    other = MessageCrypto(corp.callback_token, corp.encoding_aes_key, "wwanothercorp")
    encrypt = other.encrypt(_event(corp))
    body = _envelope(encrypt, corp.corp_id)
    response = _post(client, corp.corp_id, body, crypto=other, encrypt=encrypt)
    _assert_rejected(response, 403, caplog)


def test_a_message_encrypted_with_another_key_is_rejected(corp, client, caplog):
    other = MessageCrypto(corp.callback_token, "A" * 43, corp.corp_id)
    encrypt = other.encrypt(_event(corp))
    response = _post(client, corp.corp_id, _envelope(encrypt), crypto=other, encrypt=encrypt)
    # Almost always bad padding (400); about 1 in 256 the padding passes and the length or
    # receiveid check refuses it instead (400 or 403).
    assert response.status_code in (400, 403)
    _assert_rejected(response, response.status_code, caplog)


@pytest.mark.parametrize("extra", [1, 10 * LIMIT])
def test_a_body_over_64_kib_is_rejected_413(corp, crypto, client, caplog, extra):
    encrypt = crypto.encrypt(_event(corp))
    base = _envelope(encrypt, corp.corp_id, extra="<Pad></Pad>")
    body = base.replace("<Pad>", "<Pad>" + "x" * (LIMIT - len(base) + extra))
    response = _post(client, corp.corp_id, body, crypto=crypto, encrypt=encrypt)
    _assert_rejected(response, 413, caplog)


def test_a_body_without_content_length_is_read_at_most_64_kib_and_rejected_413(
    corp, crypto, caplog
):
    # Behind a server that de-chunks without a length (ASGI, wsgi.input_terminated) the stream
    # is unbounded: the view must stop reading after its limit.
    encrypt = crypto.encrypt(_event(corp))
    body = _envelope(encrypt, corp.corp_id, extra="<Pad>" + "x" * LIMIT + "</Pad>").encode()
    url = _signed_url(corp.corp_id, crypto, encrypt)
    request = RequestFactory().post(url, data=b"", content_type="text/xml")
    request.META.pop("CONTENT_LENGTH", None)
    stream = io.BytesIO(body)
    request._stream = stream
    response = views.callback(request, corp_id=corp.corp_id)
    _assert_rejected(response, 413, caplog)
    assert stream.tell() <= LIMIT + 1


@pytest.mark.parametrize("content_length", [None, "100", "nonsense"])
def test_a_large_body_with_a_missing_or_lying_content_length_is_rejected(
    corp, crypto, client, caplog, content_length
):
    # Django's WSGI request reads no more than Content-Length (none when it is absent), so the
    # view sees a truncated document: refused, never stored.
    encrypt = crypto.encrypt(_event(corp))
    body = _envelope(encrypt, corp.corp_id, extra="<Pad>" + "x" * 2 * LIMIT + "</Pad>")
    url = _signed_url(corp.corp_id, crypto, encrypt)
    # Extra environ wins over what the test client computes; "" means no usable length.
    response = client.post(url, body, content_type="text/xml", CONTENT_LENGTH=content_length or "")
    assert 400 <= response.status_code < 500
    _assert_rejected(response, response.status_code, caplog)


@pytest.mark.parametrize(
    "inner",
    [
        "<xml><ToUserName>ww</ToUserName><CreateTime>1700000000</CreateTime></xml>",
        "<xml><Event></Event><CreateTime>1700000000</CreateTime></xml>",
        "<xml><Event>change_external_contact</Event></xml>",
        "<xml><Event>change_external_contact</Event><CreateTime>soon</CreateTime></xml>",
        "<xml><Event>change_external_contact</Event><CreateTime>99999999999999999</CreateTime></xml>",
        "not xml at all",
        "",
    ],
    ids=["no-event", "empty-event", "no-create", "bad-create", "huge-create", "not-xml", "empty"],
)
def test_inner_xml_without_an_event_or_create_time_is_rejected_400(
    corp, crypto, client, caplog, inner
):
    response = _post_event(client, corp, crypto, inner.encode())
    _assert_rejected(response, 400, caplog)


@pytest.mark.parametrize("method", ["put", "delete", "patch"])
def test_other_methods_are_rejected_405(corp, crypto, client, method):
    encrypt = crypto.encrypt(_event(corp))
    url = _signed_url(corp.corp_id, crypto, encrypt)
    response = getattr(client, method)(url, data=_envelope(encrypt), content_type="text/xml")
    assert response.status_code == 405
    assert sorted(response["Allow"].split(", ")) == ["GET", "POST"]
    assert CallbackEvent.objects.count() == 0


# -- queueing and processing ---------------------------------------------------------------------


def test_broker_down_still_answers_200_and_the_sweeper_queues_the_row_later(
    corp, sandbox_corp, crypto, client, settings, monkeypatch, caplog, on_commit
):
    settings.WECOM_EVENT_PIPELINE = "scrm.pipeline.handle_event"
    customer, follow, _code = sandbox_customer_add(
        corp=sandbox_corp, userid="staff01", rng=random.Random(3), state="pyq_0012"
    )
    xml = _event(corp, customer.external_userid, create_time=follow.createtime, State="pyq_0012")

    def broker_down(*args, **kwargs):
        raise BrokerError("[Errno 111] Connection refused")

    with monkeypatch.context() as patch:
        patch.setattr(tasks.callback_event_process_task, "delay", broker_down)
        with on_commit():
            response = _post_event(client, corp, crypto, xml)
        assert response.status_code == 200
        assert response.content == b""
        event = CallbackEvent.objects.get()
        assert event.status == CallbackEvent.Status.PENDING
        assert "could not queue callback event" in caplog.text
        assert callback_events_requeue(older_than_seconds=0) == 1  # broker still down
        event.refresh_from_db()
        assert event.status == CallbackEvent.Status.PENDING

    assert callback_events_requeue(older_than_seconds=3600) == 0  # too young for the sweeper
    with on_commit():
        assert callback_events_requeue(older_than_seconds=0) == 1
    event.refresh_from_db()
    assert event.status == CallbackEvent.Status.PROCESSED
    assert event.attempts == 1
    contact = ExternalContact.objects.get(external_userid=customer.external_userid)
    assert contact.first_source.state == "pyq_0012"
    assert callback_events_requeue(older_than_seconds=0) == 0


def test_a_failing_pipeline_marks_the_row_failed_and_admin_retry_processes_it(
    corp, crypto, client, settings, caplog, on_commit
):
    settings.WECOM_EVENT_PIPELINE = PIPELINE + "pipeline_raises"
    with on_commit():
        response = _post_event(client, corp, crypto, _event(corp, State="gone_01"))
    assert response.status_code == 200  # WeCom is answered before processing
    event = CallbackEvent.objects.get()
    assert event.status == CallbackEvent.Status.FAILED
    assert event.attempts == 1
    assert event.last_error == "ValueError: no live code for state 'gone_01'"
    assert event.processed_at is None
    assert f"callback event {event.pk} failed" in caplog.text

    settings.WECOM_EVENT_PIPELINE = PIPELINE + "pipeline_records"
    with on_commit():
        assert callback_events_retry(event_ids=[event.pk]) == 1
    event.refresh_from_db()
    assert (event.status, event.attempts, event.last_error) == (
        CallbackEvent.Status.PROCESSED,
        2,
        "",
    )
    assert event.processed_at is not None
    assert handled == [event.pk]


def test_retry_leaves_processed_rows_alone(corp, crypto, client, on_commit):
    with on_commit():
        _post_event(client, corp, crypto, _event(corp))
    event = CallbackEvent.objects.get()
    with on_commit():
        assert callback_events_retry(event_ids=[event.pk]) == 0
    event.refresh_from_db()
    assert (event.status, event.attempts) == (CallbackEvent.Status.PROCESSED, 1)
    assert handled == [event.pk]


def test_a_transient_wecom_error_is_recorded_and_re_raised_for_the_task_to_retry(
    corp, crypto, client, settings, monkeypatch
):
    _post_event(client, corp, crypto, _event(corp))  # on_commit not run: still pending
    event = CallbackEvent.objects.get()
    settings.WECOM_EVENT_PIPELINE = PIPELINE + "pipeline_busy"
    with pytest.raises(WeComTransientError):
        callback_event_process(event_id=event.pk)
    event.refresh_from_db()
    assert event.status == CallbackEvent.Status.FAILED
    assert "system busy" in event.last_error
    # A failed row under the attempt limit is swept again.
    queued: list[int] = []
    monkeypatch.setattr(tasks.callback_event_process_task, "delay", queued.append)
    assert callback_events_requeue(older_than_seconds=0) == 1
    assert queued == [event.pk]
    settings.WECOM_INBOX_MAX_ATTEMPTS = 1
    assert callback_events_requeue(older_than_seconds=0) == 0


def test_processing_is_idempotent_and_quiet_for_a_missing_row(corp, crypto, client):
    _post_event(client, corp, crypto, _event(corp))  # on_commit not run: still pending
    event = CallbackEvent.objects.get()
    callback_event_process(event_id=event.pk)
    callback_event_process(event_id=event.pk)
    callback_event_process(event_id=event.pk + 1000)
    assert handled == [event.pk]
    event.refresh_from_db()
    assert (event.status, event.attempts) == (CallbackEvent.Status.PROCESSED, 1)


# -- with a broker: one drain per process and window instead of one task per event ----------


@pytest.fixture
def with_broker(settings, monkeypatch):
    """Celery not eager (a broker is configured); the drains the callback queues are recorded."""
    conf = tasks.callback_events_drain_task.app.conf
    eager, conf.task_always_eager = conf.task_always_eager, False
    settings.WECOM_INBOX_DRAIN_DELAY = 0.2
    services.drain_window.close()
    queued: list[dict] = []
    monkeypatch.setattr(
        tasks.callback_events_drain_task, "apply_async", lambda **kw: queued.append(kw)
    )
    yield queued
    conf.task_always_eager = eager
    services.drain_window.close()


def test_a_burst_of_events_queues_one_drain_per_window(corp, crypto, client, on_commit,
                                                      with_broker, monkeypatch):  # fmt: skip
    clock = [1000.0]
    monkeypatch.setattr(debounce.time, "monotonic", lambda: clock[0])
    for index in range(5):
        with on_commit():
            assert _post_event(client, corp, crypto, _event(corp, f"wm{index}")).status_code == 200
        clock[0] += 0.03  # five events within 0.15 s: inside one 0.2 s window
    assert with_broker == [{"countdown": 0.2}]
    clock[0] += 0.2  # the queued drain has started: the next event needs a drain of its own
    with on_commit():
        _post_event(client, corp, crypto, _event(corp, "wmlate"))
    assert with_broker == [{"countdown": 0.2}, {"countdown": 0.2}]
    assert CallbackEvent.objects.filter(status=CallbackEvent.Status.PENDING).count() == 6


def test_an_event_close_to_the_drain_start_gets_a_drain_of_its_own(with_broker, monkeypatch):
    clock = [50.0]
    monkeypatch.setattr(debounce.time, "monotonic", lambda: clock[0])
    services.callback_event_enqueue(event_id=1)
    clock[0] += 0.2 - services.drain_window.margin / 2  # within the margin of the drain's start
    services.callback_event_enqueue(event_id=2)
    assert len(with_broker) == 2


def test_a_broker_outage_does_not_close_the_window_on_later_events(with_broker, monkeypatch,
                                                                   caplog):  # fmt: skip
    def broker_down(**kw):
        raise ConnectionError("redis down")

    monkeypatch.setattr(tasks.callback_events_drain_task, "apply_async", broker_down)
    services.callback_event_enqueue(event_id=1)
    assert "the sweeper will" in caplog.text
    monkeypatch.setattr(
        tasks.callback_events_drain_task, "apply_async", lambda **kw: with_broker.append(kw)
    )
    services.callback_event_enqueue(event_id=2)  # the failed publish left no window open
    assert with_broker == [{"countdown": 0.2}]


def test_a_drain_processes_pending_rows_in_arrival_order_once(corp, crypto, client, monkeypatch):
    for index in range(7):
        _post_event(client, corp, crypto, _event(corp, f"wm{index}"))  # on_commit not run
    ids = list(CallbackEvent.objects.order_by("pk").values_list("pk", flat=True))
    callback_event_process(event_id=ids[2])  # processed already, e.g. by a retry
    assert services.callback_events_drain(batch_size=2) == 6
    assert handled == [ids[2], *ids[:2], *ids[3:]]
    assert set(CallbackEvent.objects.values_list("status", flat=True)) == {"processed"}
    assert services.callback_events_drain() == 0


def test_a_drain_takes_the_rows_whose_welcome_can_still_make_it_first(corp, crypto, client):
    """Behind a burst: rows older than DRAIN_FRESH_SECONDS wait until the fresh ones are done."""
    for index in range(4):
        _post_event(client, corp, crypto, _event(corp, f"wm{index}"))  # on_commit not run
    ids = list(CallbackEvent.objects.order_by("pk").values_list("pk", flat=True))
    stale = timezone.now() - dt.timedelta(seconds=services.DRAIN_FRESH_SECONDS + 5)
    CallbackEvent.objects.filter(pk__in=ids[:2]).update(received_at=stale)
    assert services.callback_events_drain() == 4
    assert handled == [*ids[2:], *ids[:2]]


@pytest.mark.parametrize("pipeline", ["pipeline_busy", "pipeline_deadlocks"])
def test_a_drain_hands_a_transient_failure_to_the_retrying_task(corp, crypto, client, settings,
                                                                monkeypatch, pipeline):  # fmt: skip
    _post_event(client, corp, crypto, _event(corp))
    settings.WECOM_EVENT_PIPELINE = PIPELINE + pipeline
    retried: list[tuple] = []
    monkeypatch.setattr(
        tasks.callback_event_process_task,
        "apply_async",
        lambda args, countdown: retried.append((args, countdown)),
    )
    assert services.callback_events_drain() == 0
    event = CallbackEvent.objects.get()
    assert event.status == CallbackEvent.Status.FAILED
    assert retried == [((event.pk,), 5)]


def test_a_drain_out_of_time_queues_its_continuation(corp, crypto, client, monkeypatch):
    for index in range(3):
        _post_event(client, corp, crypto, _event(corp, f"wm{index}"))
    continued: list[bool] = []
    monkeypatch.setattr(tasks.callback_events_drain_task, "delay", lambda: continued.append(True))
    assert services.callback_events_drain(batch_size=1, time_budget=-1) == 1
    assert continued == [True]
    assert CallbackEvent.objects.filter(status=CallbackEvent.Status.PENDING).count() == 2


def pipeline_deadlocks_once(event: CallbackEvent) -> bool:
    handled.append(event.pk)
    if len(handled) == 1:
        raise OperationalError("deadlock detected")
    return True


def pipeline_busy_once(event: CallbackEvent) -> bool:
    handled.append(event.pk)
    if len(handled) == 1:
        raise WeComTransientError(-1, "system busy", "externalcontact/get")
    return True


def pipeline_fails_once(event: CallbackEvent) -> bool:
    handled.append(event.pk)
    if len(handled) == 1:
        raise ValueError("not transient")
    return True


@pytest.mark.parametrize("pipeline", ["pipeline_deadlocks_once", "pipeline_busy_once"])
def test_a_transient_failure_is_retried_by_the_task_and_then_processed(
    corp, crypto, client, settings, pipeline
):
    _post_event(client, corp, crypto, _event(corp))  # on_commit not run: still pending
    event = CallbackEvent.objects.get()
    settings.WECOM_EVENT_PIPELINE = PIPELINE + pipeline
    handled.clear()
    result = tasks.callback_event_process_task.apply((event.pk,))
    assert result.state == "SUCCESS"
    event.refresh_from_db()
    assert handled == [event.pk, event.pk]
    assert (event.status, event.attempts) == (CallbackEvent.Status.PROCESSED, 2)


def test_a_failure_that_is_not_transient_is_not_retried_by_the_task(corp, crypto, client, settings):
    _post_event(client, corp, crypto, _event(corp))  # on_commit not run: still pending
    event = CallbackEvent.objects.get()
    settings.WECOM_EVENT_PIPELINE = PIPELINE + "pipeline_fails_once"
    handled.clear()
    tasks.callback_event_process_task.apply((event.pk,))
    event.refresh_from_db()
    assert handled == [event.pk]  # left FAILED for the sweeper and the admin's retry action
    assert (event.status, event.attempts) == (CallbackEvent.Status.FAILED, 1)
