"""The channel report and the daily trend, read from the rollups, equal the same figures
computed directly from the raw facts (an independent oracle below), on a worked scenario and
on random ones (hypothesis)."""

from __future__ import annotations

import datetime as dt
import itertools
from collections import defaultdict
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.models import Breakdown
from analytics.reports import ChannelReport, DailyReport, ReportParams
from analytics.reports.base import ReportError, derive
from analytics.rollups import rollups_rebuild
from channels_app.models import Attribution, Channel, ChannelCost, LandingSlot, LiveCode, Scan
from channels_app.state import encode_state
from contacts.models import ConversionEvent, ExternalContact, FirstSource, RelationEvent
from contacts.services import relation_event_record, staff_get_or_create
from scrm.pipeline import add_record

pytestmark = pytest.mark.django_db

CST = ZoneInfo("Asia/Shanghai")
FIRST, LAST = dt.date(2026, 10, 1), dt.date(2026, 10, 31)
NOW = dt.datetime(2026, 11, 20, 12, tzinfo=CST)  # the rollups' as-of time
ENDINGS = ("deleted_by_customer", "deleted_by_staff", "transferred")


def _at(day: int, hour: int = 10, minute: int = 0) -> dt.datetime:
    """Day `day` of October 2026 (0 or less: September; above 31: November), local time."""
    return dt.datetime(2026, 10, 1, hour, minute, tzinfo=CST) + dt.timedelta(days=day - 1)


def _codes(corp) -> dict[str, LiveCode]:
    """Two channels: a Moments ad (one native code) and Xiaohongshu (a landing code, a slot)."""
    codes = {}
    for key, mode in (("pyq", LiveCode.Mode.NATIVE), ("xhs", LiveCode.Mode.LANDING)):
        channel = Channel.objects.create(corp=corp, name=key, code=f"{key}_1",
                                         channel_type=Channel.Type.AD)  # fmt: skip
        code = LiveCode.objects.create(corp=corp, channel=channel, name=f"{key} code",
                                       slug=key, mode=mode)  # fmt: skip
        code.state = encode_state("native", code.pk)
        code.save(update_fields=["state"])
        codes[key] = code
    return codes


def _slot(code: LiveCode, userid: str) -> LandingSlot:
    staff = staff_get_or_create(corp=code.corp, userid=userid)
    slot = LandingSlot.objects.create(corp=code.corp, live_code=code, staff=staff, config_id="c")
    slot.state = encode_state("landing", code.pk, slot.pk)
    slot.save(update_fields=["state"])
    return slot


def _scan(code: LiveCode, at: dt.datetime, device: str, slot: LandingSlot | None = None) -> Scan:
    """A scan; its utm_source and device class follow from the device's number."""
    number = int(device.rsplit("-", 1)[-1])
    return Scan.objects.create(corp=code.corp, live_code=code, created_at=at,
                               device=("mobile", "desktop")[number % 2], device_key=device,
                               utm_source=("", "xhs", "dy")[number % 3], utm_campaign="618",
                               slot=slot, staff=slot.staff if slot else None)  # fmt: skip


def _add(
    corp, customer: str, userid: str, state: str, at: dt.datetime, add_way: int | None = None
) -> None:
    add_record(corp=corp, userid=userid, external_userid=customer, state=state, added_at=at,
               add_way=add_way)  # fmt: skip


def _end(corp, customer: str, userid: str, kind: str, at: dt.datetime) -> None:
    relation_event_record(corp=corp, userid=userid, external_userid=customer,
                          kind=RelationEvent.Kind(kind), occurred_at=at)  # fmt: skip


_conversion_ids = itertools.count()


def _convert(corp, customer: str, kind: str, at: dt.datetime, amount: str | None = None) -> None:
    contact = ExternalContact.objects.get(corp=corp, external_userid=customer)
    ConversionEvent.objects.create(
        corp=corp, external_id=f"{customer}-{kind}-{next(_conversion_ids)}", kind=kind,
        amount=Decimal(amount) if amount is not None else None, occurred_at=at,
        external_contact=contact, external_userid=customer,
    )  # fmt: skip


# -- the oracle: the definitions, computed from the raw rows one by one -------------------------


def _local(moment: dt.datetime, corp) -> dt.date:
    return moment.astimezone(corp.tzinfo).date()


