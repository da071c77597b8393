"""The demo's four weeks of history (make run): planned deterministically, written through the
services on both sides of the API (so calibration finds WeCom agreeing), and written once."""

from __future__ import annotations

import datetime as dt
import io
from collections import Counter
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db.models import Max, Min

from analytics.models import QualityScore, RollupDay
from analytics.reports.base import ReportParams
from analytics.reports.channels import ChannelReport
from channels_app.models import Attribution, ChannelCost, Scan
from contacts.calibration import calibrate
from contacts.models import ConversionEvent, ExternalContact, FirstSource, RelationEvent
from scrm import days
from scrm.demo_history import demo_history_seed, demo_late_orders_import
from scrm.demo_plan import HISTORY_DAYS, plan_history
from scrm.management.commands import demo as demo_command
from scrm.management.commands.demo import DEMO_USER, Command
from scrm.wecom.models import Corp
from scrm.wecom.sandbox.models import SandboxFollow

CST = ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2026, 12, 6, 10, 30, tzinfo=CST)
POOLS = {"pyq_0012": ["staff01", "staff02", "staff03"], "xhs_618": ["staff03", "staff04"],
         "dy_ad_07": ["staff01", "staff02"], "store_nj01": ["staff01", "staff02"]}  # fmt: skip
VOLUME = 0.3  # a third of make run's customers: every kind of fact, in seconds


def test_the_plan_is_deterministic_and_ends_before_the_anchor_day():
    plan = plan_history(anchor=NOW.date(), tz=CST, pools=POOLS)
    assert plan == plan_history(anchor=NOW.date(), tz=CST, pools=POOLS)
    touches = [t for c in plan.customers for t in c.touches]
    times = (
        [t.at for t in touches]
        + [e.at for e in plan.endings]
        + [c.occurred_at for c in plan.conversions]
    )
    assert max(times) < plan.cutoff == dt.datetime(2026, 12, 6, tzinfo=CST)
    assert len({days.local_date(t.at, CST) for t in touches}) == HISTORY_DAYS
    first = days.local_date(min(t.at for t in touches), CST)
    assert first == NOW.date() - dt.timedelta(days=HISTORY_DAYS)  # later runs find it by this
    assert len({c.external_userid for c in plan.customers}) == len(plan.customers)
    # Channels differ: the Douyin feed loses far more customers than the store.
    first_code = {c.external_userid: c.touches[0].code for c in plan.customers}
    adds = Counter(first_code.values())
    lost = Counter(first_code[e.external_userid] for e in plan.endings)
    assert lost["dy_ad_07"] / adds["dy_ad_07"] > 3 * lost["store_nj01"] / adds["store_nj01"]
    # 20-40% consult within 72 hours; the store's customers add while it is open.
    added = {c.external_userid: c.touches[0].at for c in plan.customers}
    within = dt.timedelta(hours=72)
    consulted = {
        c.external_userid for c in plan.conversions
        if c.kind == "consult" and c.occurred_at - added[c.external_userid] <= within
    }  # fmt: skip
    assert 0.2 <= len(consulted) / len(plan.customers) <= 0.4
    store_hours = {t.at.astimezone(CST).hour for t in touches if t.code == "store_nj01"}
    assert min(store_hours) >= 10
    assert max(store_hours) < 22
    late = [c.kind for c in plan.conversions if c.late]
    assert late
    assert set(late) == {"order"}


@pytest.fixture
def demo_corp(db) -> Corp:
    with time_machine.travel(NOW, tick=True):
        command = Command()
        corp = command._corp(callback_url="http://127.0.0.1:8000/wecom/callback/")
        command._channels(corp)
        yield corp


def _counts(corp: Corp) -> tuple[int, ...]:
    return tuple(
        model.objects.filter(corp=corp).count()
        for model in (RelationEvent, Attribution, ExternalContact, FirstSource, Scan,
                      ConversionEvent, ChannelCost)
    )  # fmt: skip


