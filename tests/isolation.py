"""This test run's own names on the machine's shared services, so that two runs at once (two
checkouts, CI beside a developer) never touch each other's data, and nothing of the
developer's own is flushed: a PostgreSQL test database of its own, and a key prefix on every
Redis the run uses (cache, landing store, broker), whose keys are deleted at the end.

Nothing here needs a service: without DATABASE_URL, CACHE_URL, LANDING_REDIS_URL and
CELERY_BROKER_URL the suite runs on SQLite, a local-memory cache and eager Celery."""

from __future__ import annotations

import atexit
import os
import secrets

import redis

RUN_ID = f"{os.getpid()}x{secrets.token_hex(3)}"
KEY_PREFIX = f"scrm-test-{RUN_ID}"


def redis_prefix_delete(url: str, prefix: str) -> int:
    """Delete the keys starting with `prefix` from the Redis database at `url` (SCAN, not
    KEYS: the server stays responsive); the number deleted."""
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    deleted = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += client.delete(*batch)
                batch = []
        if batch:
            deleted += client.delete(*batch)
    except redis.RedisError:
        pass  # the service went away: nothing left to clean there
    finally:
        client.close()
    return deleted


def clean_at_exit(url: str, prefix: str = KEY_PREFIX) -> None:
    if url.startswith(("redis://", "rediss://")):
        atexit.register(redis_prefix_delete, url, prefix)