def _day_start(day: dt.date, corp) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=corp.tzinfo)


def _live_at(customer_id: int, moment: dt.datetime) -> bool:
    events = RelationEvent.objects.filter(external_contact_id=customer_id, occurred_at__lte=moment)
    for relation_id in set(events.values_list("follow_relation_id", flat=True)):
        mine = sorted(events.filter(follow_relation_id=relation_id),
                      key=lambda e: (e.occurred_at, e.kind != "added"))  # fmt: skip
        live = False
        for event in mine:
            if event.kind == "added":
                live = True
            elif event.kind in ENDINGS:
                live = False
        if live:
            return True
    return False


def _oracle(corp, first: dt.date, last: dt.date, window: int, key: str, touch: str = "any") -> dict:
    """Summed figures per channel, live code, staff member or channel type (key "channel",
    "live_code", "staff", "channel_type": the credited add's, a scan's own code and member, a
    deletion's own member under any touch), day ("day") or breakdown value (a Breakdown: the
    value of the scan, of an add's scan or add_way, of the first touch's)."""
    sums: dict = defaultdict(lambda: defaultdict(Decimal))
    breakdown = key if key in Breakdown.values else ""
    channel_types = dict(Channel.objects.filter(corp=corp).values_list("pk", "channel_type"))
    first_touch = {
        source.external_contact_id: Attribution.objects.get(add_event_id=source.add_event_id)
        for source in FirstSource.objects.filter(corp=corp)
    }

    def credited(attribution: Attribution | None, customer_id: int) -> Attribution | None:
        return first_touch.get(customer_id) if touch == "first" else attribution

    def value_of(attribution: Attribution | None, add_way: int | None = None) -> str:
        if breakdown == Breakdown.ADD_WAY:
            way = add_way if attribution is None else attribution.add_event.add_way
            return "" if way is None else str(way)
        scan = attribution.scan if attribution is not None else None
        return getattr(scan, breakdown, "") if scan is not None else ""

    def group(
        moment: dt.datetime,
        channel_id: int | None,
        value: object = None,
        live_code_id: int | None = None,
        staff_id: int | None = None,
    ) -> object:
        if breakdown:
            return value
        return {
            "day": _local(moment, corp),
            "channel": channel_id,
            "live_code": live_code_id,
            "staff": staff_id,
            "channel_type": channel_types.get(channel_id),  # no channel: no type
        }[key]

    def inside(moment: dt.datetime) -> bool:
        return first <= _local(moment, corp) <= last

    for scan in Scan.objects.filter(corp=corp).select_related("live_code"):
        if inside(scan.created_at) and breakdown != Breakdown.ADD_WAY:  # a scan has no add_way
            row = sums[group(scan.created_at, scan.live_code.channel_id,
                             getattr(scan, breakdown, ""), scan.live_code_id,
                             scan.staff_id)]  # fmt: skip
            row["scans"] += 1
            row.setdefault("devices", set()).add(scan.device_key)
    for attribution in Attribution.objects.filter(corp=corp).select_related("live_code"):
        if inside(attribution.added_at):
            to = credited(attribution, attribution.external_contact_id)
            row = sums[group(attribution.added_at, to.channel_id, value_of(to), to.live_code_id,
                             to.staff_id)]  # fmt: skip
            row["adds"] += 1
            if attribution.live_code and attribution.live_code.mode == LiveCode.Mode.LANDING:
                row["landing_adds"] += 1
    for event in RelationEvent.objects.filter(corp=corp, kind__in=ENDINGS[:2]):
        if inside(event.occurred_at):
            ended = (
                Attribution.objects.filter(
                    follow_relation_id=event.follow_relation_id, added_at__lte=event.occurred_at
                )
                .order_by("-added_at", "-pk")
                .first()
            )
            to = credited(ended, event.external_contact_id)
            # Any touch: the member whose relation ended, even with no add before it.
            staff_id = to.staff_id if touch == "first" else event.staff_id
            row = sums[group(event.occurred_at, to.channel_id if to else None,
                             value_of(to) if to else "", to.live_code_id if to else None,
                             staff_id)]  # fmt: skip
            row["lost" if event.kind == "deleted_by_customer" else "removed"] += 1
    for source in FirstSource.objects.filter(corp=corp):
        if not inside(source.added_at):
            continue
        # (Not `touch`: that names the crediting, read by credited() above.)
        first_add = Attribution.objects.get(add_event_id=source.add_event_id)
        value = (
            value_of(first_add)
            if breakdown != Breakdown.ADD_WAY
            else value_of(None, source.add_way)
        )
        row = sums[group(source.added_at, first_add.channel_id, value, first_add.live_code_id,
                         source.staff_id)]  # fmt: skip
        row["new_customers"] += 1
        conversions = ConversionEvent.objects.filter(external_contact_id=source.external_contact_id)
        after = [c for c in conversions if c.occurred_at >= source.added_at]
        if any(c.kind == "consult" and c.occurred_at < source.added_at + dt.timedelta(hours=72)
               for c in after):  # fmt: skip
            row["consult_72h"] += 1
        if source.added_at <= NOW - dt.timedelta(days=30):
            row["mature_30d"] += 1
            if _live_at(source.external_contact_id, source.added_at + dt.timedelta(days=30)):
                row["retained_30d"] += 1
        in_window = [
            c for c in after if c.occurred_at < source.added_at + dt.timedelta(days=window)
        ]
        orders = [c for c in in_window if c.kind == "order"]
        row["revenue"] += sum((c.amount for c in orders), Decimal(0)) - sum(
            (abs(c.amount) for c in in_window if c.kind == "refund"), Decimal(0)
        )
        row["orders"] += len(orders)
        row["buyers"] += 1 if orders else 0
        row["repeat_buyers"] += 1 if len(orders) >= 2 else 0
    costs = defaultdict(Decimal)
    # A cost names a channel (so its type) and spreads over days; not a code, member, utm or
    # device.
    has_cost = key in ("day", "channel", "channel_type")
    for cost in ChannelCost.objects.filter(corp=corp) if has_cost else ():
        span = (cost.end_date - cost.start_date).days + 1
        for offset in range(span):
            day = cost.start_date + dt.timedelta(days=offset)
            if first <= day <= last:
                costs[group(_day_start(day, corp), cost.channel_id)] += cost.amount / span
    figures = {}
    every_day = {first + dt.timedelta(days=i) for i in range((last - first).days + 1)}
    for group_key in set(sums) | set(costs) | (every_day if key == "day" else set()):
        row = sums[group_key]
        summed = {name: int(row.get(name, 0)) for name in (
            "scans", "adds", "landing_adds", "lost", "removed", "new_customers", "consult_72h",
            "mature_30d", "retained_30d", "orders", "buyers", "repeat_buyers")}  # fmt: skip
        summed["visitors"] = len(row.get("devices", set()) - {""})
        summed["revenue"] = row.get("revenue", Decimal(0))
        has_channel = key == "day" or group_key is not None  # no channel, no cost
        summed["cost"] = costs.get(group_key, Decimal(0)) if has_cost and has_channel else None
        figures[group_key] = summed
    return figures


