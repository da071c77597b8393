"""Writes of the gateway: corps, the callback inbox, and processing of inbox rows."""

from __future__ import annotations

import hashlib
import logging
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from xml.etree.ElementTree import ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from django.conf import settings
from django.db import OperationalError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.module_loading import import_string

from scrm.db import GroupInsert
from scrm.debounce import QueueWindow
from scrm.shared_version import shared_version_bump, shared_versions
from scrm.wecom.client import WeComTransientError
from scrm.wecom.crypto import CryptoError, MessageCrypto
from scrm.wecom.models import CallbackEvent, Corp
from scrm.wecom.vault import EncryptedTextField

logger = logging.getLogger("scrm.wecom.callback")

# Failures of processing worth retrying soon: WeCom busy or unreachable, and the database's
# OperationalError (a deadlock or serialization failure rolled the whole transaction back, or
# the connection dropped). Anything else marks the row failed for an operator to look at.
TRANSIENT_ERRORS = (WeComTransientError, OperationalError)


SECONDS_RE = re.compile(r"[0-9]{1,12}")  # Unix seconds as WeCom writes them (fullmatch)
# WeCom (企业微信) opened in 2016: an event older than that is not one of its events (CreateTime 0
# was stored as 1970). Ahead of our clock by more than a day cannot be a clock skew either.
EARLIEST_CREATE_TIME = 1451606400  # 2016-01-01 UTC
CREATE_TIME_MAX_AHEAD = 86400
# The fields the pipeline reads as text, and those stored in 64-character columns: a list
# (<UserID><Item>a</Item></UserID>) was stored as "['a']", a longer id truncated, so two
# customers could share one.
TEXT_FIELDS = ("Event", "ChangeType", "UserID", "ExternalUserID", "ChatId", "Id", "State",
               "WelcomeCode", "Source", "FailReason", "UpdateDetail", "TagType")  # fmt: skip
ID_FIELDS = ("Event", "ChangeType", "UserID", "ExternalUserID", "ChatId")
ID_MAX_LENGTH = 64


