"""Trailing-edge debouncing of background work queued from hot requests."""

from __future__ import annotations

import threading
import time
from typing import Any


class QueueWindow:
    """At most one queued task per process and `delay` seconds, run at the window's end.

    A hot request that leaves work behind (an inbox row, a buffered scan) calls open(): True
    means no task queued by this process starts after now, so the caller queues one with
    countdown=delay; False means one will start later than now and will find the work. Work
    committed this close (`margin`) to a queued task's start gets a task of its own, against
    clock skew between the web and worker hosts. After a failed publish the window is closed,
    so the next request tries again. queue() does all of it.
    """

    def __init__(self, margin: float = 0.05) -> None:
        self.margin = margin
        self._lock = threading.Lock()
        self._due = 0.0  # monotonic time at which the last queued task starts

    def covers_now(self) -> bool:
        """Whether a task queued by this process starts later than now, so work committed now
        is found by it. Unlocked: a stale answer only sends the caller to queue(), which
        decides under the lock."""
        return time.monotonic() < self._due - self.margin

    def open(self, delay: float) -> bool:
        now = time.monotonic()
        with self._lock:
            if now < self._due - self.margin:
                return False
            self._due = now + delay
            return True

    def close(self) -> None:
        with self._lock:
            self._due = 0.0

    def queue(self, task: Any, delay: float) -> None:
        """Queue `task` (a Celery task) to run in `delay` seconds unless one queued by this
        process will start later than now; a failed publish closes the window and raises."""
        if not self.open(delay):
            return
        try:
            task.apply_async(countdown=delay)
        except Exception:
            self.close()
            raise