@pytest.mark.django_db
def test_four_weeks_of_history_through_the_services_written_once(demo_corp):
    corp = demo_corp
    report = demo_history_seed(corp=corp, volume=VOLUME)
    assert (report.first_day, report.last_day) == (dt.date(2026, 11, 8), dt.date(2026, 12, 5))

    events = RelationEvent.objects.filter(corp=corp)
    kinds = Counter(events.values_list("kind", flat=True))
    assert kinds[RelationEvent.Kind.ADDED] == report.adds > 100
    assert kinds[RelationEvent.Kind.DELETED_BY_CUSTOMER] == report.deleted_by_customer > 10
    assert kinds[RelationEvent.Kind.DELETED_BY_STAFF] == report.deleted_by_staff > 0
    add_days = {days.local_date(e.occurred_at, corp) for e in events.filter(kind="added")}
    assert len(add_days) >= 21
    assert max(add_days) < days.today(corp)

    # Every add attributed to a live code and its channel, several channels; a tracked link's
    # adds to the very scan that showed that member.
    attributions = Attribution.objects.filter(corp=corp).select_related("scan", "live_code")
    assert attributions.count() == report.adds
    assert not attributions.filter(live_code=None).exists()
    assert not attributions.filter(channel=None).exists()
    assert len(set(attributions.values_list("channel__code", flat=True))) == 4
    landing = [a for a in attributions if a.live_code.mode == "landing"]
    assert landing
    assert all(
        a.scan is not None and a.scan.staff_id == a.staff_id
        and a.added_at - dt.timedelta(minutes=5) < a.scan.created_at <= a.added_at
        for a in landing
    )  # fmt: skip
    assert Scan.objects.filter(corp=corp).count() == report.scans > len(landing)

    # First sources are the first-touch attributions, each the customer's earliest add.
    earliest = dict(
        events.filter(kind="added").values("external_contact").annotate(first=Min("occurred_at"))
        .values_list("external_contact", "first")
    )  # fmt: skip
    first_touch = dict(
        attributions.filter(is_first_touch=True).values_list("external_contact", "add_event")
    )
    sources = FirstSource.objects.filter(corp=corp)
    assert sources.count() == len(earliest) == len(first_touch) == report.customers
    assert all(s.add_event_id == first_touch[s.external_contact_id] for s in sources)
    assert all(s.added_at == earliest[s.external_contact_id] for s in sources)
    assert attributions.filter(is_first_touch=False).exists()  # second touches by other codes

    # Consults, orders and refunds, in the past, matched to the customers (by unionid too).
    conversions = ConversionEvent.objects.filter(corp=corp)
    by_kind = Counter(conversions.values_list("kind", flat=True))
    assert by_kind["consult"] > 10
    assert by_kind["order"] > 5
    assert by_kind["refund"] > 0
    assert not conversions.filter(external_contact=None).exists()
    assert conversions.filter(external_userid="").exists()
    assert conversions.aggregate(last=Max("occurred_at"))["last"] < NOW
    costs = ChannelCost.objects.filter(corp=corp)
    assert costs.count() == report.costs
    assert costs.values("channel").distinct().count() == 4

    # WeCom (the sandbox) agrees: customers' details fetched, calibration finds nothing.
    assert not ExternalContact.objects.filter(corp=corp, name="").exists()
    assert SandboxFollow.objects.filter(deleted=True).count() == (
        report.deleted_by_customer + report.deleted_by_staff
    )
    run = calibrate(corp=corp, since=report.first_day)
    assert (run.status, run.relations_backfilled, run.deviations) == ("done", 0, 0)

    # A second run, even on a later day, adds nothing; the late orders arrive once.
    before = _counts(corp)
    with time_machine.travel(NOW + dt.timedelta(days=3), tick=True):
        again = demo_history_seed(corp=corp, volume=VOLUME)
    assert (again.written, again.first_day, _counts(corp)) == (0, report.first_day, before)
    # Nor when the plan would come out otherwise (here a bigger volume): never a second copy.
    assert demo_history_seed(corp=corp).written == 0
    assert _counts(corp) == before
    late = demo_late_orders_import(corp=corp, volume=VOLUME)
    assert late > 0
    assert demo_late_orders_import(corp=corp, volume=VOLUME) == 0
    late_orders = conversions.filter(note__startswith="补录")
    assert late_orders.count() == late
    assert all(o.created_at - o.occurred_at > dt.timedelta(days=1) for o in late_orders)


def test_demo_refuses_to_create_its_known_superuser_with_debug_off(db, settings):
    """DEBUG is off unless set: on a deployment `manage.py demo` creates no login whose
    password the README prints (an unusable port makes a missing guard fail, not serve)."""
    settings.DEBUG = False
    with pytest.raises(CommandError, match="runs only with DEBUG on"):
        call_command("demo", "--no-history", "--addr", "127.0.0.1:not-a-port")
    assert not get_user_model().objects.filter(username=DEMO_USER).exists()
    assert not Corp.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_reports_show_the_history_when_the_console_says_it_is_written(demo_corp, monkeypatch):
    """`make run`'s history thread refreshes the rollups and the ranking itself once the facts
    are written (and again after the late orders), before it prints the banner: a manager who
    opens /reports/ then sees the four weeks, not "not computed yet" until the next minute."""
    corp = demo_corp
    monkeypatch.setattr(demo_command, "_wait_for", lambda host, port: None)
    monkeypatch.setattr(demo_command, "LATE_ORDERS_AFTER", 0)
    monkeypatch.setattr(demo_command, "HISTORY_PAUSE", 0)
    seeded = []

    def seed(**kwargs):
        seeded.append(demo_history_seed(**kwargs, volume=VOLUME))
        return seeded[-1]

    monkeypatch.setattr(demo_command, "demo_history_seed", seed)
    before_late_orders = []

    def late_orders(**kwargs):  # what the reports showed when the banner was first printed
        before_late_orders.append(_history_totals(corp, seeded[0]))
        return demo_late_orders_import(**kwargs, volume=VOLUME)

    monkeypatch.setattr(demo_command, "demo_late_orders_import", late_orders)
    console = io.StringIO()
    command = Command(stdout=console, stderr=console)
    command.banner = "BANNER"
    command._history("127.0.0.1", 8000, corp)

    lines = console.getvalue().splitlines()
    assert "stopped" not in console.getvalue()
    assert any("late orders arrived" in line for line in lines)
    assert lines[-1] == "BANNER"
    history = seeded[0]
    ((computed_days, adds, revenue),) = before_late_orders
    assert computed_days == (history.last_day - history.first_day).days + 1
    assert adds == history.adds
    assert revenue > 0
    # The late orders revise their days before the console says they arrived.
    after = _history_totals(corp, history)
    assert after[:2] == (computed_days, adds)
    assert after[2] > revenue
    assert QualityScore.objects.filter(corp=corp).exists()  # ranked on the history's rollups


def _history_totals(corp: Corp, history) -> tuple[int, int, Decimal]:
    """The history's days computed (and not dirty), and the channel report's adds and revenue."""
    computed = RollupDay.objects.filter(
        corp=corp, day__gte=history.first_day, day__lte=history.last_day,
        computed_at__isnull=False, dirty=False,
    )  # fmt: skip
    params = ReportParams(corp=corp, first=history.first_day, last=history.last_day)
    totals = ChannelReport(params).calculate(rows=False).totals
    return computed.count(), totals["adds"], totals["revenue"]