def _report_by_key(result) -> dict:
    return {row["key"]: {k: v for k, v in row.items() if k not in ("key", "name")}
            for row in result.rows}  # fmt: skip


def _same(report_row: dict, oracle_sums: dict) -> None:
    expected = derive(oracle_sums)
    for name, value in expected.items():
        got = report_row[name]
        if name in ("cost", "cost_per_new_customer", "roi") and value is not None:
            assert got is not None, name
            assert abs(Decimal(got) - Decimal(value)) <= Decimal("0.011"), (name, got, value)
        else:
            assert got == value, (name, got, value)


def _check(corp, *, window: int = 30) -> None:
    rollups_rebuild(corp=corp, first=FIRST - dt.timedelta(days=1), last=LAST, now=NOW)
    report = ChannelReport(ReportParams(corp=corp, first=FIRST, last=LAST, window=window))
    rows = _report_by_key(report.calculate())
    shown = ("scans", "adds", "lost", "removed", "new_customers")
    oracle = {key: sums for key, sums in _oracle(corp, FIRST, LAST, window, "channel").items()
              if any(sums[name] for name in shown)}  # fmt: skip
    assert set(rows) >= set(oracle)
    for key, sums in oracle.items():
        _same(rows[key], sums)
    totals = report.calculate().totals
    first = ChannelReport(ReportParams(corp=corp, first=FIRST, last=LAST, window=window,
                                       touch="first")).calculate()  # fmt: skip
    assert first.totals == totals  # each fact counted once whoever it is credited to
    first_rows = _report_by_key(first)
    for key, sums in _oracle(corp, FIRST, LAST, window, "channel", touch="first").items():
        if any(sums[name] for name in shown):
            _same(first_rows[key], sums)
    for breakdown in Breakdown.values:
        params = ReportParams(corp=corp, first=FIRST, last=LAST, window=window, group_by=breakdown)
        result = ChannelReport(params).calculate()
        assert result.totals == totals  # the totals do not depend on the grouping
        rows = _report_by_key(result)
        for value, sums in _oracle(corp, FIRST, LAST, window, breakdown).items():
            if any(sums[name] for name in shown):
                _same(rows[value], sums)
    for group_by in ("live_code", "staff", "channel_type"):
        for touch in ("any", "first"):
            params = ReportParams(corp=corp, first=FIRST, last=LAST, window=window,
                                  group_by=group_by, touch=touch)  # fmt: skip
            result = ChannelReport(params).calculate()
            assert result.totals == totals
            rows = _report_by_key(result)
            oracle = {
                key: sums
                for key, sums in _oracle(corp, FIRST, LAST, window, group_by, touch).items()
                if any(sums[name] for name in shown) or sums["cost"]  # a row of its own
            }
            assert set(rows) == set(oracle), (group_by, touch)
            for key, sums in oracle.items():
                _same(rows[key], sums)
    daily = DailyReport(ReportParams(corp=corp, first=FIRST, last=LAST, window=window))
    by_day = _report_by_key(daily.calculate())
    assert list(by_day) == [FIRST + dt.timedelta(days=i) for i in range(31)]
    oracle = _oracle(corp, FIRST, LAST, window, "day")
    for day in by_day:  # every day, with or without facts: its cost, 0 without spend
        _same(by_day[day], oracle[day])


