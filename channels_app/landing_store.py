"""The landing page's store contract: what services.landing.landing_visit asks of the store it
runs a visit on. The rules (who is ranked, which members a returning device may keep, the lease
length, the return window, when a visit is busy) are decided once, in landing_visit; a store
only implements the atomic mechanism below. Two stores implement it:

- landing_db.DatabaseStore, the plain path: DailyCounter rows claimed with conditional
  updates, LandingSlot rows leased under row locks, a Scan row inserted; one transaction.
- landing_redis.RedisStore, the fast path (LANDING_REDIS_URL): one Lua script per visit,
  the scan appended to a stream that a task writes to the database in batches.

tests/channels/test_landing_store_contract.py runs the same tests on both.

Caps have one authority, the database's DailyCounter: `assigned` is the capacity taken (the
database path's claims, and the grants the Redis store reserves in small chunks and then
spends). A visit never takes capacity the counter did not give, so the two paths, in any
order, during and after a Redis outage, never exceed a cap together; an outage can only leave
granted capacity unspent.

The contract of `attempt(visit, ranked, record_busy=...)`, all or nothing:

1. Returning device: if the device's last visit of this code (with a slot) is within
   `visit.return_window`, no later visit has leased that slot, and its member is one of
   `visit.keepers`, the slot's lease is renewed (now + `visit.lease`) and the scan recorded
   as reused with that member and slot: kind "renew". No capacity is taken.
2. Otherwise the first member of `ranked` (in that order) that has capacity left today
   under its cap (or has none) is claimed; of that member's slots the one whose lease ends
   first, never-leased first, is leased; the scan is recorded: kind "claim".
3. When no ranked member can be claimed: with `record_busy` the scan is recorded without a
   member (kind "claim", staff None); without it nothing is done and the store's current
   loads come back: kind "busy" (the caller ranks again on them).
4. A store may answer "rerank" (nothing done) with loads the ranking did not know (the Redis
   store after seeding a day's loads from the database).

Loads are the day's new assignments per member as the store knows them: the ranking's input
(least loaded, weighted, the round-robin rotation), never the cap's authority.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from channels_app.assignment import Candidate
from channels_app.models import LandingSlot, LiveCode, PoolMember


@dataclass(slots=True)  # built on every visit: a frozen dataclass's __init__ costs more
class VisitRequest:
    """One visit as the rules prepared it; the same for every attempt and every store."""

    live_code: LiveCode
    members: tuple[PoolMember, ...]  # whom the visit may go to: enabled, the store's if any
    keepers: frozenset[int]  # staff ids a returning device may keep
    day: date  # the corp's local day of `now`: the day the caps count
    now: datetime
    device_key: str
    scan: dict[str, Any]  # the scan's columns that do not depend on the assignment
    lease: timedelta
    return_window: timedelta
    slots: Mapping[int, LandingSlot] = field(default_factory=dict)  # published, by id
    store_id: int | None = None  # a store (门店) visit

    @property
    def staff_ids(self) -> list[int]:
        return [m.staff_id for m in self.members]


@dataclass(slots=True)
class Outcome:
    kind: str  # "claim", "renew", "busy" or "rerank" (see the module docstring)
    staff_id: int | None = None
    slot_id: int | None = None
    slot: LandingSlot | None = None  # when the store has the row at hand
    loads: dict[int, int] = field(default_factory=dict)  # busy/rerank: the members' loads
    free_slots: int | None = None  # the member's slots not leased after this visit; None: ask
    scan: Any = None  # the Scan row when the store wrote it at once (the database store)


class LandingStore(Protocol):
    def loads(self, visit: VisitRequest) -> dict[int, int]:
        """The day's loads of `visit.members` by staff id, as fresh as the store keeps them."""
        ...

    def attempt(
        self, visit: VisitRequest, ranked: list[Candidate], *, record_busy: bool
    ) -> Outcome:
        """One atomic attempt at the visit (see the module docstring)."""
        ...

    def free_slots(self, *, live_code_id: int, staff_id: int, now: datetime) -> int:
        """The member's published slots whose lease is over at `now` (or never leased)."""
        ...
