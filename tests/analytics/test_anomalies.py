"""The anomaly page (/reports/anomalies/): each kind listed on the data that makes it and gone
once resolved, its evidence links, acknowledgement (operators yes, managers no, another corp
not found), a recurrence listed again, a fixed number of queries, bad parameters refused; and
the issue's case: adds dropped on the way (simulate --drop) listed until calibration restores
them."""

from __future__ import annotations

import datetime as dt
import io
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from analytics.anomalies import AnomalyParams, Kind, anomalies_list
from analytics.models import AnomalyAck
from analytics.refresh import rollups_refresh
from analytics.rollups import rollups_rebuild
from channels_app.models import Channel, LiveCode, PoolMember
from channels_app.services.live_codes import live_code_create
from channels_app.services.publishing import live_code_publish
from contacts.calibration import calibrate
from contacts.models import CalibrationDeviation, CalibrationRun, Staff
from contacts.services import staff_get_or_create
from scrm import days
from scrm.wecom.models import ApiCall, CallbackEvent, Role
from tests.analytics.test_reports import CST, FIRST, LAST, _add, _at, _codes, _scan, _slot
from tests.factories import CorpFactory
from tests.tenancy import member

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 11, 20, 12, tzinfo=CST)
PAGE = "/reports/anomalies/"
ACK = "/reports/anomalies/acknowledge/"


def _list(corp, first=FIRST, last=LAST, now=NOW):
    return anomalies_list(params=AnomalyParams(corp=corp, first=first, last=last, now=now))


def _keys(result, kind=None):
    return {(a.kind, a.key) for a in result.open if kind is None or a.kind == kind}


def _scans(code, slot, day: int, count: int, hour: int = 10):
    for n in range(count):
        _scan(code, _at(day, hour, n % 60), f"dev-{day}-{n}", slot)


def _adds(corp, slot, day: int, count: int, prefix: str = "wm", hour: int = 11):
    for n in range(count):
        _add(corp, f"{prefix}-{day}-{n}", slot.staff.userid, slot.state, _at(day, hour, n % 60))


@pytest.fixture
def landing(corp):
    codes = _codes(corp)
    return codes["xhs"], _slot(codes["xhs"], "staff03")


def _user(name: str, corp, role=Role.OPERATOR):
    user = get_user_model().objects.create_user(name, password="pw", is_staff=True)
    return member(user, corp, role=role)


# -- scans against adds, per code and day --------------------------------------------------------


def test_a_day_with_adds_far_below_scans_is_listed_until_the_adds_are_there(corp, landing):
    code, slot = landing
    _scans(code, slot, 10, 25)
    _adds(corp, slot, 10, 5)  # 20 %: a code without history is expected at 60 %
    _scans(code, slot, 11, 19)  # below 20 scans: too few to judge
    rollups_rebuild(corp=corp, first=FIRST, last=LAST, now=NOW)
    found = _list(corp)
    key = f"code:{code.pk}:2026-10-10"
    assert _keys(found) == {(Kind.ADDS_BELOW_SCANS, key)}
    anomaly = found.open[0]
    assert anomaly.figures["scans"] == 25
    assert anomaly.figures["adds"] == 5
    assert str(anomaly.figures["usual_rate"]) == "0.6"
    # Its evidence: the code's scans and adds of that local day, in the admin.
    scans_url = anomaly.evidence[0][1]
    query = parse_qs(urlsplit(scans_url).query)
    assert query["live_code__id__exact"] == [str(code.pk)]
    assert query["created_at__gte"] == ["2026-10-09T16:00:00+00:00"]

    _adds(corp, slot, 10, 5, prefix="late")  # 10 of 25: above half of the 15 expected
    rollups_rebuild(corp=corp, first=FIRST, last=LAST, now=NOW)
    assert _keys(_list(corp)) == set()


