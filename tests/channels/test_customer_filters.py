"""The customer list's filters an operator asks for: customers no channel brought, this week's
and last week's (each corp's own week), and a first-state filter without the landing slots'
internal states."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse

from channels_app.services.publishing import live_code_publish
from channels_app.state import LANDING_SLOT_REGEX, encode_state
from contacts.models import ExternalContact
from scrm import days
from scrm.wecom.sandbox.models import SandboxContactWay
from tests.flows import customer_flows_in

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:contacts_externalcontact_changelist"
DAY = 86400


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _listed(admin_client, **params: object) -> set[int]:
    response = admin_client.get(reverse(CHANGELIST), params)
    assert response.status_code == 200
    return {obj.pk for obj in response.context["cl"].result_list}


def _filter(admin_client, parameter: str):
    response = admin_client.get(reverse(CHANGELIST))
    (spec,) = [
        spec
        for spec in response.context["cl"].filter_specs
        if getattr(spec, "parameter_name", None) == parameter
    ]
    return spec


@pytest.fixture
def native_state(make_code) -> str:
    code = live_code_publish(live_code=make_code(mode="native", name="收银台"))
    return SandboxContactWay.objects.get(config_id=code.config_id).state


def test_no_channel_lists_the_customers_no_code_brought(
    admin_client, sandbox_corp, post_event, native_state
):
    coded = customer_flows_in(sandbox_corp, post_event, state=native_state, seed=1)
    foreign = customer_flows_in(sandbox_corp, post_event, state="pyq_0012", seed=2)
    bare = customer_flows_in(sandbox_corp, post_event, userid="staff02", state="", seed=3)
    assert _listed(admin_client) == {coded.pk, foreign.pk, bare.pk}
    assert _listed(admin_client, first_channel="none") == {foreign.pk, bare.pk}
    choices = dict(_filter(admin_client, "first_channel").lookup_choices)
    assert choices["none"] in ("无渠道", "No channel")


def test_the_state_filter_offers_no_landing_slot_states(
    admin_client, sandbox_corp, post_event, native_state
):
    slot_state = encode_state("landing", 7, 42)
    customer_flows_in(sandbox_corp, post_event, state=native_state, seed=1)
    customer_flows_in(sandbox_corp, post_event, state="pyq_0012", seed=2)
    slot = customer_flows_in(sandbox_corp, post_event, state=slot_state, seed=3)
    offered = [value for value, _label in _filter(admin_client, "first_state").lookup_choices]
    assert offered == sorted([native_state, "pyq_0012"])
    # A link that names one still filters (a bookmark, a report's drill-down).
    assert _listed(admin_client, first_state=slot_state) == {slot.pk}


def test_the_landing_slot_pattern_matches_slot_states_only():
    import re

    pattern = re.compile(LANDING_SLOT_REGEX)
    assert pattern.match(encode_state("landing", 1, 2))
    assert pattern.match(encode_state("landing", 36**9, 36**10 - 1))
    for other in (encode_state("native", 1), encode_state("referral", 5),
                  encode_state("group", 3), "scLx", "pyq_0012", ""):  # fmt: skip
        assert not pattern.match(other)


def test_this_week_and_last_week(admin_client, sandbox_corp, post_event):
    now = int(time.time())
    # A minute ago, unless the corp's week began since: then its first second (the Shanghai
    # Monday's first minute would otherwise put "this week's" customer in last week).
    local = datetime.fromtimestamp(now, ZoneInfo("Asia/Shanghai"))
    monday = local.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
        days=local.weekday()
    )
    added = max(now - 60, int(monday.timestamp()))
    this = customer_flows_in(sandbox_corp, post_event, create_time=added, seed=1)
    last = customer_flows_in(sandbox_corp, post_event, create_time=added - 7 * DAY, seed=2)
    customer_flows_in(sandbox_corp, post_event, create_time=added - 14 * DAY, seed=3)
    assert _listed(admin_client, first_added_week="this") == {this.pk}
    assert _listed(admin_client, first_added_week="last") == {last.pk}
    assert len(_listed(admin_client, first_added_week="someday")) == 3


def test_a_week_is_the_corps_own(corp, sandbox_corp, post_event):
    # Monday 01:00 in Shanghai is still Sunday in UTC: Sunday evening's customer (Shanghai
    # time) is last week's there, though the same UTC week as the moment asked.
    now = datetime(2026, 12, 6, 17, 0, tzinfo=UTC)  # Mon 2026-12-07 01:00 Asia/Shanghai
    sunday_evening = int(datetime(2026, 12, 6, 12, 0, tzinfo=UTC).timestamp())  # 20:00 local
    monday_morning = int(datetime(2026, 12, 6, 16, 30, tzinfo=UTC).timestamp())  # 00:30 local
    sunday = customer_flows_in(sandbox_corp, post_event, create_time=sunday_evening, seed=1)
    monday = customer_flows_in(sandbox_corp, post_event, create_time=monday_morning, seed=2)

    def week(weeks_ago: int) -> set[int]:
        q = days.corp_week_q("first_source__added_at", weeks_ago=weeks_ago, now=now)
        return set(ExternalContact.objects.filter(q).values_list("pk", flat=True))

    assert corp.time_zone == "Asia/Shanghai"
    assert week(0) == {monday.pk}
    assert week(1) == {sunday.pk}
    corp.time_zone = "UTC"
    corp.save()
    days.corp_zones_clear()
    assert week(0) == {sunday.pk, monday.pk}  # in UTC both are Sunday's, of the week of Nov 30
    assert week(1) == set()
    assert days.week_start(datetime(2026, 12, 6).date()).isoformat() == "2026-11-30"
