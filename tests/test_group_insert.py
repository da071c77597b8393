"""scrm.db.GroupInsert: rows submitted by concurrent threads share one INSERT and one commit.

The batching tests hold the first batch's write at a gate so that other threads queue behind
it: which rows share a statement is then deterministic, and writes never overlap (SQLite's
shared in-memory test database refuses concurrent writers). The overlap of real concurrent
batches from two processes is the PostgreSQL test at the end.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, connections, transaction

from scrm import db as scrm_db
from scrm.db import GroupInsert
from scrm.wecom.models import CallbackEvent, Corp

WAIT = 10  # seconds; a test that waits this long has failed


@pytest.fixture
def corp(transactional_db) -> Corp:
    return Corp.objects.create(
        corp_id="wwgroup", name="group", callback_token="t", encoding_aes_key="a" * 43
    )


def row(corp: Corp, key: str, **extra) -> dict:
    return {
        "corp_id": corp.pk,
        "dedup_key": key,
        "event": "change_external_contact",
        "event_time": datetime(2026, 11, 30, tzinfo=UTC),
        "payload": {"Key": key},
        **extra,
    }


class Gate:
    """Wraps GroupInsert._write: records each batch's keys and holds the first write until
    released, so that other threads can queue behind it; `inserter` is the one under test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.inserter = GroupInsert(CallbackEvent, conflict_fields=("corp", "dedup_key"))
        self.batches: list[list[str]] = []
        self.writing = threading.Event()
        self.release = threading.Event()
        original = GroupInsert._write

        def write(inserter, batch, conn):
            self.batches.append([pending.key[1] for pending in batch])  # (corp, dedup_key)
            if len(self.batches) == 1:
                self.writing.set()
                assert self.release.wait(WAIT)
            return original(inserter, batch, conn)

        monkeypatch.setattr(GroupInsert, "_write", write)


def in_thread(results: dict, name: str, call: Callable[[], object]) -> threading.Thread:
    def run():
        try:
            results[name] = call()
        except Exception as exc:  # recorded for the assertion
            results[name] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def queued(inserter: GroupInsert, count: int) -> bool:
    for _ in range(WAIT * 100):
        with inserter._lock:
            if len(inserter._queued) >= count:
                return True
        threading.Event().wait(0.01)
    return False


@pytest.fixture
def gate(corp, monkeypatch) -> Gate:
    return Gate(monkeypatch)


def behind_gate(gate: Gate, lead: tuple[str, dict], *followers: tuple[str, dict]) -> dict:
    """Insert `lead` and hold its write at the gate; queue the followers behind it one by one
    (so their order in the next batch is known); release; {name: pk, None or the error}."""
    inserter = gate.inserter
    results: dict = {}
    name, values = lead
    threads = [in_thread(results, name, lambda: inserter.insert(values))]
    assert gate.writing.wait(WAIT)
    for count, (name, values) in enumerate(followers, start=1):
        threads.append(in_thread(results, name, lambda values=values: inserter.insert(values)))
        assert queued(inserter, count)
    gate.release.set()
    for thread in threads:
        thread.join(WAIT)
    return results


def test_rows_submitted_while_a_batch_is_written_share_the_next_statement(corp, gate):
    inserter = gate.inserter
    results = behind_gate(gate, ("a", row(corp, "a")), *((key, row(corp, key)) for key in "cbd"))

    assert gate.batches == [["a"], ["c", "b", "d"]]  # the waiting rows: one statement
    stored = dict(CallbackEvent.objects.values_list("dedup_key", "pk"))
    assert results == stored  # each caller gets its own row's pk, committed
    assert not inserter._writing
    assert not inserter._queued


def test_of_two_rows_with_one_key_in_a_batch_the_second_is_the_duplicate(corp, gate):
    inserter = gate.inserter
    results = behind_gate(
        gate,
        ("first", row(corp, "x")),
        ("again", row(corp, "dup")),
        ("twice", row(corp, "dup")),
    )

    assert gate.batches == [["x"], ["dup", "dup"]]
    assert results["again"] == CallbackEvent.objects.get(dedup_key="dup").pk
    assert results["twice"] is None
    assert inserter.insert(row(corp, "x")) is None  # an existing row, alone
    assert CallbackEvent.objects.count() == 2


def test_a_failing_batch_is_written_again_row_by_row_and_fails_only_the_bad_row(corp, gate):
    inserter = gate.inserter
    # attempts is a PositiveIntegerField: its CHECK constraint refuses the whole statement.
    results = behind_gate(
        gate,
        ("lead", row(corp, "lead")),
        ("bad", row(corp, "bad", attempts=-1)),
        ("good", row(corp, "good")),
    )

    assert gate.batches[:2] == [["lead"], ["bad", "good"]]
    assert isinstance(results["bad"], IntegrityError)
    assert results["good"] == CallbackEvent.objects.get(dedup_key="good").pk
    assert sorted(CallbackEvent.objects.values_list("dedup_key", flat=True)) == ["good", "lead"]
    assert not inserter._writing
    assert not inserter._queued


def test_a_batch_failing_on_a_follower_s_row_does_not_fail_its_leader(corp, gate):
    inserter = gate.inserter
    results = behind_gate(
        gate,
        ("first", row(corp, "first")),
        ("good", row(corp, "good")),  # waited longest: leads the next batch
        ("bad", row(corp, "bad", attempts=-1)),
    )

    assert gate.batches[:2] == [["first"], ["good", "bad"]]
    assert results["good"] == CallbackEvent.objects.get(dedup_key="good").pk
    assert isinstance(results["bad"], IntegrityError)
    assert not inserter._writing


