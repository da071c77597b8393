"""COPY into the benchmark database: row buffers, and the constraints and indexes taken off
the loaded tables during the load and put back (and so checked) afterwards.

Django's foreign keys are DEFERRABLE INITIALLY DEFERRED: loaded with them in place, every
row would queue a check until commit (millions of queued trigger events, gigabytes of
memory) or, committed in batches, cost a lookup per row. Taken off and added back, each is
validated by one join over the whole table, which also proves that the generator's rows
reference each other correctly; the unique constraints likewise prove it wrote each add,
first source and attribution once.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterable

from psycopg2 import sql

# One buffer flush per ~4 MB of text: about 20,000 scan rows, a few MB of Python strings.
FLUSH_BYTES = 4 << 20
NULL = "\\N"


class CopyBuffer:
    """Rows (tab-separated text lines, already escaped) for one table, sent with COPY
    whenever the buffer holds FLUSH_BYTES."""

    def __init__(self, cursor, table: str, columns: Iterable[str]) -> None:
        self.cursor = cursor
        self.table = table
        self.columns = tuple(columns)
        self.sql = f"COPY {table} ({', '.join(self.columns)}) FROM STDIN"
        self.lines: list[str] = []
        self.size = 0
        self.rows = 0

    def add(self, line: str) -> None:
        self.lines.append(line)
        self.size += len(line)
        self.rows += 1
        if self.size >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.lines:
            self.cursor.copy_expert(self.sql, io.StringIO("".join(self.lines)))
            self.lines.clear()
            self.size = 0


def row(*values: object) -> str:
    """One COPY line; None is NULL. For the small tables: the big ones format their lines with
    one f-string each, which is several times faster."""
    return "\t".join(NULL if v is None else _text(v) for v in values) + "\n"


def _text(value: object) -> str:
    if value is True:
        return "t"
    if value is False:
        return "f"
    text = str(value)
    if any(c in text for c in "\t\n\\\r"):
        text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
        text = text.replace("\r", "\\r")
    return text


# -- constraints and indexes -------------------------------------------------------------------


def constraints_drop(cursor, tables: list[str]) -> list[str]:
    """Drop every constraint but the primary keys, and every other index, of `tables`;
    returns the statements that recreate them, indexes first, foreign keys last."""
    cursor.execute(
        """
        SELECT c.conrelid::regclass::text, c.conname, c.contype,
               pg_get_constraintdef(c.oid)
        FROM pg_constraint c
        WHERE c.conrelid = ANY (%s::regclass[]) AND c.contype <> 'p'
        ORDER BY c.contype = 'f', c.conrelid::regclass::text, c.conname
        """,
        (tables,),
    )
    constraints = cursor.fetchall()
    cursor.execute(
        """
        SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
        FROM pg_index i
        WHERE i.indrelid = ANY (%s::regclass[]) AND NOT i.indisprimary
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
        ORDER BY 1
        """,
        (tables,),
    )
    indexes = cursor.fetchall()
    for table, name, _kind, _definition in reversed(constraints):  # foreign keys first
        cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _definition in indexes:
        cursor.execute(f"DROP INDEX {name}")
    recreate = [definition for _name, definition in indexes]
    recreate += [
        f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}'
        for table, name, _kind, definition in constraints
    ]
    return recreate


def statements_run(cursor, statements: list[str], *, log=print) -> float:
    """Run statements one by one, logging the slow ones; returns the seconds spent."""
    started = time.perf_counter()
    for statement in statements:
        began = time.perf_counter()
        cursor.execute(statement)
        spent = time.perf_counter() - began
        if spent > 5:
            log(f"    {spent:5.1f} s  {statement[:110]}")
    return time.perf_counter() - started


def sequences_set(cursor, tables: list[str]) -> None:
    """Move each table's id sequence (identity column) past the ids COPY wrote, so the
    product's own inserts continue after them."""
    for table in tables:
        query = sql.SQL(
            "SELECT setval(pg_get_serial_sequence(%s, 'id'), "
            "COALESCE((SELECT max(id) FROM {}), 0) + 1, false)"
        ).format(sql.Identifier(table))
        cursor.execute(query, (table,))
