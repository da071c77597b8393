"""Fixtures for tests against the real services: PostgreSQL, Redis and a Celery worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from scrm.celery import app as celery_app
from tests.isolation import RUN_ID

ROOT = Path(__file__).resolve().parents[2]
# This run's own worker logs (tests/isolation.py), kept after the run for a look.
WORKER_LOG = ROOT / f".pytest-worker-{RUN_ID}.log"


def _is_postgres() -> bool:
    return connection.vendor == "postgresql"


requires_postgres = pytest.mark.skipif(
    "postgres" not in os.environ.get("DATABASE_URL", ""),
    reason="needs PostgreSQL: set DATABASE_URL=postgres://...",
)
requires_broker = pytest.mark.skipif(
    not os.environ.get("CELERY_BROKER_URL") or "postgres" not in os.environ.get("DATABASE_URL", ""),
    reason="needs a real broker and PostgreSQL: set CELERY_BROKER_URL and DATABASE_URL",
)


def worker_env() -> dict[str, str]:
    """The environment of a Celery process on the test database and the configured broker."""
    db = connection.settings_dict
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "WECOM_RETRY_BASE_DELAY": "0",
        "PYTHONUNBUFFERED": "1",
    }


def _start_worker(
    queues: str, log_path: Path, name: str | None = None
) -> tuple[subprocess.Popen, object]:
    log = log_path.open("w")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "scrm", "worker", "-Q", queues,
         "-n", f"{name or queues.replace(',', '-')}@%h", "--pool", "threads",
         "--concurrency", "4", "--loglevel", "INFO", "--without-heartbeat", "--without-mingle",
         "--without-gossip"],
        cwd=ROOT, env=worker_env(), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    return worker, log


@pytest.fixture
def celery_worker_process(transactional_db) -> Iterator[subprocess.Popen]:
    """Real `celery worker` processes on the test database and the configured broker: one
    for the default queue and one for the fast welcome queue, as in production."""
    assert _is_postgres()
    celery_app.control.purge()  # messages left by an earlier run point at other rows
    workers = [
        _start_worker("default", WORKER_LOG),
        _start_worker("welcome", WORKER_LOG.with_suffix(".welcome.log")),
    ]
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for worker, _log in workers:
                if worker.poll() is not None:
                    raise RuntimeError("celery worker exited: " + WORKER_LOG.read_text())
            replies = celery_app.control.ping(timeout=0.5)
            if len(replies) >= len(workers):
                break
        else:
            raise RuntimeError("celery workers did not answer pings within 30 s")
        yield workers[0][0]
    finally:
        for worker, log in workers:
            worker.terminate()
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
            log.close()


def wait_for(predicate, *, timeout: float = 60.0, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
