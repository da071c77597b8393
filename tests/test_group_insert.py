"""scrm.db.GroupInsert: rows submitted by concurrent threads share one INSERT and one commit.

Batches are observed as the database receives them: an execute wrapper (Django's public hook
on a connection) records every INSERT into the inbox as the dedup keys of its rows, and holds
the first one at a gate so that other threads queue behind it; writes never overlap (SQLite's
shared in-memory test database refuses concurrent writers). A thread queues within
microseconds of being started, so each follower is given a generous moment to do so before
the next starts and before the gate opens. The overlap of real concurrent batches from two
processes is the PostgreSQL test at the end.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, connections, transaction

from scrm.db import GroupInsert
from scrm.wecom.models import CallbackEvent, Corp

WAIT = 10  # seconds; a test that waits this long has failed
SETTLE = 0.3  # seconds for a started thread to queue its row (it needs well under 1 ms)
INSERT_RE = re.compile(r'^INSERT INTO "?(\w+)"? \(([^)]*)\)')


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


def inserter_for_the_inbox() -> GroupInsert:
    return GroupInsert(CallbackEvent, conflict_fields=("corp", "dedup_key"))


class Statements:
    """Execute wrapper: the INSERTs into the inbox in the order the database receives them,
    each as the sorted dedup keys of its rows; the first is held until `release` is set."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.lock = threading.Lock()
        self.writing = threading.Event()  # the first INSERT has reached the gate
        self.release = threading.Event()
        # Rows of a failed batch are written again, each by its own thread, at once: on
        # SQLite's shared in-memory test database a second writer would be refused ("database
        # table is locked"), so the observed INSERTs run one at a time (each commits itself).
        self.one_at_a_time = threading.Lock()

    def __call__(self, execute, sql, params, many, context):
        match = INSERT_RE.match(sql)
        if match and match.group(1) == CallbackEvent._meta.db_table:
            columns = [name.strip().strip('"') for name in match.group(2).split(",")]
            at = columns.index("dedup_key")
            keys = sorted(params[at :: len(columns)])
            with self.lock:
                self.batches.append(keys)
                first = len(self.batches) == 1
            if first:
                self.writing.set()
                assert self.release.wait(WAIT)
            with self.one_at_a_time:
                return execute(sql, params, many, context)
        return execute(sql, params, many, context)


@pytest.fixture
def statements() -> Statements:
    return Statements()


def in_thread(results: dict, name: str, call: Callable[[], object],
              statements: Statements) -> threading.Thread:  # fmt: skip
    """Run `call` in a thread of its own (its own connection, observed); {name: its result or
    the exception it raised}."""

    def run():
        try:
            with connection.execute_wrapper(statements):
                results[name] = call()
        except Exception as exc:  # recorded for the assertion
            results[name] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def behind_gate(statements: Statements, inserter: GroupInsert, lead: tuple[str, dict],
                *followers: tuple[str, dict]) -> dict:  # fmt: skip
    """Insert `lead` and hold its write at the gate; submit the followers one after the other
    (so the order they wait in is known); release; {name: pk, None or the error}."""
    results: dict = {}
    name, values = lead
    threads = [in_thread(results, name, lambda: inserter.insert(values), statements)]
    assert statements.writing.wait(WAIT)
    for name, values in followers:
        call = lambda values=values: inserter.insert(values)  # noqa: E731
        threads.append(in_thread(results, name, call, statements))
        time.sleep(SETTLE)
    statements.release.set()
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive()
    return results


def assert_idle(inserter: GroupInsert, corp: Corp, statements: Statements) -> None:
    """The inserter is not left writing nor with rows queued: a new row is written at once,
    in a statement of its own."""
    statements.release.set()
    results: dict = {}
    in_thread(results, "next", lambda: inserter.insert(row(corp, "next")), statements).join(WAIT)
    assert results.get("next") == CallbackEvent.objects.get(dedup_key="next").pk
    assert statements.batches[-1] == ["next"]


