"""Database helpers for the hot paths (the callback and the landing page)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from typing import Any

from django.db import InterfaceError, OperationalError, models, transaction
from django.utils import timezone

_insert_sql: dict[tuple, str] = {}
_UNSET = object()
_IMMUTABLE = (str, int, float, bool, type(None))
# Fields whose database value for a str is that str (not subclasses: they may convert).
_PLAIN_TEXT_FIELDS = (models.CharField, models.TextField)


@functools.cache
def insert_fields(model: type[models.Model]) -> tuple[models.Field, ...]:
    """The fields an INSERT of a new `model` row writes: every concrete one but the pk."""
    return tuple(f for f in model._meta.concrete_fields if not f.primary_key)


def _insert_statement(
    connection: Any,
    model: type[models.Model],
    *,
    rows: int,
    conflict_fields: tuple[str, ...],
    returning: tuple[str, ...],
) -> str:
    """INSERT of `rows` rows of insert_fields(model) [ON CONFLICT (...) DO NOTHING] RETURNING
    `returning`, written once per model, shape and backend instead of by the ORM's compiler
    on every call. The key holds names, not Field objects, whose hash is Python code."""
    key = (connection.vendor, model, rows, conflict_fields, returning)
    sql = _insert_sql.get(key)
    if sql is None:
        fields = insert_fields(model)
        quote = connection.ops.quote_name
        meta = model._meta
        conflict = ""
        if conflict_fields:
            columns = ", ".join(quote(meta.get_field(f).column) for f in conflict_fields)
            conflict = f" ON CONFLICT ({columns}) DO NOTHING"
        row = "({})".format(", ".join(["%s"] * len(fields)))
        # Identifiers come from the model, quoted; values are parameters.
        sql = "INSERT INTO {} ({}) VALUES {}{} RETURNING {}".format(  # noqa: S608
            quote(meta.db_table),
            ", ".join(quote(f.column) for f in fields),
            ", ".join([row] * rows),
            conflict,
            ", ".join(quote(meta.get_field(f).column) for f in returning),
        )
        _insert_sql[key] = sql
    return sql


def insert_returning_pk(
    instance: models.Model, *, conflict_fields: Sequence[str] = ()
) -> int | None:
    """INSERT one new row for `instance` and set its pk; None (and no pk) when a row with the
    same `conflict_fields` exists (ON CONFLICT DO NOTHING: no exception, no savepoint).

    The ORM's compiler costs more Python than the rest of a hot request (1.35 ms per INSERT in
    bench/callback_ingest). Values still go through each field's own preparation (auto_now_add,
    JSON, time zones, foreign keys), so the row is the one save() would write. Needs INSERT ...
    RETURNING: PostgreSQL, or SQLite 3.35 and newer.
    """
    model = type(instance)
    connection = transaction.get_connection()
    fields = insert_fields(model)
    sql = _insert_statement(
        connection,
        model,
        rows=1,
        conflict_fields=tuple(conflict_fields),
        returning=(model._meta.pk.name,),
    )
    values = [f.get_db_prep_save(f.pre_save(instance, True), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        row = cursor.fetchone()
    if row is None:
        return None
    instance.pk = row[0]
    instance._state.adding = False
    instance._state.db = connection.alias
    return row[0]


def _set_by_clock(field: models.Field) -> bool:
    return getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)


class _PendingRow:
    __slots__ = ("key", "leads", "pk", "values", "woken", "write_alone")

    def __init__(self, values: list[Any], key: tuple) -> None:
        self.values = values
        self.key = key
        # Held until the row's thread is woken, exactly once: a bare lock is the cheapest wait
        # (an Event builds a Condition and a lock per waiter).
        self.woken = threading.Lock()
        self.woken.acquire()
        self.pk: int | None = None
        self.leads = False  # woken to write the next batch rather than with a result
        self.write_alone = False  # the batch failed: write this row with its own connection


class GroupInsert:
    """Single-row INSERT ... ON CONFLICT DO NOTHING RETURNING pk, with the rows that threads of
    one process submit at the same time written in one statement and one commit (group commit).

    Under a burst the commit, not the row, is what costs: one INSERT of three rows takes about
    half the PostgreSQL CPU per row of three INSERTs, and a fraction of the client's. The first
    thread to submit writes (leads); threads that submit while it writes wait, and when it is
    done the longest-waiting one leads the next batch with everything queued by then. insert()
    returns only once its row is committed, so a caller may promise the row is stored. A thread
    inside a transaction writes its row alone in that transaction. If a batch fails, every row
    in it is written again alone by its own thread, so one bad row or connection fails only its
    own request. Rows of a batch are sorted by their conflict key, so two processes' batches
    take the unique index's locks in the same order and cannot deadlock.
    """

    def __init__(self, model: type[models.Model], *, conflict_fields: Sequence[str]) -> None:
        self.model = model
        meta = model._meta
        self.fields = insert_fields(model)
        self.conflict_fields = tuple(meta.get_field(f).attname for f in conflict_fields)
        self._conflict_index = [
            [f.attname for f in self.fields].index(name) for name in self.conflict_fields
        ]
        self._lock = threading.Lock()
        self._queued: list[_PendingRow] = []
        self._writing = False
        self._returning = (meta.pk.attname, *self.conflict_fields)
        # Per backend vendor: each field's default as the database takes it when that is a
        # constant (_UNSET: prepared on every row).
        self._defaults: dict[str, list[Any]] = {}

    def _prepared_defaults(self, connection: Any) -> list[Any]:
        defaults = self._defaults.get(connection.vendor)
        if defaults is None:
            defaults = []
            for field in self.fields:
                value = _UNSET
                per_row = _set_by_clock(field) or (field.has_default() and callable(field.default))
                if not per_row:
                    value = field.get_db_prep_save(field.get_default(), connection)
                    if not isinstance(value, _IMMUTABLE):  # shared by every row: no adapters
                        value = _UNSET
                defaults.append(value)
            self._defaults[connection.vendor] = defaults
        return defaults

    def _prepared(self, values: dict[str, Any], connection: Any) -> list[Any]:
        """Database values of every field, as save() would write them on an add: the given
        value by attname, else the field's default; auto_now(_add) fields take the time now."""
        now = None
        prepared = []
        for field, default in zip(self.fields, self._prepared_defaults(connection), strict=True):
            value = values.get(field.attname, _UNSET)
            if type(value) is str and type(field) in _PLAIN_TEXT_FIELDS:
                prepared.append(value)  # what get_db_prep_save would return, at a tenth the cost
                continue
            if value is _UNSET:
                if default is not _UNSET:
                    prepared.append(default)
                    continue
                if _set_by_clock(field):
                    now = now or timezone.now()
                    value = now
                else:
                    value = field.get_default()
            prepared.append(field.get_db_prep_save(value, connection))
        return prepared

    def insert(self, values: dict[str, Any]) -> int | None:
        """Insert a row of `values` (by attname; the rest take their defaults) and return its
        pk once committed, or None when a row with the same conflict fields exists."""
        connection = transaction.get_connection()
        row = self._prepared(values, connection)
        pending = _PendingRow(row, tuple(row[i] for i in self._conflict_index))
        if connection.in_atomic_block or (
            connection.connection is not None and not connection.get_autocommit()
        ):
            self._write([pending], connection)
            return pending.pk
        with self._lock:
            self._queued.append(pending)
            leads = not self._writing
            self._writing = True
        if not leads:
            pending.woken.acquire()
            if pending.write_alone:
                self._write([pending], connection)
                return pending.pk
            if not pending.leads:
                return pending.pk
        self._lead(pending, connection)
        return pending.pk

    def _lead(self, own: _PendingRow, connection: Any) -> None:
        """Write everything queued (`own` included), then wake its rows' threads and hand the
        lead to the thread that has waited longest, if any. If the batch fails, each row is
        written again alone, `own` here, so the leader fails only for a fault of its own row."""
        with self._lock:
            batch, self._queued = self._queued, []
        failed = False
        try:
            self._write_checked(batch, connection)
        except Exception:
            if len(batch) == 1:
                raise
            failed = True
            for pending in batch:
                pending.write_alone = True
        except BaseException:  # an interrupt: nobody's row is known to be stored
            for pending in batch:
                pending.write_alone = True
            raise
        finally:
            with self._lock:
                if self._queued:
                    self._queued[0].leads = True
                    self._queued[0].woken.release()
                else:
                    self._writing = False
            for pending in batch:
                if pending is not own:
                    pending.woken.release()
        if failed:
            self._write([own], connection)

    def _write_checked(self, batch: list[_PendingRow], connection: Any) -> None:
        """_write() on a live connection. Django's health check (CONN_HEALTH_CHECKS) would
        send SELECT 1 before the first statement of every request, a round trip per batch (in
        one pair of bench/callback_ingest runs with the checks on and off, 1.19 against 0.99 ms
        of gunicorn CPU per callback). Instead the batch is written at once, and only if that
        fails on a connection that turns out dead (the database restarted, an idle timeout) is
        it written again on a new one. ON CONFLICT DO NOTHING makes the second try safe even if
        the first was committed before the connection broke: such rows come back as existing
        (None), and stay pending for the sweeper to process."""
        checks_due = (
            connection.health_check_enabled
            and not connection.health_check_done
            and connection.connection is not None
        )
        if not checks_due:
            self._write(batch, connection)
            return
        connection.health_check_done = True  # this write stands in for the check
        try:
            self._write(batch, connection)
            return
        except (InterfaceError, OperationalError):
            if connection.is_usable():
                raise  # the statement failed, not the connection
        connection.close()
        self._write(batch, connection)  # cursor() connects afresh

    def _write(self, batch: list[_PendingRow], connection: Any) -> None:
        """One INSERT of the batch's rows, setting each one's pk (None: the row existed). Of
        rows with the same conflict key, the first is written and the others are duplicates."""
        first: dict[tuple, _PendingRow] = {}
        for pending in batch:
            pending.pk = None
            first.setdefault(pending.key, pending)
        rows = sorted(first.values(), key=lambda pending: pending.key)
        sql = _insert_statement(
            connection,
            self.model,
            rows=len(rows),
            conflict_fields=self.conflict_fields,
            returning=self._returning,
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [value for pending in rows for value in pending.values])
            returned = cursor.fetchall()
        for pk, *key in returned:
            first[tuple(key)].pk = pk