def test_the_usual_rate_is_the_codes_own(corp, landing):
    code, slot = landing
    for day in range(1, 5):  # 4 days of 25 scans and 5 adds: this code converts at 20 %
        _scans(code, slot, day, 25)
        _adds(corp, slot, day, 5)
    _scans(code, slot, 10, 25)
    _adds(corp, slot, 10, 3)  # 12 %: not below half of its usual 20 %
    _scans(code, slot, 12, 25)
    _adds(corp, slot, 12, 2)  # 8 %: below 10 %
    rollups_rebuild(corp=corp, first=FIRST, last=LAST, now=NOW)
    found = _list(corp, first=dt.date(2026, 10, 10))
    assert _keys(found) == {(Kind.ADDS_BELOW_SCANS, f"code:{code.pk}:2026-10-12")}
    assert str(found.open[0].figures["usual_rate"]) == "0.1840"  # (4 x 5 + 3) / (5 x 25)


def test_adds_without_scans_on_a_landing_code_are_listed_until_scans_show(corp, landing):
    code, slot = landing
    _adds(corp, slot, 5, 3)
    _adds(corp, slot, 6, 2)  # two: not enough to say
    rollups_rebuild(corp=corp, first=FIRST, last=LAST, now=NOW)
    assert _keys(_list(corp)) == {(Kind.ADDS_WITHOUT_SCANS, f"noscan:{code.pk}:2026-10-05")}
    _scans(code, slot, 5, 3)
    rollups_rebuild(corp=corp, first=FIRST, last=LAST, now=NOW)
    assert _keys(_list(corp)) == set()


def test_a_dead_staff_qr_is_listed_until_an_add_comes_and_again_when_it_stops(corp, landing):
    code, slot = landing
    LiveCode.objects.filter(pk=code.pk).update(status=LiveCode.Status.ACTIVE)
    _add(corp, "wm-before", "staff03", slot.state, NOW - dt.timedelta(hours=5))
    for n in range(10):
        _scan(code, NOW - dt.timedelta(minutes=10 + n * 18), f"dev-{n}", slot)
    first = _keys(_list(corp, now=NOW), Kind.DEAD_CODE)
    assert len(first) == 1
    assert _list(corp, now=NOW).open[0].figures["scans"] == 10
    # 9 scans in the window is not enough.
    assert _keys(_list(corp, now=NOW + dt.timedelta(minutes=20)), Kind.DEAD_CODE) == set()

    _add(corp, "wm-after", "staff03", slot.state, NOW - dt.timedelta(minutes=5))
    assert _keys(_list(corp, now=NOW), Kind.DEAD_CODE) == set()

    later = NOW + dt.timedelta(hours=4)
    for n in range(10):
        _scan(code, later - dt.timedelta(minutes=10 + n * 10), f"dev-later-{n}", slot)
    again = _keys(_list(corp, now=later), Kind.DEAD_CODE)
    assert len(again) == 1
    assert again != first  # a new silence: a new occurrence

    LiveCode.objects.filter(pk=code.pk).update(status=LiveCode.Status.PAUSED)
    assert _keys(_list(corp, now=later), Kind.DEAD_CODE) == set()


# -- WeCom's empty answers, calibration, the inbox, pools ----------------------------------------


def _api_call(corp, endpoint: str, items: int | None, at: dt.datetime, errcode: int = 0):
    call = ApiCall.objects.create(corp=corp, endpoint=endpoint, method="POST", http_status=200,
                                  errcode=errcode, items_returned=items, duration_ms=5)  # fmt: skip
    ApiCall.objects.filter(pk=call.pk).update(created_at=at)
    return call


def test_empty_answers_where_results_are_expected_are_listed_per_endpoint_and_day(corp):
    at = _at(7, 3)  # 03:00 CST on 7 October: still the 7th locally, the 6th in UTC
    _api_call(corp, "externalcontact/get_follow_user_list", 0, at)
    _api_call(corp, "externalcontact/get_follow_user_list", 0, at)
    _api_call(corp, "externalcontact/get_follow_user_list", 3, at)
    _api_call(corp, "externalcontact/batch/get_by_user", 0, at)  # a member without customers
    _api_call(corp, "externalcontact/get", 1, at)
    _api_call(corp, "externalcontact/get", None, at, errcode=45009)  # an error is logged apart
    found = _list(corp)
    assert _keys(found) == {(Kind.EMPTY_API, "api:externalcontact/get_follow_user_list:2026-10-07")}
    assert (found.open[0].figures["empty"], found.open[0].figures["calls"]) == (2, 3)
    query = parse_qs(urlsplit(found.open[0].evidence[0][1]).query)
    assert (query["items_returned"], query["errcode"]) == (["0"], ["0"])
    assert _keys(_list(corp, first=dt.date(2026, 10, 8))) == set()


