"""Reads of the channels domain, shared by the admin, the API and exports. Every count is
computed in the database (annotations over indexed columns), never in a Python loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta, tzinfo
from time import monotonic
from typing import Any, NamedTuple

from django.conf import settings
from django.db import transaction
from django.db.models import (
    Case,
    Count,
    DateField,
    DateTimeField,
    Exists,
    F,
    IntegerField,
    OuterRef,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.module_loading import import_string

from channels_app.assignment import Shift, SpecialDate
from channels_app.models import (
    Attribution,
    Channel,
    DailyCounter,
    LandingSlot,
    LiveCode,
    PoolMember,
    Scan,
    ScheduleOverride,
    ScheduleRule,
    Store,
)
from contacts.models import Staff
from scrm import days
from scrm.lru import LRU
from scrm.shared_version import shared_version_bump, shared_versions
from scrm.wecom.models import Corp


def live_code_for_landing(slug: str) -> LiveCode | None:
    """The code behind /l/<slug>/ with its corp and channel, and whether it has stores and a
    schedule, in one query."""
    return (
        LiveCode.objects.select_related("corp", "channel")
        .annotate(
            has_stores=Exists(Store.objects.filter(live_code=OuterRef("pk"))),
            has_schedule=Exists(ScheduleRule.objects.filter(live_code=OuterRef("pk")))
            | Exists(ScheduleOverride.objects.filter(live_code=OuterRef("pk"))),
        )
        .filter(slug=slug)
        .first()
    )


def schedule_read(
    live_code: LiveCode, *, day: date | None = None, since: date | None = None
) -> tuple[list[Shift], list[SpecialDate]]:
    """The code's weekly shifts and its special dates (of `day`, or from `since` on), as the
    assignment engine takes them. Two queries plus one per kind for the members."""
    overrides = live_code.overrides.all()
    if day is not None:
        overrides = overrides.filter(date=day)
    if since is not None:
        overrides = overrides.filter(date__gte=since)
    shifts = [
        Shift(
            weekdays=frozenset(int(d) for d in rule.weekdays),
            start=rule.start_time,
            end=rule.end_time,
            member_ids=frozenset(m.pk for m in rule.members.all()),
        )
        for rule in live_code.schedules.prefetch_related("members")
    ]
    specials = [
        SpecialDate(
            day=item.date,
            closed=item.closed,
            start=item.start_time,
            end=item.end_time,
            member_ids=frozenset(m.pk for m in item.members.all()),
        )
        for item in overrides.prefetch_related("members")
    ]
    return shifts, specials


@dataclass(frozen=True)
class LandingConfig:
    """What a landing visit reads but does not write: the code (live_code_for_landing's), its
    enabled pool members with their staff in pool order, its schedule (special dates from
    yesterday on) and its published landing slots by id. Shared read-only by threads."""

    live_code: LiveCode
    members: tuple[PoolMember, ...]
    shifts: tuple[Shift, ...] = ()
    specials: tuple[SpecialDate, ...] = ()
    slots: dict[int, LandingSlot] = field(default_factory=dict)
    # Derived from members, once per config instead of on every visit:
    staff_by_id: dict[int, Staff] = field(default_factory=dict)
    active_staff_ids: frozenset[int] = frozenset()  # members who may keep taking visitors
    # Rendered landing pages, filled by the view: a campaign serves the same few pages.
    pages: LRU[tuple, str] = field(default_factory=lambda: LRU(PAGES_PER_CONFIG))


# Rendered pages kept per config (language x member x slot x status), ~5 kB each; a config
# lives seconds, so only the codes visited right now hold pages.
PAGES_PER_CONFIG = 256

# Per process: the landing page is the hottest read path, and the code and its pool change
# rarely. Saving any of the models they come from (channels_app.apps) clears this process's
# cache at once and, on commit, bumps the code's version in the shared cache (CACHE_URL),
# which every process compares at most every LANDING_CONFIG_CHECK_SECONDS: a cache GET costs
# about a quarter of a Redis-path visit, so it is not paid per visit. Changes that bypass save()
# (queryset updates) show within LANDING_CONFIG_SECONDS.
LANDING_CONFIG_SECONDS = 5.0
LANDING_CONFIG_CHECK_SECONDS = 0.5
LANDING_CONFIGS_CACHED = 512  # codes per process
VERSION_KEY = "landing-config:v"  # + ":<live code id>"; plain: every code's (channel, staff, corp)


class _Cached(NamedTuple):
    config: LandingConfig
    version: tuple
    expires: float  # monotonic: reload whatever the version
    check: float  # monotonic: compare the version again


_landing_configs: LRU[str, _Cached] = LRU(LANDING_CONFIGS_CACHED)


def landing_config_cache_clear(**_: Any) -> None:
    """Forget this process's landing configs (tests; and the saving process at once)."""
    _landing_configs.clear()


def landing_config_changed(*, live_code_id: int | None) -> None:
    """A model a landing config is read from changed: this process reloads at once, every
    process once the transaction committed and its next check is due. `live_code_id` None:
    every code's (a channel, staff member or corp)."""
    _landing_configs.clear()
    shared_version_bump(VERSION_KEY if live_code_id is None else f"{VERSION_KEY}:{live_code_id}")
    transaction.on_commit(_landing_configs.clear)


def _landing_version(live_code_id: int) -> tuple:
    """The shared versions a config of this code depends on: one cache round trip."""
    return shared_versions(VERSION_KEY, f"{VERSION_KEY}:{live_code_id}")


def landing_config(slug: str) -> LandingConfig | None:
    """The landing code behind `slug` and what its visits read, from this process's cache
    while it is fresh (three to five queries when it is not); None for an unknown slug."""
    now = monotonic()
    cached = _landing_configs.get(slug)
    version = None
    if cached is not None:
        if cached.expires > now and cached.check > now:
            return cached.config
        # Read before the rows: a change committed after this read bumps past it.
        version = _landing_version(cached.config.live_code.pk)
        if cached.expires > now and version == cached.version:
            _landing_configs[slug] = cached._replace(check=now + LANDING_CONFIG_CHECK_SECONDS)
            return cached.config
    live_code = live_code_for_landing(slug)
    if live_code is None:
        _landing_configs.pop(slug, None)
        return None
    if cached is None or cached.config.live_code.pk != live_code.pk:
        # A code not cached yet: its id names the key, so the version is read after its row
        # (a change to that row in between shows within LANDING_CONFIG_SECONDS).
        version = _landing_version(live_code.pk)
    members = tuple(live_code.pool.filter(is_enabled=True).select_related("staff").order_by("pk"))
    shifts, specials = [], []
    if live_code.has_schedule:
        since = days.today(live_code.corp) - timedelta(days=1)
        shifts, specials = schedule_read(live_code, since=since)
    slots = {}
    if live_code.mode == LiveCode.Mode.LANDING:
        slots = {slot.pk: slot for slot in live_code.slots.exclude(config_id="").order_by("pk")}
    active = frozenset(m.staff_id for m in members if m.staff.status == Staff.Status.ACTIVE)
    config = LandingConfig(
        live_code, members, tuple(shifts), tuple(specials), slots,
        staff_by_id={m.staff_id: m.staff for m in members}, active_staff_ids=active,
    )  # fmt: skip
    now = monotonic()
    _landing_configs[slug] = _Cached(config, version, now + LANDING_CONFIG_SECONDS,
                                     now + LANDING_CONFIG_CHECK_SECONDS)  # fmt: skip
    return config


def customers_with_first_source_names(queryset: QuerySet) -> QuerySet:
    """Customers annotated with their first-add channel's name and code and live code's name,
    through the first add's Attribution (contacts does not import channels_app)."""
    attribution = "first_source__add_event__attribution__"
    return queryset.annotate(
        first_channel_name=F(f"{attribution}channel__name"),
        first_channel_code=F(f"{attribution}channel__code"),
        first_live_code_name=F(f"{attribution}live_code__name"),
    )


def _local_day_of_each_corp(queryset: QuerySet, day: date | None) -> QuerySet:
    """`queryset` (rows with a `corp`) with aliases `local_day`, `local_day_start` and
    `local_day_end`: the day (default: today) of each row's own corp and its UTC bounds."""
    now = timezone.now()  # one clock for every zone and bound

    def local(tz: tzinfo) -> date:
        return day or days.today(tz, now=now)

    return queryset.alias(
        local_day=days.per_corp(local, output_field=DateField()),
        local_day_start=days.per_corp(
            lambda tz: days.day_start(local(tz), tz), output_field=DateTimeField()
        ),
        local_day_end=days.per_corp(
            lambda tz: days.day_start(local(tz), tz, days_later=1), output_field=DateTimeField()
        ),
    )


def _count(queryset: QuerySet, field: str = "pk") -> Subquery:
    counted = queryset.order_by().values(field).annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def live_codes_with_today(*, day: date | None = None) -> QuerySet:
    """Live codes with today's scans, adds, assigned and total daily cap (None: a member has
    no cap, so neither has the code). `assigned_today` counts the scans given a member (a
    returning device's excluded: it keeps its member), not DailyCounter.assigned, which is
    capacity taken and includes what the landing page's Redis store reserved but has not
    spent. `cap_used_today` is what the caps count: assignments for a landing code, adds for
    a native one (its contact way rotates on adds).
    Each code's figures are for its own corp's local day: `day`, by default its today."""
    start, end = OuterRef("local_day_start"), OuterRef("local_day_end")
    scans = Scan.objects.filter(live_code=OuterRef("pk"), created_at__gte=start,
                                created_at__lt=end)  # fmt: skip
    adds = Attribution.objects.filter(live_code=OuterRef("pk"), added_at__gte=start,
                                      added_at__lt=end)  # fmt: skip

    def counter_sum(field: str) -> Subquery:
        sums = (
            DailyCounter.objects.filter(live_code=OuterRef("pk"), day=OuterRef("local_day"))
            .order_by()
            .values("live_code")
            .annotate(n=Sum(field))
            .values("n")
        )
        return Coalesce(Subquery(sums, output_field=IntegerField()), Value(0))

    caps = (
        PoolMember.objects.filter(live_code=OuterRef("pk"), is_enabled=True)
        .order_by()
        .values("live_code")
        .annotate(n=Sum("daily_cap"))
        .values("n")
    )
    uncapped = PoolMember.objects.filter(
        live_code=OuterRef("pk"), is_enabled=True, daily_cap__isnull=True
    )
    return (
        _local_day_of_each_corp(LiveCode.objects.select_related("corp", "channel"), day)
        .annotate(
            scans_today=_count(scans.values("live_code"), "live_code"),
            adds_today=_count(adds.values("live_code"), "live_code"),
            assigned_today=_count(
                scans.filter(staff__isnull=False, reused=False).values("live_code"), "live_code"
            ),
            cap_used_today=Case(
                When(mode=LiveCode.Mode.NATIVE, then=counter_sum("added")),
                default=F("assigned_today"),
                output_field=IntegerField(),
            ),
            cap_sum=Coalesce(Subquery(caps, output_field=IntegerField()), Value(0)),
            uncapped_members=_count(uncapped.values("live_code"), "live_code"),
        )
        .annotate(
            # With any uncapped member the code has no overall cap: None, not a misleading sum.
            cap_today=Case(
                When(uncapped_members__gt=0, then=Value(None)),
                default=F("cap_sum"),
                output_field=IntegerField(),
            )
        )
    )


def channels_with_today(*, day: date | None = None) -> QuerySet:
    """Channels with today's scans and adds (of each channel's own corp's local day: `day`,
    by default its today) and their number of live codes."""
    start, end = OuterRef("local_day_start"), OuterRef("local_day_end")
    scans = Scan.objects.filter(live_code__channel=OuterRef("pk"), created_at__gte=start,
                                created_at__lt=end)  # fmt: skip
    adds = Attribution.objects.filter(channel=OuterRef("pk"), added_at__gte=start,
                                      added_at__lt=end)  # fmt: skip
    channels = _local_day_of_each_corp(Channel.objects.select_related("corp"), day)
    return channels.annotate(
        scans_today=_count(scans.values("live_code__channel"), "live_code__channel"),
        adds_today=_count(adds.values("channel"), "channel"),
        live_code_count=Count("live_codes", distinct=True),
    )


def referrer_leaderboard(
    *, corp: Corp, since: date | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Referrers ranked by the new customers they brought (first adds) from the corp's local
    day `since` on."""
    queryset = Attribution.objects.filter(corp=corp, referrer__isnull=False, is_first_touch=True)
    start = None if since is None else days.day_start(since, corp)
    if start is not None:
        queryset = queryset.filter(added_at__gte=start)
    return list(
        queryset.values("referrer_id", "referrer__name", "referrer__external_userid")
        .annotate(new_customers=Count("external_contact", distinct=True))
        .order_by("-new_customers", "referrer_id")[:limit]
    )


def live_codes_picker_order(
    live_codes: QuerySet[LiveCode], *, corp_ids: list[int] | QuerySet
) -> QuerySet[LiveCode]:
    """Live codes in the order a picker lists them: the codes of the corps' top channels first,
    by their channel's rank, then the rest in the queryset's own order. The ranking is
    analytics' (the latest hourly quality ranking, for the corps that switched this on); the
    dependency points the other way, so it is named by settings.CHANNELS_PICKER_RANKING and
    loaded here, as the add step is for contacts. Two or three queries, none per code."""
    ranks: dict[int, int] = import_string(settings.CHANNELS_PICKER_RANKING)(list(corp_ids))
    if not ranks:
        return live_codes
    position = Case(
        *(When(channel_id=channel_id, then=Value(rank)) for channel_id, rank in ranks.items()),
        default=Value(None),
        output_field=IntegerField(),
    )
    own_order = list(live_codes.query.order_by) or ["-created_at"]
    return live_codes.annotate(picker_rank=position).order_by(
        F("picker_rank").asc(nulls_last=True), *own_order, "-pk"
    )