# -- a worked scenario -------------------------------------------------------------------------


def test_a_worked_month_gives_the_figures_by_hand(corp):
    codes = _codes(corp)
    pyq, xhs = codes["pyq"], codes["xhs"]
    slot = _slot(xhs, "staff02")
    ChannelCost.objects.create(corp=corp, channel=pyq.channel, start_date=dt.date(2026, 9, 21),
                               end_date=dt.date(2026, 10, 10), amount=Decimal("2000"))  # fmt: skip
    for index in range(4):  # four scans of two devices on the landing code, one add
        _scan(xhs, _at(2, 9, index), f"device-{index % 2}", slot)
    _add(corp, "wm-a", "staff01", pyq.state, _at(1))  # Oct 1: A through the Moments ad
    _add(corp, "wm-b", "staff02", slot.state, _at(2, 9, 30))  # Oct 2: B scanned Xiaohongshu
    _add(corp, "wm-a", "staff02", slot.state, _at(3))  # A again, through Xiaohongshu
    _end(corp, "wm-a", "staff01", "deleted_by_customer", _at(5))
    _end(corp, "wm-b", "staff02", "deleted_by_staff", _at(6))
    _convert(corp, "wm-a", "consult", _at(2))
    _convert(corp, "wm-a", "order", _at(4), "300")
    _convert(corp, "wm-a", "order", _at(20), "200")
    _convert(corp, "wm-a", "refund", _at(21), "50")  # a refund sent positive counts negative
    _convert(corp, "wm-b", "order", _at(40), "999")  # outside every window

    rollups_rebuild(corp=corp, first=dt.date(2026, 9, 30), last=LAST, now=NOW)
    rows = ChannelReport(ReportParams(corp=corp, first=FIRST, last=LAST, window=30)).calculate()
    by_code = {row["name"]: row for row in rows.rows}
    moments, red = by_code["pyq"], by_code["xhs"]
    assert (moments["adds"], moments["new_customers"], moments["lost"], moments["net_adds"]) == (
        1, 1, 1, 0,
    )  # fmt: skip
    assert (red["scans"], red["visitors"], red["adds"], red["removed"]) == (4, 2, 2, 1)
    assert red["scan_to_add"] == Decimal("0.5000")
    assert moments["scan_to_add"] is None  # a native code has no scans: no rate, not 0
    assert (moments["consult_72h_rate"], red["consult_72h_rate"]) == (Decimal(1), Decimal(0))
    # A is still a customer 30 days on (through staff02); B was removed on day 6.
    assert (moments["retained_30d_rate"], red["retained_30d_rate"]) == (Decimal(1), Decimal(0))
    assert (moments["revenue"], moments["orders"], moments["buyers"]) == (Decimal("450.00"), 2, 1)
    assert moments["repurchase_rate"] == Decimal(1)
    assert moments["cost"] == Decimal("1000.00")  # 10 of the cost's 20 days fall in October
    assert moments["cost_per_new_customer"] == Decimal("1000.00")
    assert moments["roi"] == Decimal("0.4500")
    assert red["cost"] == Decimal(0)
    assert red["roi"] is None
    seven = ChannelReport(ReportParams(corp=corp, first=FIRST, last=LAST, window=7)).calculate()
    assert {row["name"]: row["revenue"] for row in seven.rows}["pyq"] == Decimal("300.00")
    assert rows.totals["adds"] == 3
    assert rows.totals["visitors"] == 2
    assert rows.computed_at is not None
    assert rows.days_not_computed == []
    _check(corp)


