"""A day is the corp's local day (DESIGN.md): times are stored in UTC and counted, filtered and
shown by the corp's own time zone (Corp.time_zone), never by settings.TIME_ZONE nor by the
database session's zone (which `__date` lookups would use).

`where` is a Corp or a tzinfo. Day bounds are UTC and half-open, [start, end), so queries
compare the stored column with constants and keep its index. Querysets spanning corps (admin
lists, the API without ?corp=) compare each row with its own corp's day: `corp_days_q` and
`per_corp` spell that out per time zone in use, kept per process and read again when a Corp
changes in any process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from time import monotonic
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import Case, Field, Q, Value, When
from django.db.models.functions import TruncDate
from django.utils import timezone

from scrm.shared_version import shared_version_bump, shared_versions

if TYPE_CHECKING:
    from scrm.wecom.models import Corp


def zone(where: Corp | tzinfo) -> tzinfo:
    return where if isinstance(where, tzinfo) else where.tzinfo


def today(where: Corp | tzinfo, *, now: datetime | None = None) -> date:
    """The local day it is now (or at `now`)."""
    return local_date(now or timezone.now(), where)


def local_datetime(moment: datetime, where: Corp | tzinfo) -> datetime:
    return moment.astimezone(zone(where))


def local_date(moment: datetime, where: Corp | tzinfo) -> date:
    """The local day `moment` falls on."""
    return moment.astimezone(zone(where)).date()


def local_display(moment: datetime | None, where: Corp | tzinfo, *, seconds: bool = False) -> str:
    """Local time to the minute (or second) with the zone's abbreviation or offset, as in
    "2026-12-06 09:30 CST"; "" for None."""
    if moment is None:
        return ""
    pattern = "%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z"
    return moment.astimezone(zone(where)).strftime(pattern)


def day_start(day: date, where: Corp | tzinfo, *, days_later: int = 0) -> datetime | None:
    """The UTC start of a local day (or of the day `days_later`); None beyond what a datetime
    holds (9999-12-31 plus a day, 0001-01-01 east of UTC), where a bound bounds nothing."""
    try:
        start = datetime.combine(day, time.min, tzinfo=zone(where)) + timedelta(days=days_later)
        return start.astimezone(UTC)
    except OverflowError:
        return None


def days_bounds(
    first: date | None, last: date | None, where: Corp | tzinfo
) -> tuple[datetime | None, datetime | None]:
    """UTC [start, end) of the local days first..last (both included); None: unbounded."""
    start = None if first is None else day_start(first, where)
    end = None if last is None else day_start(last, where, days_later=1)
    return start, end


def day_bounds(day: date, where: Corp | tzinfo) -> tuple[datetime | None, datetime | None]:
    """UTC [start, end) of one local day."""
    return days_bounds(day, day, where)


def week_start(day: date) -> date:
    """The Monday of `day`'s week (weeks run Monday to Sunday, as in China)."""
    return day - timedelta(days=day.weekday())


def local_day(field: str, where: Corp | tzinfo) -> TruncDate:
    """The local day of a datetime column, as a database expression (to group by)."""
    return TruncDate(field, tzinfo=zone(where))


# -- querysets spanning corps ---------------------------------------------------------------------

# Time zones change rarely (a corp is created or edited): each process keeps them, and reads
# them again when a Corp was saved or deleted in any process (the shared version below, checked
# at most every CORP_ZONES_CHECK_SECONDS) and at least every CORP_ZONES_SECONDS.
CORP_ZONES_SECONDS = 300.0
CORP_ZONES_CHECK_SECONDS = 1.0
CORP_ZONES_VERSION_KEY = "corp-zones:v"


@dataclass(frozen=True)
class _Zones:
    expires: float
    check: float
    version: tuple
    by_pk: dict[int, str]
    by_corp_id: dict[str, str]


_zones: _Zones | None = None


def corp_zones_clear(**_: Any) -> None:
    global _zones
    _zones = None


def corp_zones_changed(**_: Any) -> None:
    """A Corp was saved or deleted: this process reads the zones again at once, every other
    process once the change committed (see scrm.shared_version)."""
    corp_zones_clear()
    shared_version_bump(CORP_ZONES_VERSION_KEY)
    transaction.on_commit(corp_zones_clear)