def test_rows_submitted_while_a_batch_is_written_share_the_next_statement(corp, statements):
    inserter = inserter_for_the_inbox()
    followers = [(key, row(corp, key)) for key in "cbd"]
    results = behind_gate(statements, inserter, ("a", row(corp, "a")), *followers)

    assert statements.batches == [["a"], ["b", "c", "d"]]  # the waiting rows: one statement
    stored = dict(CallbackEvent.objects.values_list("dedup_key", "pk"))
    assert results == stored  # each caller gets its own row's pk, committed
    assert_idle(inserter, corp, statements)


def test_of_two_rows_with_one_key_in_a_batch_the_first_is_written_the_second_is_the_duplicate(
    corp, statements
):
    inserter = inserter_for_the_inbox()
    results = behind_gate(
        statements,
        inserter,
        ("first", row(corp, "x")),
        ("again", row(corp, "dup")),
        ("twice", row(corp, "dup")),
    )

    assert statements.batches == [["x"], ["dup"]]  # the database sees the key once
    assert results["again"] == CallbackEvent.objects.get(dedup_key="dup").pk
    assert results["twice"] is None
    assert inserter.insert(row(corp, "x")) is None  # an existing row, alone
    assert CallbackEvent.objects.count() == 2


def test_a_failing_batch_is_written_again_row_by_row_and_fails_only_the_bad_row(corp, statements):
    inserter = inserter_for_the_inbox()
    # attempts is a PositiveIntegerField: its CHECK constraint refuses the whole statement.
    results = behind_gate(
        statements,
        inserter,
        ("lead", row(corp, "lead")),
        ("bad", row(corp, "bad", attempts=-1)),
        ("good", row(corp, "good")),
    )

    assert statements.batches[:2] == [["lead"], ["bad", "good"]]
    assert sorted(statements.batches[2:]) == [["bad"], ["good"]]  # again, each alone
    assert isinstance(results["bad"], IntegrityError)
    assert results["good"] == CallbackEvent.objects.get(dedup_key="good").pk
    assert sorted(CallbackEvent.objects.values_list("dedup_key", flat=True)) == ["good", "lead"]
    assert_idle(inserter, corp, statements)


@pytest.mark.parametrize("order", ["bad_waits_longest", "good_waits_longest"])
def test_a_bad_row_fails_only_its_own_request_whoever_leads_its_batch(corp, statements, order):
    inserter = inserter_for_the_inbox()
    waiting = [("good", row(corp, "good")), ("bad", row(corp, "bad", attempts=-1))]
    if order == "bad_waits_longest":  # the one that waited longest leads the next batch
        waiting.reverse()
    results = behind_gate(statements, inserter, ("first", row(corp, "first")), *waiting)

    assert statements.batches[:2] == [["first"], ["bad", "good"]]
    assert results["good"] == CallbackEvent.objects.get(dedup_key="good").pk
    assert isinstance(results["bad"], IntegrityError)
    assert_idle(inserter, corp, statements)


def test_a_failing_leader_hands_the_lead_on(corp, statements):
    inserter = inserter_for_the_inbox()
    results = behind_gate(
        statements,
        inserter,
        ("lead", row(corp, "lead", attempts=-1)),
        ("late", row(corp, "late")),
    )

    assert statements.batches == [["lead"], ["late"]]
    assert isinstance(results["lead"], IntegrityError)
    assert results["late"] == CallbackEvent.objects.get().pk
    assert_idle(inserter, corp, statements)


def test_inside_a_transaction_a_row_is_written_alone_and_rolled_back_with_it(corp, statements):
    inserter = inserter_for_the_inbox()
    seen: list[int | None] = []

    def write_and_fail() -> None:
        with connection.execute_wrapper(statements), transaction.atomic():
            pk = inserter.insert(row(corp, "k"))
            seen.append(pk)
            seen.append(CallbackEvent.objects.get().pk)
            raise RuntimeError("roll back")

    statements.release.set()
    with pytest.raises(RuntimeError):
        write_and_fail()
    assert seen[0] is not None
    assert seen[0] == seen[1]  # visible inside the transaction
    assert statements.batches == [["k"]]
    assert not CallbackEvent.objects.exists()
    assert_idle(inserter, corp, statements)


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
    inserter = inserter_for_the_inbox()

    pk = inserter.insert(row(corp, "k"))

    assert answers == [False]  # asked only after the INSERT failed
    assert connection.connection.info.backend_pid != dead_pid
    assert CallbackEvent.objects.get().pk == pk


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