def test_a_failing_leader_hands_the_lead_on(corp, gate):
    results = behind_gate(
        gate, ("lead", row(corp, "lead", attempts=-1)), ("late", row(corp, "late"))
    )

    assert gate.batches == [["lead"], ["late"]]
    assert isinstance(results["lead"], IntegrityError)
    assert results["late"] == CallbackEvent.objects.get().pk


@pytest.mark.django_db
def test_inside_a_transaction_a_row_is_written_alone_and_rolled_back_with_it():
    corp = Corp.objects.create(
        corp_id="wwatomic", name="atomic", callback_token="t", encoding_aes_key="a" * 43
    )
    inserter = GroupInsert(CallbackEvent, conflict_fields=("corp", "dedup_key"))
    seen: list[int | None] = []

    def write_and_fail() -> None:
        with transaction.atomic():
            pk = inserter.insert(row(corp, "k"))
            seen.append(pk)
            seen.append(CallbackEvent.objects.get().pk)
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        write_and_fail()
    assert seen[0] is not None
    assert seen[0] == seen[1]  # visible inside the transaction
    assert not CallbackEvent.objects.exists()
    assert not inserter._writing


@pytest.mark.django_db
def test_rows_take_defaults_and_the_time_of_writing_as_save_would():
    corp = Corp.objects.create(
        corp_id="wwdefaults", name="defaults", callback_token="t", encoding_aes_key="a" * 43
    )
    before = datetime.now(UTC)
    pk = GroupInsert(CallbackEvent, conflict_fields=("corp", "dedup_key")).insert(
        row(corp, "k", raw_body="<xml/>")
    )
    event = CallbackEvent.objects.get(pk=pk)
    assert (event.status, event.attempts, event.duplicates, event.last_error) == (
        CallbackEvent.Status.PENDING, 0, 0, ""
    )  # fmt: skip
    assert event.payload == {"Key": "k"}
    assert event.raw_body == "<xml/>"
    assert event.processed_at is None
    assert event.received_at >= before
    assert event.event_time == datetime(2026, 11, 30, tzinfo=UTC)


def _health_check_due(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The state Django leaves a persistent connection in at the start of a request with
    CONN_HEALTH_CHECKS on; returns the list of is_usable() answers given from now on."""
    connection.ensure_connection()
    connection.health_check_enabled = True
    connection.health_check_done = False
    answers: list[bool] = []
    wrapper_class = type(connections[DEFAULT_DB_ALIAS])
    real = wrapper_class.is_usable

    def is_usable(self) -> bool:
        answers.append(real(self))
        return answers[-1]

    monkeypatch.setattr(wrapper_class, "is_usable", is_usable)
    return answers


def test_a_batch_stands_in_for_the_health_check_of_its_connection(corp, monkeypatch):
    answers = _health_check_due(monkeypatch)
    inserter = GroupInsert(CallbackEvent, conflict_fields=("corp", "dedup_key"))

    pk = inserter.insert(row(corp, "k"))

    assert answers == []  # no SELECT 1 round trip before the INSERT
    assert connection.health_check_done
    assert CallbackEvent.objects.get().pk == pk


@pytest.mark.skipif("postgres" not in os.environ.get("DATABASE_URL", ""), reason="needs PostgreSQL")
def test_a_connection_that_died_between_requests_is_replaced_and_the_row_written(corp, monkeypatch):
    answers = _health_check_due(monkeypatch)
    dead_pid = connection.connection.info.backend_pid
    other = connections.create_connection(DEFAULT_DB_ALIAS)  # ends ours, as a restart would
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [dead_pid])
    finally:
        other.close()
    inserter = GroupInsert(CallbackEvent, conflict_fields=("corp", "dedup_key"))

    pk = inserter.insert(row(corp, "k"))

    assert answers == [False]  # asked only after the INSERT failed
    assert connection.connection.info.backend_pid != dead_pid
    assert CallbackEvent.objects.get().pk == pk
    assert not inserter._writing


@pytest.mark.skipif("postgres" not in os.environ.get("DATABASE_URL", ""), reason="needs PostgreSQL")
def test_two_processes_batches_of_overlapping_keys_store_each_key_once_without_deadlock(
    corp,
):
    """Two inserters stand for two web processes; 16 threads submit 40 keys each in their own
    random order, most keys more than once across threads. Unsorted batches would deadlock."""
    inserters = [GroupInsert(CallbackEvent, conflict_fields=("corp", "dedup_key")) for _ in "ab"]
    keys = [f"k{i:03d}" for i in range(120)]
    outcomes: list[tuple[str, int | None]] = []
    errors: list[Exception] = []
    lock = threading.Lock()

    def submit(index: int) -> None:
        rng = random.Random(index)
        try:
            for key in rng.sample(keys, 40):
                pk = inserters[index % 2].insert(row(corp, key))
                with lock:
                    outcomes.append((key, pk))
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    stored = dict(CallbackEvent.objects.values_list("dedup_key", "pk"))
    submitted = {key for key, _ in outcomes}
    assert set(stored) == submitted
    inserted = [(key, pk) for key, pk in outcomes if pk is not None]
    assert sorted(inserted) == sorted(stored.items())  # each key answered new exactly once
    assert len(outcomes) == 16 * 40
    assert scrm_db._insert_sql  # the statements were cached
