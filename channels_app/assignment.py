"""The assignment engine: which staff member gets the next customer. Pure: no database, no
clock; services/assignment.py feeds it today's counters and claims the counter of the first
candidate it can with a conditional update, so a cap holds under any concurrency.

Strategies:
- round robin: eligible staff in a fixed order, the rotation index taken from today's total;
- weighted: the lowest (load + 1) / weight, so over a day staff receive customers in
  proportion to their weights;
- least loaded: the lowest load / cap (uncapped staff count as UNCAPPED_CAPACITY), optionally
  scaled up for staff whose recent average first reply is slow.
Caps are never exceeded: a candidate at or above its cap is not eligible. Backup staff are used
only when no primary is eligible (capped, off shift, left or disabled); they ignore shifts but
not caps.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

UNCAPPED_CAPACITY = 200
SLOW_REPLY_SCALE_MINUTES = 60  # each hour of average first reply doubles the score
SLOW_REPLY_MAX_FACTOR = 4.0


@dataclass(frozen=True)
class Candidate:
    staff_id: int
    weight: int = 1
    cap: int | None = None
    load: int = 0
    is_backup: bool = False
    on_shift: bool = True
    active: bool = True
    avg_reply_minutes: float | None = None

    @property
    def has_room(self) -> bool:
        return self.cap is None or self.load < self.cap


def eligible(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Primaries on shift with room; else backups with room. Ordered by staff id."""
    pool = [c for c in candidates if c.active and c.has_room]
    primaries = [c for c in pool if not c.is_backup and c.on_shift]
    chosen = primaries or [c for c in pool if c.is_backup]
    return sorted(chosen, key=lambda c: c.staff_id)


def _least_loaded_score(candidate: Candidate, penalize_slow_reply: bool) -> float:
    capacity = candidate.cap or UNCAPPED_CAPACITY
    score = (candidate.load + 1) / capacity
    if penalize_slow_reply and candidate.avg_reply_minutes:
        factor = 1 + candidate.avg_reply_minutes / SLOW_REPLY_SCALE_MINUTES
        score *= min(factor, SLOW_REPLY_MAX_FACTOR)
    return score


def rank_staff(
    candidates: Sequence[Candidate],
    *,
    strategy: str,
    rotation: int = 0,
    penalize_slow_reply: bool = False,
) -> list[Candidate]:
    """Eligible candidates, most preferred first. The service takes the first whose counter it
    can claim, so concurrent requests spread over the next best instead of queueing on one."""
    pool = eligible(candidates)
    if not pool:
        return []
    if strategy == "round_robin":
        start = rotation % len(pool)
        return pool[start:] + pool[:start]
    if strategy == "weighted":
        return sorted(pool, key=lambda c: ((c.load + 1) / max(c.weight, 1), c.staff_id))
    return sorted(pool, key=lambda c: (_least_loaded_score(c, penalize_slow_reply), c.staff_id))


def pick_staff(
    candidates: Sequence[Candidate],
    *,
    strategy: str,
    rotation: int = 0,
    penalize_slow_reply: bool = False,
) -> Candidate | None:
    """The candidate to assign, or None when nobody (backups included) may take a customer."""
    ranked = rank_staff(
        candidates, strategy=strategy, rotation=rotation, penalize_slow_reply=penalize_slow_reply
    )
    return ranked[0] if ranked else None


# -- shifts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shift:
    """Weekdays are ISO (1 Monday .. 7 Sunday). end <= start runs past midnight into the next
    day; start == end covers the whole day."""

    weekdays: frozenset[int]
    start: time
    end: time
    member_ids: frozenset[int]

    def covers(self, moment: datetime) -> bool:
        clock, weekday = moment.time(), moment.isoweekday()
        if self.start == self.end:
            return weekday in self.weekdays
        if self.start < self.end:
            return weekday in self.weekdays and self.start <= clock < self.end
        yesterday = (moment - timedelta(days=1)).isoweekday()
        return (weekday in self.weekdays and clock >= self.start) or (
            yesterday in self.weekdays and clock < self.end
        )


@dataclass(frozen=True)
class SpecialDate:
    """A holiday (closed) or special window on one local date, replacing the weekly shifts."""

    day: date
    closed: bool
    start: time | None
    end: time | None
    member_ids: frozenset[int]

    def covers(self, moment: datetime) -> bool:
        if self.closed or moment.date() != self.day:
            return False
        if self.start is None or self.end is None:
            return True
        return self.start <= moment.time() < self.end


def members_on_duty(
    shifts: Sequence[Shift], special_dates: Sequence[SpecialDate], local_now: datetime
) -> frozenset[int] | None:
    """Pool member ids on duty at `local_now` (the corp's local time); None = no schedule,
    everyone is on duty. A special date for today replaces the weekly shifts."""
    today = [s for s in special_dates if s.day == local_now.date()]
    if today:
        return frozenset().union(*(s.member_ids for s in today if s.covers(local_now)))
    if not shifts:
        return None
    return frozenset().union(*(s.member_ids for s in shifts if s.covers(local_now)))