def test_a_late_order_corrects_its_cohort_on_the_next_rebuild(corp):
    codes = _codes(corp)
    _add(corp, "wm-late", "staff01", codes["pyq"].state, _at(3))
    params = ReportParams(corp=corp, first=FIRST, last=LAST, window=15)
    rollups_rebuild(corp=corp, first=FIRST, last=LAST, now=NOW)
    assert ChannelReport(params).calculate().rows[0]["revenue"] == Decimal("0.00")
    _convert(corp, "wm-late", "order", _at(10), "88.80")  # dated in the window, sent later
    assert ChannelReport(params).calculate().rows[0]["revenue"] == Decimal("0.00")
    rollups_rebuild(corp=corp, first=FIRST, last=LAST, now=NOW)
    assert ChannelReport(params).calculate().rows[0]["revenue"] == Decimal("88.80")


def _rollup_rows() -> dict[str, list]:
    """Every rollup row but its id and time of computing, in a stable order."""
    from analytics import models

    found = {}
    for model in (models.DailyFlow, models.DailyFlowBreakdown, models.DailyVisitor,
                  models.CustomerCohort, models.DailyCohort, models.DailyCohortBreakdown,
                  models.DailyCost):  # fmt: skip
        fields = [f.attname for f in model._meta.concrete_fields if f.attname != "id"]
        found[model.__name__] = sorted(model.objects.values_list(*fields), key=repr)
    return found


def test_a_long_range_rebuilt_in_chunks_equals_a_day_at_a_time(corp, monkeypatch):
    from analytics import rollups

    monkeypatch.setattr(rollups, "CHUNK_DAYS", 7)  # five chunks, one of them short
    codes = _codes(corp)
    slot = _slot(codes["xhs"], "staff02")
    ChannelCost.objects.create(corp=corp, channel=codes["pyq"].channel, amount=Decimal("999"),
                               start_date=dt.date(2026, 9, 25), end_date=LAST)  # fmt: skip
    for day in range(1, 32, 3):
        _scan(codes["xhs"], _at(day, 9), f"device-{day}", slot)
        _add(corp, f"wm-{day}", "staff02", slot.state, _at(day, 9, 5))
        _add(corp, f"wm-n{day}", "staff01", codes["pyq"].state, _at(day, 23, 30))  # near midnight
        _convert(corp, f"wm-{day}", "order", _at(day + 2), "10")
        if day % 2:
            _end(corp, f"wm-n{day}", "staff01", "deleted_by_customer", _at(day + 1))
    first, last = dt.date(2026, 9, 28), LAST
    rollups_rebuild(corp=corp, first=first, last=last, now=NOW)
    at_once = _rollup_rows()
    assert at_once["CustomerCohort"]
    for day in rollups.day_range(first, last):
        rollups_rebuild(corp=corp, first=day, last=day, now=NOW)
    assert _rollup_rows() == at_once
    _check(corp)


def test_days_not_rebuilt_are_named_and_bad_parameters_refused(corp):
    rollups_rebuild(corp=corp, first=FIRST, last=dt.date(2026, 10, 29), now=NOW)
    result = ChannelReport(ReportParams(corp=corp, first=FIRST, last=LAST)).calculate()
    assert result.days_not_computed == [dt.date(2026, 10, 30), dt.date(2026, 10, 31)]
    for bad in ({"window": 10}, {"group_by": "moon"}, {"first": LAST, "last": FIRST}):
        with pytest.raises(ReportError):
            ChannelReport(ReportParams(**{"corp": corp, "first": FIRST, "last": LAST, **bad}))