def test_calibration_deviations_are_listed_until_a_later_run_agrees(corp):
    staff = staff_get_or_create(corp=corp, userid="staff01")
    run = CalibrationRun.objects.create(corp=corp, since=FIRST, status="done", deviations=1)
    CalibrationDeviation.objects.create(corp=corp, run=run, staff=staff, day=_at(3).date(),
                                        ours=4, wecom=7)  # fmt: skip
    found = _list(corp)
    assert _keys(found) == {(Kind.CALIBRATION, "calib:2026-10-03")}
    assert found.open[0].figures["difference"] == -3
    assert found.open[0].evidence[0][1] == f"/admin/contacts/calibrationrun/{run.pk}/change/"
    CalibrationRun.objects.create(corp=corp, since=FIRST, status="failed")  # proves nothing
    assert len(_keys(_list(corp))) == 1
    CalibrationRun.objects.create(corp=corp, since=FIRST, status="done")
    assert _keys(_list(corp)) == set()


def _event(corp, n: int, status: str, received: dt.datetime) -> CallbackEvent:
    event = CallbackEvent.objects.create(
        corp=corp, dedup_key=f"k{n}", event="change_external_contact",
        change_type="add_external_contact", event_time=received, status=status,
    )  # fmt: skip
    CallbackEvent.objects.filter(pk=event.pk).update(received_at=received)
    return event


def test_callback_backlog_and_failed_events_are_listed_until_processed(corp):
    old = _event(corp, 1, "pending", NOW - dt.timedelta(minutes=30))
    _event(corp, 2, "pending", NOW - dt.timedelta(minutes=2))  # just arrived: not a backlog
    failed = _event(corp, 3, "failed", NOW - dt.timedelta(days=1))
    found = _list(corp)
    assert _keys(found) == {(Kind.CALLBACK_BACKLOG, f"backlog:{old.pk}"),
                            (Kind.CALLBACK_FAILED, f"failed:{failed.pk}")}  # fmt: skip
    backlog = next(a for a in found.open if a.kind == Kind.CALLBACK_BACKLOG)
    assert backlog.figures["events"] == 1
    assert "status__exact=pending" in backlog.evidence[0][1]
    CallbackEvent.objects.filter(pk__in=[old.pk, failed.pk]).update(status="processed")
    assert _keys(_list(corp)) == set()


def test_staff_who_left_but_remain_in_a_pool_are_listed_until_taken_out(corp):
    channel = Channel.objects.create(corp=corp, name="门店", code="store_1")
    staff = staff_get_or_create(corp=corp, userid="staff02")
    code = live_code_create(corp=corp, channel=channel, name="门店码", slug="store-1",
                            pool=[{"staff": staff}])  # fmt: skip
    assert _keys(_list(corp)) == set()
    Staff.objects.filter(pk=staff.pk).update(status=Staff.Status.LEFT, left_at=NOW)
    found = _list(corp)
    assert _keys(found) == {(Kind.LEFT_STAFF, f"left:{staff.pk}:{code.pk}")}
    assert found.open[0].evidence[0][1] == f"/admin/channels_app/livecode/{code.pk}/change/"
    PoolMember.objects.filter(live_code=code).update(is_enabled=False)
    assert _keys(_list(corp)) == set()


# -- the page: acknowledgement, tenancy, queries, bad parameters --------------------------------


def _failed_events(corp, count: int, start: int = 0) -> list[CallbackEvent]:
    now = timezone.now()
    return [_event(corp, start + n, "failed", now - dt.timedelta(hours=1)) for n in range(count)]


def _row_keys(response, section: str) -> set[str]:
    html = response.content.decode()
    part = html.split(f'id="anomalies-{section}"', 1)[1].split("</section>", 1)[0]
    return {chunk.split('"', 1)[0] for chunk in part.split('data-key="')[1:]}


