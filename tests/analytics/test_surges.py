"""Surges (analytics.surges): a live code's last hour against the same hour of past weeks; an
alert while it lasts, and the surge tag (紧急跟进) on the customers it brought, once each."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from analytics.models import DecisionSettings, SurgeAlert
from analytics.surges import surge_check, surge_hours, surge_windows
from channels_app.models import Attribution, Channel, LandingSlot, LiveCode, Scan
from channels_app.services.live_codes import live_code_create
from channels_app.services.publishing import live_code_publish
from contacts.models import CustomerTag, ExternalContact, TimelineEvent
from contacts.services import staff_get_or_create
from scrm.management.commands.setup_periodic_tasks import PERIODIC_TASKS
from scrm.wecom.models import ApiCall, Corp, CorpMembership, Role
from tests.factories import CorpFactory
from tests.flows import customer_flows_in

HOUR = timedelta(hours=1)
WEEK = timedelta(days=7)
# A Thursday 10:30 UTC (18:30 in Shanghai), four days after the US clocks went back.
NOW = datetime(2026, 11, 5, 10, 30, tzinfo=UTC)


def _code(corp: Corp, *, mode: str = LiveCode.Mode.NATIVE, slug: str = "xhs618") -> LiveCode:
    channel, _ = Channel.objects.get_or_create(corp=corp, code="xhs", defaults={"name": "小红书"})
    pool = [{"staff": staff_get_or_create(corp=corp, userid=f"staff0{n}")} for n in (1, 2, 3)]
    code = live_code_create(corp=corp, channel=channel, name=f"码 {slug}", slug=slug, mode=mode,
                            pool=pool)  # fmt: skip
    return live_code_publish(live_code=code)


def _scans(code: LiveCode, at: datetime, count: int) -> None:
    Scan.objects.bulk_create(
        [Scan(corp_id=code.corp_id, live_code=code, device="mobile",
              created_at=at + timedelta(seconds=n)) for n in range(count)]
    )  # fmt: skip


def _adds(sandbox_corp, post_event, code: LiveCode, at: datetime, count: int, seed: int = 0):
    """`count` new customers add through the native code at `at` (CreateTime), each through
    the callback and the pipeline; returns their external_userids."""
    return [
        customer_flows_in(sandbox_corp, post_event, state=code.state, seed=seed + n,
                          userid=f"staff0{n % 3 + 1}",
                          create_time=int((at + timedelta(seconds=n)).timestamp())).external_userid
        for n in range(count)
    ]  # fmt: skip


def _tagged(corp: Corp, tag_name: str = "紧急跟进") -> set[str]:
    return set(
        CustomerTag.objects.filter(
            corp=corp, tag__name=tag_name, source=CustomerTag.Source.SURGE
        ).values_list("follow_relation__external_contact__external_userid", flat=True)
    )


def _mark_tags() -> int:
    return ApiCall.objects.filter(endpoint="externalcontact/mark_tag", errcode=0).count()


# -- the Done-when line: a sandbox burst after a quiet history ---------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_sandbox_burst_after_a_quiet_history_tags_exactly_its_customers_and_raises_one_alert(
    corp, sandbox_corp, post_event, live_server
):
    landing = _code(corp, mode=LiveCode.Mode.LANDING, slug="burst")
    native = _code(corp, slug="poster")
    slot = LandingSlot.objects.filter(live_code=landing).order_by("pk").first()
    now = timezone.now()
    # Four quiet weeks: two scans and two adds in this hour of the week, through the slot's
    # state (each add joins its scan), 7..28 days ago.
    quiet = []
    for week in range(1, 5):
        at = now - week * WEEK - timedelta(minutes=30)
        for n in range(2):
            Scan.objects.create(corp=corp, live_code=landing, device="mobile", slot=slot,
                                staff=slot.staff, created_at=at + timedelta(minutes=n))  # fmt: skip
            quiet.append(customer_flows_in(
                sandbox_corp, post_event, state=slot.state, userid=slot.staff.userid,
                seed=week * 10 + n,
                create_time=int((at + timedelta(minutes=n, seconds=5)).timestamp()),
            ).external_userid)  # fmt: skip
    # Another code's ordinary hour, now: three adds, far from the minimum.
    others = _adds(sandbox_corp, post_event, native, now - timedelta(minutes=20), 3, seed=100)
    before = set(ExternalContact.objects.values_list("external_userid", flat=True))

    out = io.StringIO()
    call_command("wecom_sandbox", "simulate", "--corp", corp.corp_id, "--code", "burst",
                 "--adds", "25", "--rate", "50", "--seed", "7", "--url", live_server.url,
                 stdout=out)  # fmt: skip
    burst = set(ExternalContact.objects.values_list("external_userid", flat=True)) - before
    assert len(burst) == 25, out.getvalue()

    check = surge_check(corp=corp)
    (alert,) = SurgeAlert.objects.all()
    assert (alert.live_code_id, alert.metric, alert.ended_at) == (landing.pk, "both", None)
    assert (alert.scans, alert.adds, alert.scans_usual, alert.adds_usual) == (25, 25, 2, 2)
    assert check.tagged == 25 == alert.customers_tagged
    assert _tagged(corp) == burst  # not the quiet weeks' customers, not the other code's
    assert not _tagged(corp) & (set(quiet) | set(others))
    assert _mark_tags() == 25  # once per customer
    assert ApiCall.objects.filter(endpoint="externalcontact/add_corp_tag").count() == 1
    timeline = TimelineEvent.objects.filter(kind=TimelineEvent.Kind.TAGGED, data__source="surge")
    assert set(timeline.values_list("external_contact__external_userid", flat=True)) == burst
    assert timeline.count() == 25

    again = surge_check(corp=corp)  # a minute later: the same alert, nobody tagged twice
    assert (again.opened, again.tagged) == (0, 0)
    assert (SurgeAlert.objects.count(), _mark_tags()) == (1, 25)
    assert TimelineEvent.objects.filter(kind=TimelineEvent.Kind.TAGGED).count() == 25

    later = timezone.now() + 2 * HOUR  # the rate has fallen back: the last hour is quiet
    assert surge_check(corp=corp, now=later).ended == 1
    alert.refresh_from_db()
    assert alert.ended_at == later
    assert surge_check(corp=corp, now=later + timedelta(minutes=1)).opened == 0
    assert (SurgeAlert.objects.count(), _mark_tags()) == (1, 25)


# -- the rule -----------------------------------------------------------------------------------


def test_the_windows_are_the_last_hour_and_the_same_hour_of_past_weeks():
    windows = surge_windows(now=NOW, weeks=4, zone=UTC)
    assert windows[0] == (NOW - HOUR, NOW)
    assert windows[1:] == [(NOW - k * WEEK - HOUR, NOW - k * WEEK) for k in (1, 2, 3, 4)]


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "UTC", "Asia/Kolkata"])
def test_the_corps_time_zone_changes_nothing_where_clocks_never_change(corp, zone):
    Corp.objects.filter(pk=corp.pk).update(time_zone=zone)
    corp.refresh_from_db()
    code = _code(corp)
    for week in (1, 2, 3, 4):
        _scans(code, NOW - week * WEEK - timedelta(minutes=20), 2)
    _scans(code, NOW - timedelta(minutes=10), 25)
    hour = surge_hours(corp=corp, now=NOW)[code.pk]
    assert (hour.scans, hour.scans_usual, hour.scans_surge, hour.adds_surge) == (25, 2, True, False)


def test_only_the_same_weekday_and_hour_make_the_usual_level(corp):
    code = _code(corp)
    _scans(code, NOW - timedelta(minutes=10), 25)
    for week in (1, 2, 3, 4):
        # Busy at other hours of the week: a day earlier, three hours earlier, an hour later.
        _scans(code, NOW - week * WEEK + timedelta(days=1, minutes=-20), 30)
        _scans(code, NOW - week * WEEK - timedelta(hours=3), 30)
        _scans(code, NOW - week * WEEK + timedelta(minutes=5), 30)
        _scans(code, NOW - week * WEEK - timedelta(minutes=20), 2)
    hour = surge_hours(corp=corp, now=NOW)[code.pk]
    assert (hour.scans_usual, hour.scans_surge) == (2, True)
    for week in (1, 2, 3):  # the same hour busy in three weeks of four: usual, not a surge
        _scans(code, NOW - week * WEEK - timedelta(minutes=50), 10)
    hour = surge_hours(corp=corp, now=NOW)[code.pk]
    assert (hour.scans_usual, hour.scans_surge) == (12, False)  # 3 x 12 > 25


def test_a_week_earlier_is_the_same_wall_clock_hour_across_a_clock_change(corp):
    """Los Angeles went back an hour on 2026-11-01: the same local hour a week before NOW is
    169 hours earlier, not 168."""
    Corp.objects.filter(pk=corp.pk).update(time_zone="America/Los_Angeles")
    corp.refresh_from_db()
    code = _code(corp)
    _scans(code, NOW - timedelta(minutes=10), 25)
    _scans(code, NOW - WEEK - HOUR - timedelta(minutes=20), 30)  # the same local hour
    _scans(code, NOW - 2 * WEEK - HOUR - timedelta(minutes=20), 30)
    _scans(code, NOW - 3 * WEEK - HOUR - timedelta(minutes=20), 30)
    hour = surge_hours(corp=corp, now=NOW)[code.pk]
    assert (hour.scans_usual, hour.scans_surge) == (30, False)


def test_counting_is_two_grouped_queries_whatever_the_number_of_codes(
    corp, django_assert_num_queries
):
    codes = [_code(corp, slug=f"code{n}") for n in range(6)]
    for code in codes:
        _scans(code, NOW - timedelta(minutes=5), 3)
        _scans(code, NOW - WEEK - timedelta(minutes=5), 1)
    settings = DecisionSettings(corp=corp)
    with django_assert_num_queries(2):
        hours = surge_hours(corp=corp, now=NOW, settings=settings)
    assert {code_id: hour.scans for code_id, hour in hours.items()} == {c.pk: 3 for c in codes}


def test_a_code_without_history_surges_when_its_adds_reach_the_minimum(
    corp, sandbox_corp, post_event
):
    """Median 0: any count above 0 is above 3 x 0, so the minimum (20) is the only guard."""
    code = _code(corp)
    now = timezone.now()
    first = _adds(sandbox_corp, post_event, code, now - timedelta(minutes=40), 19)
    check = surge_check(corp=corp, now=now)
    assert (check.codes[code.pk].adds, check.codes[code.pk].adds_usual) == (19, 0)
    assert (check.opened, SurgeAlert.objects.count(), _mark_tags()) == (0, 0, 0)  # below 20
    rest = _adds(sandbox_corp, post_event, code, now - timedelta(minutes=10), 6, seed=50)
    check = surge_check(corp=corp, now=now)
    (alert,) = SurgeAlert.objects.all()
    assert (alert.metric, alert.adds, alert.adds_usual, alert.scans) == ("adds", 25, 0, 0)
    assert _tagged(corp) == set(first + rest)
    assert check.tagged == 25 == _mark_tags()


def test_the_surge_period_decides_who_is_tagged(corp, sandbox_corp, post_event):
    """Tagged: first adds through the code from an hour before detection until the end, also
    those whose callbacks come after the end. Not: earlier adds, later adds, re-adds."""
    code = _code(corp)
    base = timezone.now() - 6 * HOUR
    early = _adds(sandbox_corp, post_event, code, base - 2 * HOUR, 1, seed=1)
    burst = _adds(sandbox_corp, post_event, code, base - timedelta(minutes=30), 20, seed=10)
    assert surge_check(corp=corp, now=base).opened == 1
    while_open = _adds(sandbox_corp, post_event, code, base + timedelta(minutes=10), 1, seed=40)
    check = surge_check(corp=corp, now=base + timedelta(minutes=15))  # 21 in the hour: open
    assert (check.ended, check.tagged) == (0, 1)
    assert surge_check(corp=corp, now=base + 2 * HOUR).ended == 1
    late = _adds(sandbox_corp, post_event, code, base + HOUR, 1, seed=50)  # callback after the end
    after = _adds(sandbox_corp, post_event, code, base + 2 * HOUR + timedelta(minutes=5), 1,
                  seed=60)  # fmt: skip
    check = surge_check(corp=corp, now=base + 2 * HOUR + timedelta(minutes=10))
    assert check.tagged == 1
    assert _tagged(corp) == set(burst + while_open + late)
    assert not _tagged(corp) & set(early + after)
    alert = SurgeAlert.objects.get()
    assert alert.customers_tagged == 22 == _mark_tags()
    assert (alert.peak_adds, alert.adds) == (21, 20)
    assert Attribution.objects.filter(live_code=code, is_first_touch=True).count() == 24


def test_switched_off_nothing_is_counted_tagged_or_shown(corp, sandbox_corp, post_event):
    code = _code(corp)
    _scans(code, NOW - timedelta(minutes=10), 40)
    DecisionSettings.objects.create(corp=corp, surge_enabled=False)
    assert (surge_check(corp=corp, now=NOW).opened, SurgeAlert.objects.count()) == (0, 0)
    DecisionSettings.objects.filter(corp=corp).update(surge_enabled=True)
    assert surge_check(corp=corp, now=NOW).opened == 1
    DecisionSettings.objects.filter(corp=corp).update(surge_enabled=False)
    assert surge_check(corp=corp, now=NOW + timedelta(minutes=1)).ended == 1  # ends at once
    assert SurgeAlert.objects.filter(ended_at__isnull=True).count() == 0
    assert _mark_tags() == 0


def test_the_settings_steer_the_rule_and_the_tag(corp, sandbox_corp, post_event):
    code = _code(corp)
    DecisionSettings.objects.create(corp=corp, surge_multiplier=Decimal(2), surge_min_count=5,
                                    surge_weeks=2, surge_tag_name="爆量",
                                    auto_tag_group="系统")  # fmt: skip
    now = timezone.now()
    _adds(sandbox_corp, post_event, code, now - WEEK - timedelta(minutes=30), 2)
    _adds(sandbox_corp, post_event, code, now - 3 * WEEK - timedelta(minutes=30), 9, seed=20)
    burst = _adds(sandbox_corp, post_event, code, now - timedelta(minutes=5), 5, seed=40)
    check = surge_check(corp=corp, now=now)
    hour = check.codes[code.pk]
    # Two weeks of history (2 and 0: the third week is not looked at): median 1; 5 > 2 x 1.
    assert (hour.adds, hour.adds_usual, hour.adds_surge) == (5, 1, True)
    assert _tagged(corp, "爆量") == set(burst)
    assert CustomerTag.objects.filter(tag__name="爆量", tag__group__name="系统").count() == 5


# -- beat, and the operators' admin -------------------------------------------------------------


def test_beat_checks_every_corp_every_minute(corp):
    assert ("analytics: detect surges on live codes", "analytics.tasks.surges_check_all_task",
            60) in PERIODIC_TASKS  # fmt: skip
    from analytics.tasks import surges_check_all_task

    code = _code(corp)
    _scans(code, timezone.now() - timedelta(minutes=5), 20)
    assert surges_check_all_task.delay().get() == 1
    assert SurgeAlert.objects.filter(live_code=code, ended_at__isnull=True).count() == 1


def test_the_minute_check_leaves_the_tagging_to_a_task_queued_behind_the_inbox(
    corp, sandbox_corp, post_event, monkeypatch
):
    """Tagging a burst's customers (a mark_tag each) waits, as every tag does, behind the
    inbox drains that the burst's welcomes wait for: priority 9, one queued at a time."""
    from django.core.cache import cache

    from analytics import tasks

    code = _code(corp)
    _adds(sandbox_corp, post_event, code, timezone.now() - timedelta(minutes=10), 20)
    queued = []
    monkeypatch.setattr(tasks.surge_tag_task, "apply_async",
                        lambda args, **options: queued.append((tuple(args), options)))  # fmt: skip
    cache.delete(tasks.SURGE_TAG_QUEUED.format(corp.pk))
    try:
        assert tasks.surge_check_task(corp.pk) == 1  # the alert opens: the tagging is queued
        assert tasks.surge_check_task(corp.pk) == 0  # a minute later: still queued, not twice
        assert queued == [((corp.pk,), {"priority": 9})]
        assert not CustomerTag.objects.filter(source=CustomerTag.Source.SURGE).exists()
        assert tasks.surge_tag_task(corp.pk) == 20
        assert _mark_tags() == 20
        tasks.surge_check_task(corp.pk)  # the alert still open: due again, and nobody left
        assert len(queued) == 2
        assert tasks.surge_tag_task(corp.pk) == 0
        assert _mark_tags() == 20
    finally:
        cache.delete(tasks.SURGE_TAG_QUEUED.format(corp.pk))


