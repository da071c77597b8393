"""Rate limits of the landing page, so one visitor cannot drain a code's daily caps: at most
LANDING_RATE_LIMIT_PER_IP new assignments per visitor (salted IP hash) and code in each
LANDING_RATE_LIMIT_WINDOW seconds and LANDING_RATE_LIMIT_PER_IP_24H in each 24 hours (the
short window alone would let one address take 2,880 a day), and at most
LANDING_RATE_LIMIT_PER_CODE per code and minute (0 turns a limit off). Rules of
services.landing.landing_visit, above the store, so the database and the Redis store obey the
same ones.

Counted in the shared cache (CACHE_URL; per process without one) in fixed windows, with an
atomic add/incr before the visit: concurrent requests of one visitor cannot all pass a check
made before any of them counted. A visit that took no capacity (a returning device's renewal,
a busy answer, an error) gives its counts back. A cache outage lets visits through (the caps
still hold in the database): the page never fails because the limiter did.
"""

from __future__ import annotations

import logging
import math
import time

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)

PREFIX = "scrm:landing-rate:"
CODE_WINDOW_SECONDS = 60
DAY_WINDOW_SECONDS = 86400  # a budget of 24 hours, not a corp's local day


class LandingRateLimited(Exception):
    """The visit is refused: `limit` is "ip" or "code"; retry after `retry_after` seconds."""

    def __init__(self, limit: str, retry_after: int) -> None:
        super().__init__(f"landing rate limit per {limit}")
        self.limit = limit
        self.retry_after = retry_after


def _count(key: str, timeout: int) -> int:
    """The key's count after adding one: cache.add opens the window, incr is atomic."""
    if cache.add(key, 1, timeout):
        return 1
    try:
        return cache.incr(key)
    except ValueError:  # expired between the two calls: a new window
        cache.add(key, 1, timeout)
        return 1


def landing_quota_take(*, live_code_id: int, ip_hash: str) -> tuple[str, ...]:
    """Count one assignment of the visitor against both limits; the keys counted, for
    landing_quota_return. Raises LandingRateLimited (and counts nothing) when over one."""
    per_ip, window = settings.LANDING_RATE_LIMIT_PER_IP, settings.LANDING_RATE_LIMIT_WINDOW
    per_ip_day = settings.LANDING_RATE_LIMIT_PER_IP_24H
    per_code = settings.LANDING_RATE_LIMIT_PER_CODE
    limits = []
    now = time.time()
    if per_ip > 0 and window > 0:
        limits.append(("ip", f"{PREFIX}ip:{live_code_id}:{ip_hash}:{int(now // window)}",
                       per_ip, window))  # fmt: skip
    if per_ip_day > 0:
        day = int(now // DAY_WINDOW_SECONDS)
        limits.append(("ip", f"{PREFIX}ip24:{live_code_id}:{ip_hash}:{day}", per_ip_day,
                       DAY_WINDOW_SECONDS))  # fmt: skip
    if per_code > 0:
        minute = int(now // CODE_WINDOW_SECONDS)
        limits.append(("code", f"{PREFIX}code:{live_code_id}:{minute}", per_code,
                       CODE_WINDOW_SECONDS))  # fmt: skip
    taken: list[str] = []
    try:
        for name, key, limit, seconds in limits:
            taken.append(key)
            if _count(key, seconds + 5) > limit:
                landing_quota_return(taken)
                raise LandingRateLimited(
                    name, retry_after=max(1, math.ceil(seconds - now % seconds))
                )
    except LandingRateLimited:
        raise
    except Exception:  # the cache's errors vary by backend; the caps hold without it
        logger.warning("landing rate limits unavailable (cache error); visit let through",
                       exc_info=True)  # fmt: skip
        return ()
    return tuple(taken)


def landing_quota_return(keys: list[str] | tuple[str, ...]) -> None:
    """Give back what landing_quota_take counted, for a visit that took no capacity."""
    for key in keys:
        try:
            cache.decr(key)
        except ValueError:  # the window is over: nothing to give back
            pass
        except Exception:
            logger.warning("landing rate limit not given back (cache error)", exc_info=True)