def test_the_report_reads_rollups_in_a_fixed_number_of_queries(corp, django_assert_num_queries):
    codes = _codes(corp)
    for index in range(20):
        _add(corp, f"wm-{index}", f"staff0{index % 3 + 1}", codes["pyq"].state, _at(index + 1))
    rollups_rebuild(corp=corp, first=FIRST, last=LAST, now=NOW)
    # flows, cohorts, visitors, costs; the same four for the totals; names; computed days (2)
    with django_assert_num_queries(11):
        ChannelReport(ReportParams(corp=corp, first=FIRST, last=LAST)).calculate()


# -- random scenarios --------------------------------------------------------------------------

moments = st.builds(_at, st.integers(-5, 40), st.integers(0, 23), st.integers(0, 59))
# Offsets from a customer's first add, in hours: anywhere, and on the rules' edges (the 72-hour
# consult, the 7/15/30-day windows and the 30-day retention), where a wrong bound shows.
EDGES = [0, 1, 71, 72, 73, *(24 * d + h for d in (7, 15, 30) for h in (-1, 0, 1))]
offsets = st.one_of(st.integers(-48, 24 * 40), st.sampled_from(EDGES))
adds = st.lists(
    st.tuples(st.integers(0, 5), st.sampled_from(["pyq", "xhs"]), st.integers(1, 3), moments,
              st.sampled_from([None, 1, 3])),
    max_size=12,
)  # fmt: skip
after_first_add = st.lists(
    st.one_of(
        st.tuples(st.just("end"), st.integers(0, 5), st.sampled_from(ENDINGS),
                  st.integers(1, 3), offsets),
        st.tuples(st.just("convert"), st.integers(0, 5),
                  st.sampled_from(["consult", "order", "refund"]), st.integers(1, 500), offsets),
    ),
    max_size=15,
)  # fmt: skip
scans = st.lists(st.tuples(st.integers(0, 5), st.integers(1, 3), moments), max_size=8)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(adds=adds, after=after_first_add, scans=scans, window=st.sampled_from([7, 15, 30]),
       cost_days=st.tuples(st.integers(-10, 20), st.integers(0, 40)),
       channel_types=st.tuples(*[st.sampled_from(Channel.Type.values)] * 2))  # fmt: skip
def test_every_report_figure_equals_the_one_computed_from_the_raw_facts(
    corp, adds, after, scans, window, cost_days, channel_types
):
    """By channel, live code, staff member, channel type (the two channels' types drawn: one
    type or two), each breakdown and day, any touch and first touch, costs included."""
    with transaction.atomic():
        codes = _codes(corp)
        for code, channel_type in zip(codes.values(), channel_types, strict=True):
            Channel.objects.filter(pk=code.channel_id).update(channel_type=channel_type)
        slots = {n: _slot(codes["xhs"], f"staff0{n}") for n in (1, 2, 3)}
        start = FIRST + dt.timedelta(days=cost_days[0])
        ChannelCost.objects.create(corp=corp, channel=codes["pyq"].channel, start_date=start,
                                   end_date=start + dt.timedelta(days=cost_days[1]),
                                   amount=Decimal("1234.56"))  # fmt: skip
        for customer, code, number, at, add_way in adds:
            state = codes[code].state if code == "pyq" else slots[number].state
            _add(corp, f"wm-{customer}", f"staff0{number}", state, at, add_way)
        for device, number, at in scans:
            _scan(codes["xhs"], at, f"device-{device}", slots[number])
        firsts = dict(FirstSource.objects.values_list("external_contact__external_userid",
                                                      "added_at"))  # fmt: skip
        for kind, customer, what, number, hours in after:
            first = firsts.get(f"wm-{customer}")
            if first is None:
                continue
            at = first + dt.timedelta(hours=hours)
            if kind == "end":
                _end(corp, f"wm-{customer}", f"staff0{number}", what, at)
            else:
                _convert(corp, f"wm-{customer}", what, at,
                         None if what == "consult" else str(number))  # fmt: skip
        _check(corp, window=window)
        transaction.set_rollback(True)