def test_an_operator_acknowledges_and_a_recurrence_is_listed_again(corp, client):
    client.force_login(_user("ops", corp))
    last = _failed_events(corp, 2)[-1]
    page = client.get(PAGE)
    assert page.status_code == 200
    assert _row_keys(page, "open") == {f"failed:{last.pk}"}
    response = client.post(ACK, {"corp": corp.corp_id, "kind": Kind.CALLBACK_FAILED,
                                 "key": f"failed:{last.pk}", "note": "WeCom 故障, 已重试",
                                 "query": f"corp={corp.corp_id}&period=last_7"})  # fmt: skip
    assert response.status_code == 303
    assert response["Location"] == f"{PAGE}?corp={corp.corp_id}&period=last_7"
    ack = AnomalyAck.objects.get()
    assert (ack.acknowledged_by.username, ack.note) == ("ops", "WeCom 故障, 已重试")
    page = client.get(PAGE)
    assert _row_keys(page, "open") == set()
    assert _row_keys(page, "acknowledged") == {f"failed:{last.pk}"}
    # Twice is once.
    client.post(ACK, {"corp": corp.corp_id, "kind": Kind.CALLBACK_FAILED,
                      "key": f"failed:{last.pk}"})  # fmt: skip
    assert AnomalyAck.objects.count() == 1
    # A new failure is a new occurrence.
    newer = _failed_events(corp, 1, start=10)[0]
    page = client.get(PAGE)
    assert _row_keys(page, "open") == {f"failed:{newer.pk}"}
    assert _row_keys(page, "acknowledged") == set()


def test_a_manager_may_look_but_not_acknowledge_and_another_corp_is_not_found(corp, client):
    other = CorpFactory()
    event = _failed_events(corp, 1)[0]
    foreign = _event(other, 99, "failed", timezone.now() - dt.timedelta(hours=1))
    manager = _user("manager", corp, Role.MANAGER)
    client.force_login(manager)
    page = client.get(PAGE)
    assert page.status_code == 200
    assert _row_keys(page, "open") == {f"failed:{event.pk}"}
    assert ACK not in page.content.decode()  # no button
    body = {"corp": corp.corp_id, "kind": Kind.CALLBACK_FAILED, "key": f"failed:{event.pk}"}
    assert client.post(ACK, body).status_code == 403
    assert client.get(PAGE, {"corp": other.corp_id}).status_code == 400
    client.force_login(_user("ops", corp))
    foreign_body = {"corp": other.corp_id, "kind": Kind.CALLBACK_FAILED,
                    "key": f"failed:{foreign.pk}"}  # fmt: skip
    assert client.post(ACK, foreign_body).status_code == 404
    # Only a listed anomaly: a key of another corp's event, or of nothing, is refused.
    assert client.post(ACK, {**body, "key": f"failed:{foreign.pk}"}).status_code == 400
    assert client.post(ACK, {**body, "kind": "nonsense"}).status_code == 400
    assert client.get(ACK).status_code == 405
    assert not AnomalyAck.objects.exists()


def test_the_acknowledgement_needs_the_csrf_token(corp):
    from django.test import Client

    event = _failed_events(corp, 1)[0]
    client = Client(enforce_csrf_checks=True)
    client.force_login(_user("ops", corp))
    body = {"corp": corp.corp_id, "kind": Kind.CALLBACK_FAILED, "key": f"failed:{event.pk}"}
    assert client.post(ACK, body).status_code == 403
    assert not AnomalyAck.objects.exists()