def _corp_zones(*, fresh: bool = False) -> _Zones:
    global _zones
    now = monotonic()
    zones = _zones
    if not fresh and zones is not None and zones.expires > now:
        if zones.check > now:
            return zones
        version = shared_versions(CORP_ZONES_VERSION_KEY)
        if version == zones.version:
            _zones = replace(zones, check=now + CORP_ZONES_CHECK_SECONDS)
            return _zones
    from scrm.wecom.models import Corp

    version = shared_versions(CORP_ZONES_VERSION_KEY)  # read before the rows it describes
    rows = list(Corp.objects.order_by().values_list("pk", "corp_id", "time_zone"))
    _zones = _Zones(
        expires=now + CORP_ZONES_SECONDS,
        check=now + CORP_ZONES_CHECK_SECONDS,
        version=version,
        by_pk={pk: name for pk, _corp_id, name in rows},
        by_corp_id={corp_id: name for _pk, corp_id, name in rows},
    )
    return _zones


def zones_in_use() -> list[str]:
    """The distinct time zones of the corps, sorted (one query a minute per process)."""
    return sorted(set(_corp_zones().by_pk.values()))


def corp_zone(corp_pk: int | None) -> tzinfo:
    """The time zone of the corp with this primary key, without loading the corp; UTC for
    None (a row without a corp), and for a pk no corp has."""
    if corp_pk is None:
        return UTC
    name = _corp_zones().by_pk.get(corp_pk) or _corp_zones(fresh=True).by_pk.get(corp_pk)
    return ZoneInfo(name) if name else UTC


def corp_zone_name(corp_id: str) -> str | None:
    """The time zone name of the corp with this WeCom corp ID; None when there is none."""
    name = _corp_zones().by_corp_id.get(corp_id)
    return name or _corp_zones(fresh=True).by_corp_id.get(corp_id)


def _zone_cases(corp: str, zones: Iterable[str] | None) -> list[tuple[Q, tzinfo]]:
    """(condition, zone) pairs covering every row: all zones but the last by name, the last
    for the rest, so a corp whose zone this process has not seen yet still gets one."""
    names = sorted(set(zones)) if zones is not None else zones_in_use()
    if len(names) <= 1:
        return [(Q(), ZoneInfo(names[0]) if names else UTC)]
    cases = [(Q(**{f"{corp}__time_zone": name}), ZoneInfo(name)) for name in names[:-1]]
    return [*cases, (~Q(**{f"{corp}__time_zone__in": names[:-1]}), ZoneInfo(names[-1]))]


def per_corp(
    value: Callable[[tzinfo], Any], *, output_field: Field, corp: str = "corp"
) -> Case | Value:
    """An expression worth value(zone) on each row, zone being the time zone of the row's
    corp (reached through `corp`): a constant when all corps share one zone."""
    cases = _zone_cases(corp, None)
    if len(cases) == 1:
        return Value(value(cases[0][1]), output_field=output_field)
    *named, (_rest, last) = cases
    whens = [When(condition, then=Value(value(tz))) for condition, tz in named]
    return Case(*whens, default=Value(value(last)), output_field=output_field)


def corp_days_q(
    field: str,
    first: date | None,
    last: date | None,
    *,
    corp: str = "corp",
    zones: Iterable[str] | None = None,
) -> Q:
    """Rows whose datetime `field` lies in the local days first..last (None: open) of the
    row's own corp; `zones` narrows the zones considered (the one corp a query names)."""
    combined = Q()
    for condition, tz in _zone_cases(corp, zones):
        start, end = days_bounds(first, last, tz)
        bounds = Q(**{f"{field}__gte": start}) if start is not None else Q()
        if end is not None:
            bounds &= Q(**{f"{field}__lt": end})
        combined |= condition & bounds
    return combined


def corp_week_q(
    field: str, *, weeks_ago: int = 0, corp: str = "corp", now: datetime | None = None
) -> Q:
    """Rows whose datetime `field` lies in the current local week (Monday to Sunday) of the
    row's own corp, or in the week `weeks_ago` weeks before it: each corp's "this week"
    starts on its own Monday."""
    now = now or timezone.now()  # one clock for every zone
    combined = Q()
    for condition, tz in _zone_cases(corp, None):
        monday = week_start(today(tz, now=now)) - timedelta(weeks=weeks_ago)
        start, end = days_bounds(monday, monday + timedelta(days=6), tz)
        bounds = Q(**{f"{field}__gte": start}) if start is not None else Q()
        if end is not None:
            bounds &= Q(**{f"{field}__lt": end})
        combined |= condition & bounds
    return combined
