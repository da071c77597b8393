"""Versions in the shared cache, so that every process learns of a change, not only the one
that saved it. A per-process cache (the landing page's configs, the corps' time zones) keeps
the versions it was built under and compares them with the shared ones before it trusts itself;
a change bumps its key once its transaction committed. The shared cache is Django's
(CACHE_URL: Redis in production; per-process memory in the embedded default, one process)."""

from __future__ import annotations

import logging
import uuid

from django.core.cache import cache
from django.db import transaction

logger = logging.getLogger(__name__)

UNKNOWN = ("unknown",)  # what a read gives while the shared cache is down: never equal to a
# version read before, so a cache built earlier is kept only until its own time-to-live


def shared_version_bump(key: str) -> None:
    """Give `key` a new version once the current transaction commits (at once outside one)."""

    def bump() -> None:
        try:
            cache.set(key, uuid.uuid4().hex, timeout=None)
        except Exception:  # the shared cache is down: other processes reload on their TTL
            logger.warning("shared version %s not bumped", key, exc_info=True)

    transaction.on_commit(bump)


def shared_versions(*keys: str) -> tuple:
    """The current versions of `keys`, in one cache round trip."""
    try:
        found = cache.get_many(keys)
    except Exception:
        logger.warning("shared versions %s not read", keys, exc_info=True)
        return UNKNOWN
    return tuple(found.get(key) for key in keys)
