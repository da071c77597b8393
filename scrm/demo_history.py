"""The demo's past (make run): scrm.demo_plan's four weeks written through the project's own
services, on both sides of the API, so that every report has something to show on first start.

WeCom's side first (the sandbox): each customer and their relations, with the add's time and
state, so details fetches and calibration agree with our history. Then ours, in time order:
every add through scrm.pipeline.add_record (history, attribution through the live code's
state, first source), the customer's details fetched with externalcontact/get as after a live
add, deletions and removals through scrm.pipeline.relation_change_record; conversions through
contacts.conversions.conversions_import (what the API and the CSV upload call); costs through
channels_app.services.costs. Scans of the tracked link are the one exception: the landing
service records a visit at the present moment only, so past visits are written as Scan rows by
`_scans_write` below, each leasing the slot whose state its add carries, as a visit does.

Idempotent and resumable: the plan is made from the anchor day of the history already written
(found by its customers' marked external_userids), and whatever is there is skipped. A second
run on the same database adds nothing, on any later day.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from django.conf import settings
from django.db import transaction

from channels_app.models import ChannelCost, LandingSlot, LiveCode, PoolMember, Scan
from channels_app.services.costs import channel_costs_create
from contacts.conversions import MAX_ROWS_PER_REQUEST, conversions_import
from contacts.models import ExternalContact, RelationEvent, Staff
from contacts.services import external_contact_refresh
from scrm import days
from scrm.demo_plan import (
    HISTORY_DAYS,
    PREFIX,
    Ending,
    Plan,
    PlannedConversion,
    PlannedCustomer,
    Touch,
    plan_history,
)
from scrm.pipeline import add_record, relation_change_record
from scrm.wecom.client import WeComError
from scrm.wecom.models import Corp
from scrm.wecom.sandbox.models import SandboxCorp
from scrm.wecom.sandbox.simulate import (
    sandbox_customer_get_or_create,
    sandbox_follow_add,
    sandbox_follow_delete,
)

logger = logging.getLogger(__name__)

ADD_WAY_SCAN = 1  # 扫描二维码: how a contact way's QR is added
# The history's transactions last about this long: what a live callback or visit may wait.
TRANSACTION_SECONDS = 0.2


@dataclass
class HistoryReport:
    """What one run wrote (zeros: the history was there)."""

    first_day: date
    last_day: date
    customers: int = 0
    adds: int = 0
    deleted_by_customer: int = 0
    deleted_by_staff: int = 0
    scans: int = 0
    conversions: int = 0
    costs: int = 0
    seconds: float = 0.0

    @property
    def written(self) -> int:
        counts = (self.adds, self.deleted_by_customer, self.deleted_by_staff, self.scans,
                  self.conversions, self.costs)  # fmt: skip
        return sum(counts)

    def __str__(self) -> str:
        return (
            f"{self.first_day}..{self.last_day}: {self.customers} customers, {self.adds} adds, "
            f"{self.deleted_by_customer} deleted by the customer, {self.deleted_by_staff} removed "
            f"by staff, {self.scans} scans, {self.conversions} conversions, {self.costs} costs "
            f"({self.seconds:.1f} s)"
        )


@dataclass(frozen=True)
class _Codes:
    """The demo corp's live code per channel code, the userids of its pool, and for landing
    codes each member's slots in the order they were published (a plan's slot is an index)."""

    by_channel: dict[str, LiveCode]
    pools: dict[str, list[str]]
    slots: dict[tuple[str, str], list[LandingSlot]]


def _codes(corp: Corp) -> _Codes:
    by_channel: dict[str, LiveCode] = {}
    for live_code in (
        LiveCode.objects.filter(corp=corp, status=LiveCode.Status.ACTIVE)
        .select_related("channel")
        .order_by("pk")
    ):
        by_channel.setdefault(live_code.channel.code, live_code)
    pools: dict[str, list[str]] = {code: [] for code in by_channel}
    channel_of = {live_code.pk: code for code, live_code in by_channel.items()}
    for live_code_id, userid in (
        PoolMember.objects.filter(live_code_id__in=channel_of, is_enabled=True, is_backup=False)
        .order_by("staff__userid")
        .values_list("live_code_id", "staff__userid")
    ):
        pools[channel_of[live_code_id]].append(userid)
    slots: dict[tuple[str, str], list[LandingSlot]] = {}
    for slot in (
        LandingSlot.objects.filter(live_code_id__in=channel_of)
        .exclude(state="")
        .select_related("staff")
        .order_by("pk")
    ):
        slots.setdefault((channel_of[slot.live_code_id], slot.staff.userid), []).append(slot)
    for code, live_code in by_channel.items():
        if live_code.mode == LiveCode.Mode.LANDING:
            # Only members with published slots can be shown to a visitor.
            pools[code] = [userid for userid in pools[code] if (code, userid) in slots]
    return _Codes(by_channel, pools, slots)


def demo_history_anchor(*, corp: Corp) -> date | None:
    """The anchor day of the history written before (the day after its last day), or None."""
    first = (
        RelationEvent.objects.filter(
            corp=corp,
            kind=RelationEvent.Kind.ADDED,
            external_contact__external_userid__startswith=PREFIX,
        )
        .order_by("occurred_at")
        .values_list("occurred_at", flat=True)
        .first()
    )
    if first is None:
        return None
    # The plan's first day always has an add; its earliest is the history's earliest.
    return days.local_date(first, corp) + timedelta(days=HISTORY_DAYS)


def demo_history_plan(*, corp: Corp, volume: float = 1.0) -> tuple[Plan, _Codes] | None:
    """The plan of the corp's history: the one written before, from its anchor day, else one
    ending yesterday. None when the history there came from another plan (the codes' staff
    or the volume changed since): it is left as it is, never written twice."""
    codes = _codes(corp)
    anchor = demo_history_anchor(corp=corp)
    plan = plan_history(
        anchor=anchor or days.today(corp), tz=corp.tzinfo, pools=codes.pools, volume=volume
    )
    if anchor is not None:
        seeded = ExternalContact.objects.filter(corp=corp, external_userid__startswith=PREFIX)
        planned = {customer.external_userid for customer in plan.customers}
        if not set(seeded.values_list("external_userid", flat=True)) <= planned:
            return None
    return plan, codes


def demo_history_seed(
    *,
    corp: Corp,
    volume: float = 1.0,
    pause: float = 0.0,
    progress: Callable[[str], None] | None = None,
) -> HistoryReport:
    """Write the demo corp's four weeks of history (a sandbox corp of the same corp_id plays
    WeCom); `volume` scales the customers per day. Skips what is there already. `pause`:
    seconds left to other writers after each transaction while a server runs (SQLite's
    waiting writers retry with back-off up to 100 ms: without a pause this loop, committing
    and beginning again at once, would starve them)."""
    started = time.monotonic()
    planned = demo_history_plan(corp=corp, volume=volume)
    anchor = planned[0].anchor if planned else demo_history_anchor(corp=corp) or days.today(corp)
    report = HistoryReport(
        first_day=anchor - timedelta(days=HISTORY_DAYS), last_day=anchor - timedelta(days=1)
    )
    if planned is None:
        return report
    plan, codes = planned
    sandbox = SandboxCorp.objects.get(corp_id=corp.corp_id)
    report.costs = _costs_write(corp, plan, codes)
    report.scans = _scans_write(corp, plan, codes)
    _relations_write(corp, sandbox, plan, codes, report, progress, pause)
    report.conversions = _conversions_import(corp, [c for c in plan.conversions if not c.late])
    report.seconds = time.monotonic() - started
    return report


def demo_late_orders_import(*, corp: Corp, volume: float = 1.0) -> int:
    """The orders the business's system sends days late: dated inside their customers'
    windows, imported after the rest of the history (the reports revise those days). The
    number created (0 when there already, or no history was written)."""
    planned = demo_history_plan(corp=corp, volume=volume)
    if demo_history_anchor(corp=corp) is None or planned is None:
        return 0
    return _conversions_import(corp, [c for c in planned[0].conversions if c.late])


# -- costs and scans ---------------------------------------------------------------------------


def _costs_write(corp: Corp, plan: Plan, codes: _Codes) -> int:
    known = set(
        ChannelCost.objects.filter(corp=corp).values_list(
            "channel__code", "start_date", "end_date", "note"
        )
    )
    costs = [
        ChannelCost(channel=codes.by_channel[cost.code].channel, start_date=cost.start_date,
                    end_date=cost.end_date, amount=cost.amount, note=cost.note)
        for cost in plan.costs
        if (cost.code, cost.start_date, cost.end_date, cost.note) not in known
    ]  # fmt: skip
    return len(channel_costs_create(costs=costs)) if costs else 0


def _opaque(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def _scans_write(corp: Corp, plan: Plan, codes: _Codes) -> int:
    """A demo seeding helper, not a service: past visits of the tracked link as Scan rows
    (landing_visit records the present moment only). Each holds the member and the slot its
    visit leased; the add that follows carries that slot's state, so its attribution joins
    this scan as a live one would. Idempotent by visit_id."""
    known = set(
        Scan.objects.filter(corp=corp, visit_id__startswith="demo-").values_list(
            "visit_id", flat=True
        )
    )
    staff = dict(Staff.objects.filter(corp=corp).values_list("userid", "pk"))
    scans = []
    for scan in plan.scans:
        if scan.visit_id in known:
            continue
        live_code = codes.by_channel[scan.code]
        channel = live_code.channel
        slots = codes.slots[(scan.code, scan.userid)]
        scans.append(Scan(
            corp=corp, live_code=live_code, created_at=scan.at, visit_id=scan.visit_id,
            utm_source=channel.utm_source, utm_medium=channel.utm_medium or "note",
            utm_campaign=channel.utm_campaign or "618", utm_content=scan.utm_content,
            device=scan.device, in_wechat=scan.in_wechat, referrer_url=scan.referrer_url,
            ip_hash=_opaque("ip", scan.visit_id), device_key=_opaque("device", scan.visit_id),
            staff_id=staff[scan.userid], slot=slots[scan.slot % len(slots)],
        ))  # fmt: skip
    Scan.objects.bulk_create(scans, batch_size=500, ignore_conflicts=True)
    return len(scans)


# -- adds, deletions and removals --------------------------------------------------------------


def _state(codes: _Codes, touch: Touch) -> str:
    if touch.slot is None:
        return codes.by_channel[touch.code].state
    slots = codes.slots[(touch.code, touch.userid)]
    return slots[touch.slot % len(slots)].state


def _relations_write(
    corp: Corp,
    sandbox: SandboxCorp,
    plan: Plan,
    codes: _Codes,
    report: HistoryReport,
    progress: Callable[[str], None] | None,
    pause: float,
) -> None:
    """Adds, deletions and removals in time order, each as WeCom then we would know it."""
    seeded = RelationEvent.objects.filter(
        corp=corp, external_contact__external_userid__startswith=PREFIX
    ).values_list("external_contact__external_userid", "staff__userid", "kind")
    known = set(seeded)
    events: list[tuple[PlannedCustomer, Touch] | Ending] = [
        (customer, touch) for customer in plan.customers for touch in customer.touches
    ]
    events += plan.endings
    # At the same second an add comes first (as the relation history orders them).
    events.sort(key=lambda e: (e.at, 1) if isinstance(e, Ending) else (e[1].at, 0))
    new_customers: set[str] = set()
    # With the in-process sandbox a details fetch is a function call on this connection, so
    # the adds and fetches of a fifth of a second share one transaction and its commit (on
    # SQLite every commit is a sync to disk, several milliseconds). Over HTTP (WECOM_API_BASE)
    # each add is committed before its fetch, as on the live path: the sandbox's view needs
    # the database too.
    one_by_one = bool(settings.WECOM_API_BASE)
    position = 0
    while position < len(events):
        deadline = time.monotonic() + TRANSACTION_SECONDS
        with transaction.atomic():
            while position < len(events):
                event = events[position]
                position += 1
                if isinstance(event, Ending):
                    if (event.external_userid, event.userid, event.kind) in known:
                        continue
                    _ending_write(corp, sandbox, event)
                    if event.kind == RelationEvent.Kind.DELETED_BY_CUSTOMER:
                        report.deleted_by_customer += 1
                    else:
                        report.deleted_by_staff += 1
                else:
                    customer, touch = event
                    if (customer.external_userid, touch.userid, RelationEvent.Kind.ADDED) in known:
                        continue
                    _add_write(corp, sandbox, customer, touch, _state(codes, touch))
                    report.adds += 1
                    new_customers.add(customer.external_userid)
                    if progress and report.adds % 200 == 0:
                        progress(f"{report.adds} adds written")
                if one_by_one or time.monotonic() >= deadline:
                    break
        if pause:
            time.sleep(pause)
    report.customers = len(new_customers)


def _add_write(corp: Corp, sandbox: SandboxCorp, customer: PlannedCustomer, touch: Touch,
               state: str) -> None:  # fmt: skip
    row = sandbox_customer_get_or_create(
        corp=sandbox, external_userid=customer.external_userid, name=customer.name,
        gender=customer.gender, unionid=customer.unionid,
    )  # fmt: skip
    sandbox_follow_add(customer=row, userid=touch.userid, state=state,
                       createtime=int(touch.at.timestamp()), add_way=ADD_WAY_SCAN)  # fmt: skip
    recorded = add_record(corp=corp, userid=touch.userid, state=state, added_at=touch.at,
                          external_userid=customer.external_userid,
                          add_way=ADD_WAY_SCAN)  # fmt: skip
    try:
        # As after a live add: the name, unionid and relation details, from WeCom's side.
        external_contact_refresh(contact_id=recorded.relation.external_contact_id)
    except WeComError:
        logger.warning("details of demo customer %s not fetched", customer.external_userid)


def _ending_write(corp: Corp, sandbox: SandboxCorp, ending: Ending) -> None:
    sandbox_follow_delete(corp=sandbox, external_userid=ending.external_userid,
                          userid=ending.userid)  # fmt: skip
    relation_change_record(corp=corp, userid=ending.userid, occurred_at=ending.at,
                           external_userid=ending.external_userid,
                           kind=RelationEvent.Kind(ending.kind))  # fmt: skip


# -- conversions -------------------------------------------------------------------------------


def _conversion_row(corp: Corp, conversion: PlannedConversion) -> dict[str, str]:
    """A row as the business's system sends it to /api/v1/conversions/."""
    row = {
        "corp_id": corp.corp_id,
        "external_id": conversion.external_id,
        "kind": conversion.kind,
        "currency": "CNY",
        "occurred_at": days.local_datetime(conversion.occurred_at, corp).isoformat(),
        "external_userid": conversion.external_userid,
        "unionid": conversion.unionid,
        "note": conversion.note,
    }
    if conversion.amount is not None:
        row["amount"] = f"{conversion.amount:.2f}"
    return {key: value for key, value in row.items() if value}


def _conversions_import(corp: Corp, conversions: Iterable[PlannedConversion]) -> int:
    rows = [_conversion_row(corp, conversion) for conversion in conversions]
    created = 0
    for start in range(0, len(rows), MAX_ROWS_PER_REQUEST):
        created += conversions_import(rows=rows[start : start + MAX_ROWS_PER_REQUEST]).created
    return created