class CallbackRejected(Exception):
    """A callback we refuse: answered with `status` and `reason`, logged, never stored."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


# -- corps -------------------------------------------------------------------------------------


@transaction.atomic
def corp_create(
    *,
    corp_id: str,
    name: str,
    secret: str,
    callback_token: str,
    encoding_aes_key: str,
    agent_id: str = "",
    time_zone: str = "Asia/Shanghai",
) -> Corp:
    corp = Corp(
        corp_id=corp_id,
        name=name,
        secret=secret,
        agent_id=agent_id,
        callback_token=callback_token,
        encoding_aes_key=encoding_aes_key,
        time_zone=time_zone,
    )
    corp.full_clean()
    corp.save()
    return corp


@transaction.atomic
def corp_secrets_rotate() -> int:
    """Re-encrypt every corp's secrets with the first key of SECRETS_KEY (any key in force
    decrypts them). The plaintext does not change, so nothing else needs to know. Returns the
    number of corps rewritten."""
    names = [f.name for f in Corp._meta.fields if isinstance(f, EncryptedTextField)]
    count = 0
    for corp in Corp.objects.only("pk", *names).order_by("pk"):
        # update(), not save(): the values are not changed, only sealed again.
        Corp.objects.filter(pk=corp.pk).update(**{name: getattr(corp, name) for name in names})
        count += 1
    return count


# -- callback ----------------------------------------------------------------------------------


def _parse_xml(data: bytes | str) -> dict[str, str]:
    """Flat {tag: text} of a WeCom XML document; DTDs, entities and external refs refused."""
    try:
        root = SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (DefusedXmlException, ParseError, ValueError) as exc:
        raise CallbackRejected(400, f"malformed or forbidden XML: {type(exc).__name__}") from exc
    fields: dict[str, Any] = {}
    for child in root:
        if len(child):  # e.g. MemChangeList holds <Item> elements
            fields[child.tag] = [(item.text or "").strip() for item in child]
        else:
            fields[child.tag] = (child.text or "").strip()
    return fields


# Corp credentials per process for a short while: the callback is the hot path and they change
# rarely. A signature that fails with cached credentials is checked again with fresh ones, so
# a rotated Token or EncodingAESKey is accepted at once. Saving a Corp (disabling it, rotating
# its keys) bumps a shared version (scrm.shared_version) that every process compares at most
# every CORP_CHECK_SECONDS, one cache round trip: the old credentials and a disabled corp are
# refused everywhere within about a second, not after CORP_CACHE_SECONDS.
CORP_CACHE_SECONDS = 60
CORP_CHECK_SECONDS = 1.0
CORP_VERSION_KEY = "wecom:corps:version"


class _CachedCorp(NamedTuple):
    corp: Corp
    crypto: MessageCrypto
    version: tuple
    expires: float  # monotonic: reload whatever the version
    check: float  # monotonic: compare the version again


_corp_cache: dict[str, _CachedCorp] = {}


def corp_cache_clear(corp_id: str | None = None) -> None:
    if corp_id is None:
        _corp_cache.clear()
    else:
        _corp_cache.pop(corp_id, None)


def corp_changed(**_: Any) -> None:
    """A Corp was saved or deleted: this process forgets the credentials at once, every
    process once the change committed and its next version check is due. Every corp's, as
    a changed corp_id leaves its old entry behind (saves of corps are rare)."""
    corp_cache_clear()
    shared_version_bump(CORP_VERSION_KEY)
    transaction.on_commit(corp_cache_clear)


def _cached_corp(corp_id: str) -> _CachedCorp | None:
    cached = _corp_cache.get(corp_id)
    if cached is None:
        return None
    now = time.monotonic()
    if cached.expires <= now:
        return None
    if cached.check > now:
        return cached
    if shared_versions(CORP_VERSION_KEY) != cached.version:
        return None
    cached = cached._replace(check=now + CORP_CHECK_SECONDS)
    _corp_cache[corp_id] = cached
    return cached


def _crypto_for(corp_id: str, *, fresh: bool = False) -> tuple[Corp, MessageCrypto, bool]:
    """(corp, crypto, from_cache) for an active corp; CallbackRejected if there is none."""
    cached = None if fresh else _cached_corp(corp_id)
    if cached is not None:
        return cached.corp, cached.crypto, True
    version = shared_versions(CORP_VERSION_KEY)  # read before the row it describes
    corp = (
        Corp.objects.filter(corp_id=corp_id, is_active=True)
        .only("id", "corp_id", "callback_token", "encoding_aes_key")
        .first()
    )
    if corp is None:
        _corp_cache.pop(corp_id, None)
        raise CallbackRejected(404, "unknown corp")
    try:
        crypto = MessageCrypto(corp.callback_token, corp.encoding_aes_key, corp.corp_id)
    except CryptoError as exc:
        raise CallbackRejected(400, "corp has an invalid EncodingAESKey") from exc
    now = time.monotonic()
    _corp_cache[corp_id] = _CachedCorp(
        corp, crypto, version, now + CORP_CACHE_SECONDS, now + CORP_CHECK_SECONDS
    )
    return corp, crypto, False


def _verified(
    corp_id: str, msg_signature: str, timestamp: str, nonce: str, encrypt: str
) -> tuple[Corp, bytes]:
    corp, crypto, cached = _crypto_for(corp_id)
    try:
        return corp, _decrypt(crypto, msg_signature, timestamp, nonce, encrypt)
    except CallbackRejected:
        if not cached:
            raise
    corp, crypto, _ = _crypto_for(corp_id, fresh=True)
    return corp, _decrypt(crypto, msg_signature, timestamp, nonce, encrypt)


def _check_timestamp(timestamp: str) -> None:
    # ASCII digits, at most 12: int() also takes "+1", "1_0" and other scripts' digits, and a
    # 400-digit number overflowed the float comparison below (a 500).
    if not isinstance(timestamp, str) or not SECONDS_RE.fullmatch(timestamp):
        raise CallbackRejected(400, "missing or malformed timestamp")
    if abs(time.time() - int(timestamp)) > settings.WECOM_CALLBACK_MAX_SKEW:
        raise CallbackRejected(403, "timestamp outside the accepted window")


def _decrypt(crypto: MessageCrypto, msg_signature: str, timestamp: str, nonce: str, encrypt: str):
    try:
        return crypto.verify_and_decrypt(msg_signature, timestamp, nonce, encrypt)
    except CryptoError as exc:
        raise CallbackRejected(403 if exc.code in (-40001, -40005) else 400, exc.message) from exc


def callback_verify_url(
    *, corp_id: str, msg_signature: str, timestamp: str, nonce: str, echostr: str
) -> bytes:
    """URL verification (GET): the decrypted echostr, to be answered as plain text."""
    _check_timestamp(timestamp)
    return _verified(corp_id, msg_signature, timestamp, nonce, echostr)[1]


def dedup_key_for(fields: dict[str, Any]) -> str:
    """(Event, ChangeType, UserID|ChatId|Id, ExternalUserID, CreateTime) and chat/tag details.

    Customers adding the same member in the same second share CreateTime: the customer is part
    of the key, or real adds would be dropped as duplicates.
    """
    subject = fields.get("UserID") or fields.get("ChatId") or fields.get("Id") or ""
    members = fields.get("MemChangeList")
    parts = [
        fields.get("Event", ""),
        fields.get("ChangeType", ""),
        subject,
        fields.get("ExternalUserID", ""),
        fields.get("CreateTime", ""),
        fields.get("UpdateDetail", ""),
        fields.get("TagType", ""),
        ",".join(members) if isinstance(members, list) else "",
    ]
    key = "|".join(str(p) for p in parts).rstrip("|")
    if len(key) > 200:
        key = key[:150] + "#" + hashlib.sha256(key.encode()).hexdigest()[:40]
    return key


def callback_receive(
    *, corp_id: str, msg_signature: str, timestamp: str, nonce: str, body: bytes
) -> int | None:
    """Verify, decrypt and store one event; queue it after commit. Its id, None for a duplicate.

    Raises CallbackRejected for anything that must not be stored: not verified, not UTF-8,
    not an event, no plausible CreateTime. A verified event whose ids are unusable (a list, too
    long for their columns) is stored with status INVALID and the reason, and not queued.
    """
    _check_timestamp(timestamp)
    _crypto_for(corp_id)  # an unknown corp is refused before its body is parsed
    raw_body = _body_text(body)
    envelope = _parse_xml(body)
    encrypt = envelope.get("Encrypt")
    if not encrypt or not isinstance(encrypt, str):
        raise CallbackRejected(400, "no Encrypt element")
    corp, message = _verified(corp_id, msg_signature, timestamp, nonce, encrypt)
    fields = _parse_xml(message)
    if not fields.get("Event") or not isinstance(fields["Event"], str):
        raise CallbackRejected(400, "not an event")
    event_time = _event_time(fields.get("CreateTime"))

    unusable = _unusable_field(fields)
    row = {
        "corp_id": corp.pk,
        "event": fields["Event"][:64],
        "event_time": event_time,
        "payload": fields,
        "raw_body": raw_body,
    }
    if unusable:
        # Signed by the corp's key, so stored (the inbox keeps what WeCom sent), but marked
        # invalid and never processed: answered 200 at once, or WeCom would resend it. Its
        # retries decrypt to the same message, hence the key.
        logger.warning("callback event stored invalid corp=%s reason=%s", corp.corp_id, unusable)
        dedup_key = "invalid|" + hashlib.sha256(message).hexdigest()
        row.update(dedup_key=dedup_key, status=CallbackEvent.Status.INVALID, last_error=unusable)
    else:
        dedup_key = dedup_key_for(fields)
        row.update(
            dedup_key=dedup_key,
            change_type=fields.get("ChangeType", ""),
            user_id=fields.get("UserID") or fields.get("ChatId") or "",
            external_user_id=fields.get("ExternalUserID", ""),
        )
    # Stored before the 200 and committed with the rows other threads submit meanwhile (group
    # commit): under a burst the commit is the cost, and WeCom does not resend what we answered.
    event_id = inbox_insert.insert(row)
    if event_id is None:
        # WeCom retries whatever it did not see answered within 5 s: acknowledge, do not redo.
        CallbackEvent.objects.filter(corp=corp, dedup_key=dedup_key).update(
            duplicates=F("duplicates") + 1
        )
        return None
    if not unusable:
        transaction.on_commit(lambda: callback_event_enqueue(event_id=event_id))
    return event_id


def _body_text(body: bytes) -> str:
    """The body as stored (raw_body): WeCom sends UTF-8. Another encoding (UTF-16 parses as
    XML, but its text is full of NULs, which PostgreSQL refuses) is refused."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CallbackRejected(400, "body is not UTF-8") from exc
    if "\x00" in text:
        raise CallbackRejected(400, "body is not UTF-8 text (NUL)")
    return text