def test_the_page_reads_in_a_fixed_number_of_queries(corp, client, landing):
    code, slot = landing
    client.force_login(_user("ops", corp))
    today = days.today(corp)

    def count() -> int:
        rollups_rebuild(corp=corp, first=today - dt.timedelta(days=6), last=today)
        with CaptureQueriesContext(connection) as queries:
            assert client.get(PAGE).status_code == 200
        return len(queries)

    _failed_events(corp, 1)
    staff = staff_get_or_create(corp=corp, userid="staff03")
    Staff.objects.filter(pk=staff.pk).update(status=Staff.Status.LEFT)
    PoolMember.objects.create(corp=corp, live_code=code, staff=staff)
    now = timezone.now()
    for n in range(25):
        _scan(code, now - dt.timedelta(minutes=n), f"dev-{n}", slot)
    few = count()
    assert few <= 12  # session, user, memberships, corps; 8 for the anomalies and their acks
    for n in range(25):  # another code with the same trouble, another day, acknowledged ones
        _scan(code, now - dt.timedelta(days=2, minutes=n), f"dev-b-{n}", slot)
    more = _failed_events(corp, 3, start=5)
    AnomalyAck.objects.create(corp=corp, kind=Kind.CALLBACK_FAILED, key=f"failed:{more[-1].pk}")
    assert count() == few


@pytest.mark.parametrize(
    "query",
    [
        {"from": "2026-10-31", "to": "2026-10-01"},
        {"from": "2024-01-01", "to": "2026-10-01"},
        {"from": "2026-10-01"},
        {"from": "yesterday", "to": "2026-10-01"},
        {"period": "fortnight"},
        {"corp": "wwnosuchcorp0000"},
    ],
)
def test_bad_parameters_are_a_400_that_says_why(corp, client, query):
    client.force_login(_user("ops", corp))
    response = client.get(PAGE, query)
    assert response.status_code == 400
    assert b"errornote" in response.content or b"report-filter-error" in response.content


def test_a_user_without_a_corp_sees_a_note_and_an_anonymous_one_the_login(db, client):
    assert client.get(PAGE).status_code == 302
    client.force_login(get_user_model().objects.create_user("nobody", is_staff=True))
    assert b"report-empty" in client.get(PAGE).content


# -- the case ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_anomaly_page_lists_a_code_whose_adds_were_dropped_until_calibration_restores_them(
    corp, live_server, client
):
    channel = Channel.objects.create(corp=corp, name="小红书", code="xhs_618")
    pool = [{"staff": staff_get_or_create(corp=corp, userid=f"staff0{n}")} for n in (1, 2, 3)]
    code = live_code_create(corp=corp, channel=channel, name="618", slug="xhs618",
                            mode=LiveCode.Mode.LANDING, pool=pool)  # fmt: skip
    live_code_publish(live_code=code)
    out = io.StringIO()
    call_command(
        "wecom_sandbox", "simulate", "--corp", corp.corp_id, "--code", "xhs618", "--scans", "30",
        "--drop", "0.9", "--url", live_server.url, "--seed", "3", stdout=out,
    )  # fmt: skip
    assert "30 scans" in out.getvalue()
    dropped = int(re.search(r"\((\d+) callbacks dropped\)", out.getvalue()).group(1))
    assert dropped >= 20
    rollups_refresh(corp=corp)
    client.force_login(_user("ops", corp))
    key = f"code:{code.pk}:{days.today(corp).isoformat()}"
    page = client.get(PAGE)
    assert key in _row_keys(page, "open")

    run = calibrate(corp=corp, triggered_by="pytest")
    assert run.status == CalibrationRun.Status.DONE
    assert run.relations_backfilled == dropped
    with time_machine.travel(timezone.now() + dt.timedelta(minutes=1)):
        rollups_refresh(corp=corp)
    page = client.get(PAGE)
    assert key not in _row_keys(page, "open") | _row_keys(page, "acknowledged")


# -- the API -------------------------------------------------------------------------------------


