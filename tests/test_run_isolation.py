"""Two test runs at once on one machine (two checkouts, CI beside a developer) share its Redis
without touching each other's keys or the developer's own (tests/isolation.py): both pass, a
key that is not theirs survives, and neither leaves a key behind."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parents[1]
SHARED = [os.environ.get(name, "") for name in ("LANDING_REDIS_URL", "CACHE_URL")]

pytestmark = pytest.mark.skipif(
    not all(url.startswith("redis://") for url in SHARED),
    reason="needs LANDING_REDIS_URL and CACHE_URL=redis://...: runs that share a Redis",
)


def test_two_runs_at_once_keep_to_their_own_keys():
    clients = [redis.Redis.from_url(url) for url in SHARED]
    foreign = f"a-developers-own-{secrets.token_hex(4)}"
    for client in clients:
        client.set(foreign, "keep")
    # Tests that write the landing store's and the cache's keys, and flush "their" Redis
    # between tests.
    command = [sys.executable, "-m", "pytest", "tests/channels/test_landing_flow.py",
               "-p", "no:randomly", "-p", "no:cacheprovider", "-k", "redis"]  # fmt: skip
    try:
        runs = [
            subprocess.Popen(
                command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            for _ in range(2)
        ]
        outputs = [run.communicate(timeout=600)[0] for run in runs]
        for run, output in zip(runs, outputs, strict=True):
            assert run.returncode == 0, output[-3000:]
            assert " passed" in output, output[-3000:]
            assert "skipped" not in output, output[-3000:]
        for client in clients:
            assert client.get(foreign) == b"keep"
            for run in runs:  # a run's prefix starts with its process id (tests/isolation.py)
                assert not list(client.scan_iter(match=f"scrm-test-{run.pid}x*", count=1000))
    finally:
        for client in clients:
            client.delete(foreign)
            client.close()