def _event_time(create_time: Any) -> datetime:
    """CreateTime as a UTC time; CallbackRejected when it is not a plausible WeCom event's."""
    if not isinstance(create_time, str) or not SECONDS_RE.fullmatch(create_time):
        raise CallbackRejected(400, "missing or malformed CreateTime")
    seconds = int(create_time)
    if not EARLIEST_CREATE_TIME <= seconds <= time.time() + CREATE_TIME_MAX_AHEAD:
        raise CallbackRejected(400, "CreateTime out of range")
    return datetime.fromtimestamp(seconds, UTC)


def _unusable_field(fields: dict[str, Any]) -> str:
    """Why a verified event cannot be processed ("" when it can): a field read as text is a
    list, or an id is longer than its column."""
    for name in TEXT_FIELDS:
        if isinstance(fields.get(name), list):
            return f"{name} is a list, not text"
    for name in ID_FIELDS:
        if len(fields.get(name) or "") > ID_MAX_LENGTH:
            return f"{name} longer than {ID_MAX_LENGTH} characters"
    return ""


# One INSERT ... ON CONFLICT DO NOTHING per batch of concurrent callbacks: a duplicate needs no
# exception and no savepoint, and the rows of one process's threads share a commit.
inbox_insert = GroupInsert(CallbackEvent, conflict_fields=("corp", "dedup_key"))


