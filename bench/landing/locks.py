"""What the bench database's connections are doing during a round, sampled from pg_stat_activity.

Each landing visit locks the code's DailyCounter rows (the daily caps) until it commits, so
visits to one code run one at a time through that critical section. Sampling the server's
connections shows it: how many wait on a row lock, and how many are "idle in transaction" (the
lock holder back in Python between two statements, building its next query or waiting for the
GIL).
"""

from __future__ import annotations

import threading
from collections import Counter
from contextlib import closing

import psycopg2

INTERVAL = 0.05  # seconds between samples: ~20 cheap queries a second, off the server's CPU
STATES = """
SELECT CASE
         WHEN wait_event_type = 'Lock' THEN 'waiting on a lock'
         WHEN state = 'idle in transaction' THEN 'idle in transaction'
         WHEN state = 'active' THEN 'running a statement'
         ELSE 'idle'
       END, count(*)
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
GROUP BY 1
"""


class ActivitySampler:
    """Samples in a thread between start() and stop(); `summary()` gives the mean number of
    the database's client connections in each state."""

    def __init__(self, params: dict[str, object]) -> None:
        self.params = params
        self.totals: Counter[str] = Counter()
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ActivitySampler:
        self._thread = threading.Thread(target=self._run, name="pg-activity", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return self.summary()

    def _run(self) -> None:
        conn = psycopg2.connect(**self.params)
        conn.autocommit = True
        with closing(conn), conn.cursor() as cur:
            while not self._stop.wait(INTERVAL):
                cur.execute(STATES)
                for state, count in cur.fetchall():
                    self.totals[state] += count
                self.samples += 1

    def summary(self) -> dict[str, float]:
        if not self.samples:
            return {}
        return {state: round(n / self.samples, 2) for state, n in sorted(self.totals.items())}
