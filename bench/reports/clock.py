"""Time for the generator: the 365 local days of the data set, times as integer epoch seconds
(UTC), their text for COPY, and the seasonality of adds and scans.

Times stay integers while the generator works (a datetime per event would cost about ten
times as much at 9 million rows); `Clock.text` turns one into a timestamptz literal with a
per-day prefix table instead of strftime.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DAY = 86_400
# Adds by local hour: quiet at night, a lunch peak, the evening peak of Moments and Douyin.
HOUR_WEIGHTS = (
    (0, 1.2), (1, 0.6), (2, 0.3), (3, 0.2), (4, 0.2), (5, 0.3), (6, 0.8), (7, 1.8),
    (8, 3.0), (9, 4.2), (10, 4.8), (11, 5.2), (12, 6.0), (13, 5.6), (14, 4.8), (15, 4.6),
    (16, 4.6), (17, 4.8), (18, 5.2), (19, 6.2), (20, 7.4), (21, 7.8), (22, 6.0), (23, 3.0),
)  # fmt: skip
# Monday first: weekends bring more adds (store traffic, leisure scrolling).
WEEKDAY_WEIGHTS = (0.90, 0.92, 0.95, 0.97, 1.05, 1.30, 1.25)
# "HH:MM:SS+00" for every second of a day (5 MB): a lookup instead of formatting 10 million
# times.
CLOCK_FACE = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}+00" for s in range(DAY)]


@dataclass
class Clock:
    """The data's local days first..last (inclusive) in the corp's time zone."""

    first: date
    last: date
    tz_name: str = "Asia/Shanghai"
    day_starts: list[int] = field(init=False)  # epoch seconds of each local day's start
    _prefix: list[str] = field(init=False)
    _prefix_base: int = field(init=False)

    def __post_init__(self) -> None:
        tz = ZoneInfo(self.tz_name)
        count = (self.last - self.first).days + 1
        self.day_starts = [
            int(datetime.combine(self.first + timedelta(days=n), time.min, tz).timestamp())
            for n in range(count + 1)
        ]
        # UTC date text per UTC day, from well before the window (codes, staff, slots are
        # created earlier) to its end.
        self._prefix_base = self.start // DAY - 120
        days = self.end // DAY - self._prefix_base + 2
        self._prefix = [
            datetime.fromtimestamp((self._prefix_base + n) * DAY, UTC).strftime("%Y-%m-%d ")
            for n in range(days)
        ]

    @property
    def start(self) -> int:
        return self.day_starts[0]

    @property
    def end(self) -> int:
        """The first second after the window: no event of the data set reaches it."""
        return self.day_starts[-1]

    @property
    def days(self) -> int:
        return len(self.day_starts) - 1

    def text(self, seconds: int) -> str:
        """A timestamptz literal (UTC) for COPY."""
        d, r = divmod(seconds, DAY)
        return self._prefix[d - self._prefix_base] + CLOCK_FACE[r]

    def text_us(self, micros: int) -> str:
        """A timestamptz literal with microseconds (scans keep the visit's exact time)."""
        seconds, us = divmod(micros, 1_000_000)
        d, r = divmod(seconds, DAY)
        return f"{self._prefix[d - self._prefix_base]}{CLOCK_FACE[r][:8]}.{us:06d}+00"


def day_weights(clock: Clock, rng: random.Random) -> list[float]:
    """A weight per local day: a growing business (x0.7 to x1.3 over the year), weekends
    busier, a dozen campaign days (618, Double 11 and the like) at two to three times the
    usual, and some day-to-day noise."""
    weights = []
    for n in range(clock.days):
        day = clock.first + timedelta(days=n)
        trend = 0.7 + 0.6 * n / max(1, clock.days - 1)
        weights.append(trend * WEEKDAY_WEIGHTS[day.weekday()] * rng.uniform(0.85, 1.15))
    for n in rng.sample(range(clock.days), min(12, clock.days)):
        weights[n] *= rng.uniform(2.0, 3.0)
    return weights


def split_exact(total: int, weights: list[float]) -> list[int]:
    """`total` split in proportion to `weights`, summing exactly to `total` (largest
    remainders get the leftovers)."""
    scale = total / sum(weights)
    shares = [w * scale for w in weights]
    counts = [int(s) for s in shares]
    short = total - sum(counts)
    by_remainder = sorted(range(len(shares)), key=lambda i: counts[i] - shares[i])
    for i in by_remainder[:short]:
        counts[i] += 1
    return counts


def times_of_day(clock: Clock, day: int, count: int, rng: random.Random) -> list[int]:
    """`count` sorted epoch seconds on local day `day`, by the hourly profile."""
    hours = rng.choices([h for h, _ in HOUR_WEIGHTS], weights=[w for _, w in HOUR_WEIGHTS], k=count)
    start = clock.day_starts[day]
    return sorted(start + h * 3600 + int(rng.random() * 3600) for h in hours)