def callback_event_enqueue(*, event_id: int) -> None:
    """Queue processing; a broker outage only delays it (the sweeper re-queues pending rows).

    With a broker, rows are not queued one by one: publishing a Celery task cost more CPU than
    storing the row (2.6 ms against 1.35 ms per event in bench/callback_ingest), and a burst of
    adds is exactly when the callback must answer fast. Instead each process queues one drain
    of the inbox per WECOM_INBOX_DRAIN_DELAY window, to run at the window's end: every row this
    process stored during the window is committed by then, so that drain finds it.
    """
    delay = settings.WECOM_INBOX_DRAIN_DELAY
    if delay > 0 and drain_window.covers_now():
        return  # the common case under a burst, checked before anything costlier
    from scrm.wecom.tasks import callback_event_process_task, callback_events_drain_task

    try:
        if callback_events_drain_task.app.conf.task_always_eager or delay <= 0:
            callback_event_process_task.delay(event_id)
        else:
            drain_window.queue(callback_events_drain_task, delay)
    except Exception:  # the broker's errors vary by transport; the row is safe either way
        logger.warning("could not queue callback event %s; the sweeper will", event_id)


# One inbox drain per process and WECOM_INBOX_DRAIN_DELAY (see callback_event_enqueue).
drain_window = QueueWindow()


# Inbox rows received this recently are drained first: behind a burst the adds whose welcome
# code (20 s from the add) can still make it go before older ones, whose welcome would expire
# anyway; those are processed (and their welcome recorded expired) when the fresh ones ran out.
# Under a sustained overload the welcomes sent are about this old: a shorter window lowers
# their latency but sends fewer in time (bench/e2e: 10 s gave p99 12 s and 65 % on time, the
# whole 20 s window 80 % with p99 19 s); 15 leaves the welcome's own queue 4 s.
DRAIN_FRESH_SECONDS = 15


# Rows a drain reads at a time. Small, so that which rows are fresh is asked again every
# second or so under a burst: a batch of 200 took ten seconds to work through, and its last
# rows were no longer fresh when their turn came.
DRAIN_BATCH = 20