def test_the_api_lists_open_and_acknowledged_anomalies_with_figures_and_evidence(corp, landing):
    from rest_framework.test import APIClient

    code, slot = landing
    _scans(code, slot, 10, 25)
    _adds(corp, slot, 10, 5)
    rollups_rebuild(corp=corp, first=FIRST, last=LAST, now=NOW)
    failed = _failed_events(corp, 1)[0]
    AnomalyAck.objects.create(corp=corp, kind=Kind.CALLBACK_FAILED, key=f"failed:{failed.pk}",
                              note="已知")  # fmt: skip
    client = APIClient()
    client.force_authenticate(_user("manager", corp, Role.MANAGER))
    url = "/api/v1/reports/anomalies/"
    response = client.get(url, {"corp": corp.corp_id, "from": "2026-10-01", "to": "2026-10-31"})
    assert response.status_code == 200
    rows = response.json()["anomalies"]
    assert [(row["kind"], row["key"], row["acknowledged"] is not None) for row in rows] == [
        ("adds_below_scans", f"code:{code.pk}:2026-10-10", False),
        ("callback_failed", f"failed:{failed.pk}", True),
    ]
    assert rows[0]["day"] == "2026-10-10"
    assert rows[0]["figures"] == {"live_code": code.pk, "scans": 25, "adds": 5,
                                  "scan_to_add": 0.2, "usual_rate": 0.6,
                                  "expected_adds": 15.0}  # fmt: skip
    assert [urlsplit(e["url"]).path for e in rows[0]["evidence"]] == [
        "/admin/channels_app/scan/",
        "/admin/channels_app/attribution/",
        f"/admin/channels_app/livecode/{code.pk}/change/",
    ]
    assert rows[1]["acknowledged"]["note"] == "已知"

    other = CorpFactory()
    for query in (
        {"corp": corp.corp_id, "from": "2026-10-31", "to": "2026-10-01"},
        {"corp": corp.corp_id, "from": "2026-10-01"},
        {"corp": other.corp_id, "from": "2026-10-01", "to": "2026-10-31"},
        {"corp": corp.corp_id, "from": "2026-10-01", "to": "2026-10-31", "window": "7"},
    ):
        assert client.get(url, query).status_code == 400, query


# Local noon: the 25 minutes of scans below stay on one local day (run just after midnight,
# some fell on the day before and the day's scans no longer made an anomaly).
@time_machine.travel(dt.datetime(2026, 11, 5, 4, 0, tzinfo=dt.UTC), tick=True)
def test_every_evidence_link_opens_in_the_admin_filtered(corp, client, landing):
    code, slot = landing
    LiveCode.objects.filter(pk=code.pk).update(status=LiveCode.Status.ACTIVE)
    now = timezone.now()
    today = days.today(corp)
    for n in range(25):
        _scan(code, now - dt.timedelta(minutes=n), f"dev-{n}", slot)
    rollups_rebuild(corp=corp, first=today, last=today)
    _api_call(corp, "externalcontact/get_follow_user_list", 0, now)
    staff = staff_get_or_create(corp=corp, userid="staff01")
    run = CalibrationRun.objects.create(corp=corp, since=today, status="done")
    CalibrationDeviation.objects.create(corp=corp, run=run, staff=staff, day=today, ours=1,
                                        wecom=2)  # fmt: skip
    _event(corp, 1, "pending", now - dt.timedelta(hours=1))
    _event(corp, 2, "failed", now - dt.timedelta(hours=1))
    Staff.objects.filter(pk=slot.staff_id).update(status=Staff.Status.LEFT)
    PoolMember.objects.create(corp=corp, live_code=code, staff=slot.staff)
    found = _list(corp, first=today, last=today, now=now)
    assert {a.kind for a in found.open} == set(Kind.values) - {Kind.ADDS_WITHOUT_SCANS}
    client.force_login(_user("ops", corp))
    counts = {}
    for anomaly in found.open:
        for _label, url in anomaly.evidence:
            response = client.get(url)
            assert response.status_code == 200, (anomaly.kind, url)  # an unknown filter: 302
            if response.context and "cl" in response.context:
                counts[(anomaly.kind, urlsplit(url).path)] = response.context["cl"].result_count
    assert counts == {
        (Kind.ADDS_BELOW_SCANS, "/admin/channels_app/scan/"): 25,
        (Kind.ADDS_BELOW_SCANS, "/admin/channels_app/attribution/"): 0,
        (Kind.DEAD_CODE, "/admin/channels_app/scan/"): 24,  # [3 hours ago, now)
        (Kind.DEAD_CODE, "/admin/channels_app/attribution/"): 0,
        (Kind.EMPTY_API, "/admin/wecom/apicall/"): 1,
        (Kind.CALLBACK_BACKLOG, "/admin/wecom/callbackevent/"): 1,
        (Kind.CALLBACK_FAILED, "/admin/wecom/callbackevent/"): 1,
    }
