"""A day is the corp's local day: the same adds and scans, for a corp in Shanghai and one in Los
Angeles, with the server in UTC, fall on each corp's own days everywhere they are counted,
filtered or shown.

The clock is frozen at 2026-12-06 09:00 UTC: 17:00 on Dec 6 in Shanghai (CST, UTC+8) and 01:00
on Dec 6 in Los Angeles (PST, UTC-8). Four moments, each with one scan, one add (a new
customer) and one order in both corps:

    moment (UTC)       Shanghai           Los Angeles        UTC day
    M1 Dec 5 15:30     Dec 5 23:30        Dec 5 07:30        Dec 5
    M2 Dec 5 16:30     Dec 6 00:30        Dec 5 08:30        Dec 5
    M3 Dec 6 07:00     Dec 6 15:00        Dec 5 23:00        Dec 6
    M4 Dec 6 08:30     Dec 6 16:30        Dec 6 00:30        Dec 6

Today (Dec 6) holds three of them in Shanghai and one in Los Angeles; counting by the server's
zone would say two for both, by the old default (Asia/Shanghai) three for both.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.cache import cache
from django.db.models import Count, DateTimeField
from django.urls import reverse
from django.utils import translation
from rest_framework.test import APIClient

from analytics.models import QualityScore
from channels_app.lock_objects import daily_counter_claim
from channels_app.models import Channel, DailyCounter, LiveCode, PoolMember, Scan
from channels_app.selectors import channels_with_today, live_codes_with_today, referrer_leaderboard
from channels_app.services.assignment import counters_ensure, local_now
from channels_app.state import encode_state
from contacts.calibration import WECOM_DAY_TZ, our_new_contact_counts
from contacts.models import (
    AuditLog,
    CalibrationRun,
    ConversionEvent,
    ExternalContact,
    TimelineEvent,
)
from contacts.services import staff_get_or_create
from scrm import days
from scrm.pipeline import add_record
from scrm.wecom.models import CallbackEvent, Corp
from scrm.wecom.sandbox.simulate import random_aes_key
from scrm.wecom.services import corp_create

pytestmark = pytest.mark.django_db

UTC = dt.UTC
SHANGHAI, LOS_ANGELES = "Asia/Shanghai", "America/Los_Angeles"
NOW = dt.datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
M1 = dt.datetime(2026, 12, 5, 15, 30, tzinfo=UTC)
M2 = dt.datetime(2026, 12, 5, 16, 30, tzinfo=UTC)
M3 = dt.datetime(2026, 12, 6, 7, 0, tzinfo=UTC)
M4 = dt.datetime(2026, 12, 6, 8, 30, tzinfo=UTC)
MOMENTS = [M1, M2, M3, M4]
DEC_5, DEC_6 = dt.date(2026, 12, 5), dt.date(2026, 12, 6)
# How many of the four moments fall on Dec 5 and on Dec 6, per corp.
PER_DAY = {SHANGHAI: {DEC_5: 1, DEC_6: 3}, LOS_ANGELES: {DEC_5: 3, DEC_6: 1}}


@pytest.fixture(autouse=True)
def _server_in_utc(settings):
    settings.TIME_ZONE = "UTC"


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def _corp(corp_id: str, time_zone: str) -> Corp:
    return corp_create(corp_id=corp_id, name=corp_id, secret="s" * 32,
                       callback_token="token0123456789", encoding_aes_key=random_aes_key(),
                       time_zone=time_zone)  # fmt: skip


def _scenario(corp: Corp, clock) -> LiveCode:
    """A native code with one member; at each moment a scan (assigned), an add, an order."""
    staff = staff_get_or_create(corp=corp, userid="staff01")
    channel = Channel.objects.create(corp=corp, name=f"渠道 {corp.time_zone}", code="pyq_days")
    code = LiveCode.objects.create(corp=corp, channel=channel, name=f"码 {corp.time_zone}",
                                   slug=f"days-{corp.pk}", mode=LiveCode.Mode.NATIVE)  # fmt: skip
    code.state = encode_state("native", code.pk)
    code.save(update_fields=["state"])
    PoolMember.objects.create(live_code=code, staff=staff, daily_cap=10)
    for index, moment in enumerate(MOMENTS):
        clock.move_to(moment)
        day = local_now(code).date()  # the corp's day: the counter's
        counters_ensure(live_code=code, day=day, staff_ids=[staff.pk])
        assert daily_counter_claim(corp_id=corp.pk, live_code_id=code.pk, staff_id=staff.pk,
                                   day=day, cap=10, wait=True)  # fmt: skip
        Scan.objects.create(corp=corp, live_code=code, created_at=moment, device="mobile",
                            staff=staff)  # fmt: skip
        add_record(
            corp=corp, userid="staff01", external_userid=f"wm{corp.pk}x{index}",
            state=code.state, added_at=moment,
        )  # fmt: skip
        ConversionEvent.objects.create(corp=corp, external_id=f"order-{index}", kind="order",
                                       occurred_at=moment)  # fmt: skip
    clock.move_to(NOW)
    return code


@pytest.fixture
def corps(clock) -> dict[str, Corp]:
    return {
        SHANGHAI: _corp("wwdaysshanghai01", SHANGHAI),
        LOS_ANGELES: _corp("wwdayslosangele1", LOS_ANGELES),
    }


@pytest.fixture
def codes(corps, clock) -> dict[str, LiveCode]:
    return {zone: _scenario(corp, clock) for zone, corp in corps.items()}


# -- the helper ------------------------------------------------------------------------------


def test_today_and_local_dates_are_the_corps():
    la, shanghai = ZoneInfo(LOS_ANGELES), ZoneInfo(SHANGHAI)
    assert (days.today(shanghai, now=M3), days.today(la, now=M3)) == (DEC_6, DEC_5)
    assert [days.local_date(m, la) for m in MOMENTS] == [DEC_5, DEC_5, DEC_5, DEC_6]
    assert days.local_datetime(M2, shanghai) == dt.datetime(2026, 12, 6, 0, 30, tzinfo=shanghai)


def test_day_bounds_are_utc_and_half_open():
    la = ZoneInfo(LOS_ANGELES)
    assert days.day_bounds(DEC_6, la) == (
        dt.datetime(2026, 12, 6, 8, tzinfo=UTC), dt.datetime(2026, 12, 7, 8, tzinfo=UTC),
    )  # fmt: skip
    assert days.days_bounds(DEC_5, None, ZoneInfo(SHANGHAI)) == (
        dt.datetime(2026, 12, 4, 16, tzinfo=UTC), None,
    )  # fmt: skip
    # Beyond what a datetime holds a bound bounds nothing: None, not an error.
    assert days.day_start(dt.date(9999, 12, 31), la, days_later=1) is None
    assert days.day_start(dt.date(1, 1, 1), ZoneInfo(SHANGHAI)) is None
    # West of UTC it exists (in local mean time then: UTC-7:52:58).
    assert days.day_start(dt.date(1, 1, 1), la) == dt.datetime(1, 1, 1, 7, 52, 58, tzinfo=UTC)


def test_local_display_names_the_zone():
    assert days.local_display(M2, ZoneInfo(SHANGHAI)) == "2026-12-06 00:30 CST"
    assert days.local_display(M2, ZoneInfo(LOS_ANGELES)) == "2026-12-05 08:30 PST"
    assert days.local_display(M2, UTC, seconds=True) == "2026-12-05 16:30:00 UTC"
    assert days.local_display(None, UTC) == ""


def test_local_day_groups_by_the_corps_days(corps, codes):
    for zone, corp in corps.items():
        rows = (
            Scan.objects.filter(corp=corp)
            .annotate(day=days.local_day("created_at", corp))
            .values("day")
            .annotate(n=Count("pk"))
            .order_by()
        )
        assert {row["day"]: row["n"] for row in rows} == PER_DAY[zone], zone


def test_per_corp_is_a_constant_when_every_corp_shares_one_zone(corps):
    Corp.objects.filter(time_zone=LOS_ANGELES).update(time_zone=SHANGHAI)
    days.corp_zones_clear()
    start = days.per_corp(lambda tz: days.day_start(DEC_6, tz), output_field=DateTimeField())
    assert start.value == dt.datetime(2026, 12, 5, 16, tzinfo=UTC)
    assert days.zones_in_use() == [SHANGHAI]


def test_corp_zone_by_primary_key_without_a_query(corps, django_assert_num_queries):
    days.corp_zone(corps[SHANGHAI].pk)  # read once
    with django_assert_num_queries(0):
        assert days.corp_zone(corps[LOS_ANGELES].pk) == ZoneInfo(LOS_ANGELES)
        assert days.corp_zone(None) == UTC
    assert days.corp_zone(10**9) == UTC  # no such corp (one query to look again)
    assert days.corp_zone_name("wwdayslosangele1") == LOS_ANGELES


def test_a_corp_saved_in_this_process_is_seen_at_once(corps):
    assert days.zones_in_use() == [LOS_ANGELES, SHANGHAI]
    _corp("wwdaystokyo00001", "Asia/Tokyo")
    assert days.zones_in_use() == [LOS_ANGELES, SHANGHAI, "Asia/Tokyo"]


def test_a_corp_changed_in_another_process_is_seen_once_it_bumps_the_version(corps, monkeypatch):
    monkeypatch.setattr(days, "CORP_ZONES_CHECK_SECONDS", 0.0)
    assert days.zones_in_use() == [LOS_ANGELES, SHANGHAI]
    # Another process writes (no signal in this one) and bumps the shared version on commit.
    Corp.objects.filter(time_zone=LOS_ANGELES).update(time_zone="Asia/Tokyo")
    assert days.zones_in_use() == [LOS_ANGELES, SHANGHAI]
    cache.set(days.CORP_ZONES_VERSION_KEY, "bumped by another process")
    assert days.zones_in_use() == [SHANGHAI, "Asia/Tokyo"]


# -- counters and today figures --------------------------------------------------------------


def test_daily_counters_count_the_corps_days(corps, codes):
    for zone, code in codes.items():
        counters = {c.day: (c.assigned, c.added) for c in DailyCounter.objects.filter(
            live_code=code)}  # fmt: skip
        assert counters == {day: (n, n) for day, n in PER_DAY[zone].items()}, zone


def test_today_figures_are_each_rows_corps_today(corps, codes):
    rows = {code.corp.time_zone: code for code in live_codes_with_today()}
    figures = {zone: (r.scans_today, r.adds_today, r.assigned_today, r.cap_used_today, r.cap_today)
               for zone, r in rows.items()}  # fmt: skip
    assert figures == {SHANGHAI: (3, 3, 3, 3, 10), LOS_ANGELES: (1, 1, 1, 1, 10)}
    channels = {c.corp.time_zone: (c.scans_today, c.adds_today) for c in channels_with_today()}
    assert channels == {SHANGHAI: (3, 3), LOS_ANGELES: (1, 1)}


def test_a_given_day_is_a_local_day_of_each_rows_corp(corps, codes):
    rows = live_codes_with_today(day=DEC_5)
    assert {r.corp.time_zone: (r.scans_today, r.adds_today, r.assigned_today) for r in rows} == {
        SHANGHAI: (1, 1, 1), LOS_ANGELES: (3, 3, 3),
    }  # fmt: skip
    channels = channels_with_today(day=DEC_5)
    assert {c.corp.time_zone: c.scans_today for c in channels} == {SHANGHAI: 1, LOS_ANGELES: 3}


def test_today_rolls_over_at_each_corps_midnight(corps, codes, clock):
    clock.move_to(dt.datetime(2026, 12, 6, 16, 30, tzinfo=UTC))  # Shanghai: Dec 7, 00:30
    rows = {r.corp.time_zone: r.scans_today for r in live_codes_with_today()}
    assert rows == {SHANGHAI: 0, LOS_ANGELES: 1}


def test_referral_leaderboard_counts_from_the_corps_local_day(corps, codes):
    for corp in corps.values():
        referrer = ExternalContact.objects.create(corp=corp, external_userid=f"wmref{corp.pk}")
        codes[corp.time_zone].attributions.update(referrer=referrer)
    board = {zone: referrer_leaderboard(corp=corp, since=DEC_6)[0]["new_customers"]
             for zone, corp in corps.items()}  # fmt: skip
    assert board == {SHANGHAI: 3, LOS_ANGELES: 1}


# -- API filters -------------------------------------------------------------------------------


@pytest.fixture
def api(admin_user) -> APIClient:
    client = APIClient()
    client.force_login(admin_user)
    return client


def _count(api: APIClient, url: str, **params: str) -> int:
    response = api.get(url, params)
    assert response.status_code == 200, response.content
    return response.json()["count"]


@pytest.mark.parametrize(
    ("url", "lower", "upper"),
    [
        ("/api/v1/scans/", "from", "to"),
        ("/api/v1/attributions/", "from", "to"),
        ("/api/v1/contacts/", "added_from", "added_to"),
        ("/api/v1/conversions/", "occurred_from", "occurred_to"),
    ],
)
def test_from_and_to_are_local_days_of_the_named_corp_or_of_each_row(
    api, corps, codes, url, lower, upper
):
    dec_5, dec_6 = DEC_5.isoformat(), DEC_6.isoformat()
    # Spanning both corps: Dec 6 is three rows in Shanghai and one in Los Angeles.
    assert _count(api, url, **{lower: dec_6}) == 3 + 1
    assert _count(api, url, **{upper: dec_5}) == 1 + 3
    assert _count(api, url, **{lower: dec_5, upper: dec_5}) == 1 + 3
    # Naming one corp: its own days.
    for zone, corp in corps.items():
        named = {"corp": corp.corp_id}
        assert _count(api, url, **named, **{lower: dec_6}) == PER_DAY[zone][DEC_6], zone
        assert _count(api, url, **named, **{upper: dec_5}) == PER_DAY[zone][DEC_5], zone
        assert _count(api, url, **named, **{lower: dec_6, upper: dec_5}) == 0
        assert _count(api, url, **named, **{lower: "0001-01-01", upper: "9999-12-31"}) == 4


def test_api_today_figures_are_each_rows_corps(api, corps, codes):
    codes_api = {r["corp"]: r["scans_today"] for r in api.get("/api/v1/live-codes/").json()[
        "results"]}  # fmt: skip
    assert codes_api == {"wwdaysshanghai01": 3, "wwdayslosangele1": 1}
    channels = {r["corp"]: r["adds_today"] for r in api.get("/api/v1/channels/").json()["results"]}
    assert channels == {"wwdaysshanghai01": 3, "wwdayslosangele1": 1}


# -- admin ---------------------------------------------------------------------------------------


def test_admin_code_and_channel_lists_show_each_corps_today(admin_client, corps, codes):
    response = admin_client.get(reverse("admin:channels_app_livecode_changelist"))
    rows = {r.corp.time_zone: (r.scans_today, r.adds_today, r.assigned_today)
            for r in response.context["cl"].result_list}  # fmt: skip
    assert rows == {SHANGHAI: (3, 3, 3), LOS_ANGELES: (1, 1, 1)}
    assert "3 / 10" in response.content.decode()  # used / cap today of the Shanghai code
    response = admin_client.get(reverse("admin:channels_app_channel_changelist"))
    rows = {r.corp.time_zone: r.scans_today for r in response.context["cl"].result_list}
    assert rows == {SHANGHAI: 3, LOS_ANGELES: 1}


def test_admin_lists_show_times_on_the_rows_corps_clock(admin_client, corps, codes):
    html = admin_client.get(reverse("admin:channels_app_scan_changelist")).content.decode()
    assert "2026-12-06 00:30 CST" in html  # M2 in Shanghai
    assert "2026-12-05 08:30 PST" in html  # M2 in Los Angeles
    html = admin_client.get(reverse("admin:contacts_externalcontact_changelist")).content.decode()
    assert "2026-12-06 16:30 CST" in html  # M4, first added
    assert "2026-12-06 00:30 PST" in html


def test_calibration_start_refuses_the_corps_today_not_the_servers(admin_client, corps):
    url = reverse("admin:contacts_calibrationrun_add")
    # Dec 6 is today in both; Dec 5 is yesterday in both (the server's UTC says Dec 6 too).
    for corp in corps.values():
        refused = admin_client.post(url, {"corp": corp.pk, "since": "2026-12-06"})
        assert refused.status_code == 200
        assert "since" in refused.context["form"].errors
    with time_machine.travel(dt.datetime(2026, 12, 6, 17, tzinfo=UTC), tick=False):
        # Shanghai is on Dec 7 now: Dec 6 is yesterday there, still today in Los Angeles.
        assert admin_client.post(url, {"corp": corps[LOS_ANGELES].pk,
                                       "since": "2026-12-06"}).status_code == 200  # fmt: skip
        accepted = admin_client.post(url, {"corp": corps[SHANGHAI].pk, "since": "2026-12-06"})
        assert accepted.status_code == 302


# -- printed times -------------------------------------------------------------------------------


def test_str_prints_the_corps_local_time_with_its_zone(corps, codes, clock):
    for zone, label in ((SHANGHAI, "2026-12-06 00:30 CST"), (LOS_ANGELES, "2026-12-05 08:30 PST")):
        corp = corps[zone]
        scan = Scan.objects.get(corp=corp, created_at=M2)
        assert str(scan) == f"{scan.live_code_id} @ {label}"
        contact = ExternalContact.objects.get(external_userid=f"wm{corp.pk}x1")
        event = TimelineEvent.objects.create(
            corp=corp, external_contact=contact, kind="added", occurred_at=M2, summary="朋友圈",
            dedup_key="t",
        )  # fmt: skip
        with translation.override("en"):
            assert str(TimelineEvent.objects.get(pk=event.pk)) == f"{label} added 朋友圈"
        inbox = CallbackEvent.objects.create(
            corp=corp, dedup_key="k", event="change_external_contact",
            change_type="add_external_contact", external_user_id="wm1", event_time=M2,
        )  # fmt: skip
        assert str(CallbackEvent.objects.get(pk=inbox.pk)) == f"add_external_contact wm1 @ {label}"
        log = AuditLog.objects.create(corp=corp, actor_label="ops", action="export", target="#1")
        now = "2026-12-06 17:00 CST" if zone == SHANGHAI else "2026-12-06 01:00 PST"
        assert str(AuditLog.objects.get(pk=log.pk)) == f"{now} ops export #1"
        run = CalibrationRun.objects.create(corp=corp, since=DEC_5)
        assert str(run) == f"{corp.corp_id} {now} running"
        hour = dt.datetime(2026, 12, 6, 9, tzinfo=UTC)  # the hour of the ranking, UTC
        ranked = QualityScore.objects.create(
            corp=corp, channel=Channel.objects.filter(corp=corp).first(), computed_at=hour,
            first=DEC_5, last=DEC_5, rank=1, score=90,
        )  # fmt: skip
        local_hour = "2026-12-06 17:00 CST" if zone == SHANGHAI else "2026-12-06 01:00 PST"
        assert str(ranked) == f"{local_hour} #1 {ranked.channel_id}"
    orphan = AuditLog.objects.create(corp=None, actor_label="ops", action="x", target="y")
    assert str(orphan) == "2026-12-06 09:00 UTC ops x y"


# -- WeCom's own day ---------------------------------------------------------------------------


def test_our_counts_for_wecom_are_by_cst_days(corps, codes):
    corp = corps[LOS_ANGELES]
    staff_id = codes[LOS_ANGELES].pool.get().staff_id
    staff_ids = [staff_id]
    local = our_new_contact_counts(corp=corp, staff_ids=staff_ids, first=DEC_5, last=DEC_6)
    assert local == {(staff_id, DEC_5): 3, (staff_id, DEC_6): 1}
    cst = our_new_contact_counts(corp=corp, staff_ids=staff_ids, first=DEC_5, last=DEC_6,
                                 tz=WECOM_DAY_TZ)  # fmt: skip
    assert cst == {(staff_id, DEC_5): 1, (staff_id, DEC_6): 3}