def callback_events_drain(*, batch_size: int = DRAIN_BATCH, time_budget: float = 50.0) -> int:
    """Process pending inbox rows, deadline first: those received within DRAIN_FRESH_SECONDS
    in arrival order, then the older ones in arrival order; the number processed here.

    Several drains may run at once (one per web process and window). Each row is claimed
    with SKIP LOCKED: a row another drain is processing is passed over, not waited for (it
    commits or fails there), so concurrent drains take disjoint rows instead of queueing on
    each other's row locks; a drain that finds only rows others hold ends. A transient
    failure (WeCom busy, a database deadlock) hands the row to callback_event_process_task,
    which retries it with backoff. A drain that runs out of time queues its own
    continuation.
    """
    from scrm.wecom.tasks import callback_event_process_task, callback_events_drain_task

    started = time.monotonic()
    processed = 0
    pending = CallbackEvent.objects.filter(status=CallbackEvent.Status.PENDING).order_by("pk")
    while True:
        fresh_since = timezone.now() - timedelta(seconds=DRAIN_FRESH_SECONDS)
        ids = list(
            pending.filter(received_at__gte=fresh_since).values_list("pk", flat=True)[:batch_size]
        ) or list(pending.values_list("pk", flat=True)[:batch_size])
        progressed = False
        for event_id in ids:
            try:
                if callback_event_process(event_id=event_id, skip_locked=True):
                    processed += 1
                    progressed = True
            except TRANSIENT_ERRORS:
                callback_event_process_task.apply_async((event_id,), countdown=5)
                progressed = True  # the row left the pending ones (failed, to be retried)
        if not progressed or (len(ids) < batch_size and not pending.exists()):
            return processed
        if time.monotonic() - started > time_budget:
            callback_events_drain_task.delay()
            return processed


# -- processing --------------------------------------------------------------------------------


def callback_event_process(*, event_id: int, skip_locked: bool = False) -> bool:
    """Run the pipeline for one inbox row, once; True when it ran. Idempotent: a processed row
    returns at once, and so does (with `skip_locked`) a row another worker is processing.

    Transient errors (TRANSIENT_ERRORS) are re-raised after the failure is recorded, so the
    task retries.
    """
    pipeline = import_string(settings.WECOM_EVENT_PIPELINE)
    try:
        with transaction.atomic():
            # of=("self",): the inbox row only. Without it the joined corp row was locked
            # FOR UPDATE too, which every commit referencing the corp (KEY SHARE) waited on.
            event = (
                CallbackEvent.objects.select_for_update(of=("self",), skip_locked=skip_locked)
                .select_related("corp")
                .filter(pk=event_id)
                .first()
            )
            if event is None or event.status in (
                CallbackEvent.Status.PROCESSED,
                CallbackEvent.Status.IGNORED,
            ):
                return False
            handled = pipeline(event)
            event.status = (
                CallbackEvent.Status.PROCESSED if handled else CallbackEvent.Status.IGNORED
            )
            event.attempts += 1
            event.last_error = ""
            event.processed_at = timezone.now()
            event.save(update_fields=["status", "attempts", "last_error", "processed_at"])
        return True
    except Exception as exc:
        CallbackEvent.objects.filter(pk=event_id).update(
            status=CallbackEvent.Status.FAILED,
            attempts=F("attempts") + 1,
            last_error=f"{type(exc).__name__}: {exc}"[:2000],
        )
        logger.exception("callback event %s failed", event_id)
        if isinstance(exc, TRANSIENT_ERRORS):
            raise
        return False


def callback_events_requeue(*, older_than_seconds: int | None = None) -> int:
    """Re-queue rows left pending (broker down, worker killed) or failed but retryable."""
    age = older_than_seconds
    if age is None:
        age = settings.WECOM_INBOX_REQUEUE_AFTER
    cutoff = timezone.now() - timedelta(seconds=age)
    stuck = Q(status=CallbackEvent.Status.PENDING) | Q(
        status=CallbackEvent.Status.FAILED, attempts__lt=settings.WECOM_INBOX_MAX_ATTEMPTS
    )
    ids = list(
        CallbackEvent.objects.filter(stuck, received_at__lt=cutoff)
        .order_by("received_at")
        .values_list("id", flat=True)[:1000]
    )
    for event_id in ids:
        callback_event_enqueue(event_id=event_id)
    return len(ids)


def callback_events_retry(*, event_ids: list[int]) -> int:
    """Operator retry: failed (or still pending) rows go back to pending and are queued."""
    with transaction.atomic():
        count = CallbackEvent.objects.filter(
            pk__in=event_ids,
            status__in=[CallbackEvent.Status.FAILED, CallbackEvent.Status.PENDING],
        ).update(status=CallbackEvent.Status.PENDING, last_error="")
        for event_id in event_ids:
            transaction.on_commit(lambda i=event_id: callback_event_enqueue(event_id=i))
    return count