def _alert(corp: Corp, code: LiveCode, **fields) -> SurgeAlert:
    values = {"metric": "adds", "started_at": timezone.now(), "scans": 0, "scans_usual": 0,
              "adds": 25, "adds_usual": 2, "peak_scans": 0, "peak_adds": 27, **fields}  # fmt: skip
    return SurgeAlert.objects.create(corp=corp, live_code=code, **values)


def _member(django_user_model, name: str, corp: Corp, role: str = Role.OPERATOR):
    user = django_user_model.objects.create_user(username=name, password="pw", is_staff=True)
    CorpMembership.objects.create(user=user, corp=corp, role=role)
    return user


def test_the_banner_shows_open_alerts_of_ones_own_corps_on_the_index_and_code_pages(
    corp, client, django_user_model
):
    code = _code(corp)
    other_corp = CorpFactory(name="乙企业")
    alert = _alert(corp, code)
    manager = _member(django_user_model, "manager", corp, Role.MANAGER)
    stranger = _member(django_user_model, "stranger", other_corp)
    marker = f'data-surge-alert="{alert.pk}"'
    client.force_login(manager)
    for url in (reverse("admin:index"), reverse("admin:channels_app_livecode_changelist"),
                reverse("admin:channels_app_livecode_change", args=[code.pk])):  # fmt: skip
        with CaptureQueriesContext(connection) as queries:
            page = client.get(url).content.decode()
        assert marker in page, url
        assert "27" in page  # its peak adds
        banner = [q for q in queries.captured_queries if "analytics_surgealert" in q["sql"]]
        assert len(banner) == 1, url  # one query
    assert (
        marker
        not in client.get(reverse("admin:contacts_externalcontact_changelist")).content.decode()
    )
    client.force_login(stranger)
    assert marker not in client.get(reverse("admin:index")).content.decode()
    SurgeAlert.objects.filter(pk=alert.pk).update(ended_at=timezone.now())
    client.force_login(manager)
    assert 'id="surge-alerts"' not in client.get(reverse("admin:index")).content.decode()


def test_the_alerts_list_is_read_only_states_the_rule_and_hides_other_corps(
    corp, client, django_user_model
):
    mine = _alert(corp, _code(corp))
    other_corp = CorpFactory(name="乙企业")
    channel = Channel.objects.create(corp=other_corp, name="抖音", code="dy")
    theirs = _alert(other_corp, LiveCode.objects.create(corp=other_corp, channel=channel,
                                                        name="抖音码", slug="dy"))  # fmt: skip
    client.force_login(_member(django_user_model, "operator", corp))
    listing = client.get(reverse("admin:analytics_surgealert_changelist"))
    assert {obj.pk for obj in listing.context["cl"].result_list} == {mine.pk}
    assert 'id="surge-rule"' in listing.content.decode()
    url = reverse("admin:analytics_surgealert_change", args=[theirs.pk])
    assert client.get(url).status_code == 404
    mine_url = reverse("admin:analytics_surgealert_change", args=[mine.pk])
    assert client.post(mine_url, {}).status_code == 403
    assert client.get(reverse("admin:analytics_surgealert_add")).status_code == 403
