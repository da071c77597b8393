"""The staff report (/reports/staff/, GET /api/v1/reports/staff/, its exports) on adds that went
through the real pipeline: the sandbox WeCom, the encrypted callback, the customer's details
(which carry follow_user.oper_userid), the relation history and the rollups."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from decimal import Decimal

import openpyxl
import pytest
from django.contrib.auth import get_user_model
from django.utils import translation
from rest_framework.test import APIClient

from analytics.definitions import STAFF_DEFINITIONS
from analytics.models import DailyCapUse, DailyFlow, DecisionSettings, ExportJob
from analytics.reports import ReportParams, StaffReport
from analytics.reports import staff as staff_report
from analytics.reports.staff import PAGE_FIGURES
from analytics.rollups import rollups_rebuild
from channels_app.models import Channel, LiveCode
from channels_app.services.live_codes import live_code_create
from channels_app.state import encode_state
from contacts.models import RelationEvent, Staff
from contacts.services import relation_event_record, staff_get_or_create
from scrm.wecom.sandbox.simulate import sandbox_corp_setup
from scrm.wecom.services import corp_create
from tests.analytics.test_reports import CST, _convert
from tests.flows import customer_flows_in
from tests.tenancy import member

pytestmark = pytest.mark.django_db

FIRST, LAST = dt.date(2026, 10, 1), dt.date(2026, 10, 31)
NOW = dt.datetime(2026, 11, 20, 12, tzinfo=CST)
QUERY = {"from": "2026-10-01", "to": "2026-10-31", "window": 30}


def _at(day: int, hour: int = 10) -> dt.datetime:
    return dt.datetime(2026, 10, day, hour, tzinfo=CST)


def _native_code(corp, caps: dict[str, int | None], slug: str = "pyq-staff") -> LiveCode:
    channel = Channel.objects.create(corp=corp, name="朋友圈", code="pyq_1")
    pool = [
        {"staff": staff_get_or_create(corp=corp, userid=userid), "daily_cap": cap}
        for userid, cap in caps.items()
    ]
    code = live_code_create(corp=corp, channel=channel, name="朋友圈码", slug=slug,
                            mode=LiveCode.Mode.NATIVE, pool=pool)  # fmt: skip
    code.state = encode_state("native", code.pk)
    code.save(update_fields=["state"])
    return code


@pytest.fixture
def october(corp, sandbox_corp, post_event):
    """staff01: 4 adds, 2 of them initiated by staff01 itself (3 on the 2nd, 1 on the 3rd; cap
    5); staff02: 3 adds, initiated by the customer, by a colleague's share (201) and by an
    admin's assignment (202, the admin being staff02 itself: still not staff02's initiative)
    (cap 10); staff03 (no cap): 1 add the customer initiated, removed by staff03 later."""
    code = _native_code(corp, {"staff01": 5, "staff02": 10, "staff03": None})
    adds = [
        # (userid, day, hour, add_way, oper_userid: None is the customer)
        ("staff01", 2, 9, 2, "staff01"),
        ("staff01", 2, 10, 1, None),
        ("staff01", 2, 11, 2, "staff01"),
        ("staff01", 3, 9, 1, None),
        ("staff02", 2, 12, 1, None),
        ("staff02", 2, 13, 201, "staff01"),
        ("staff02", 2, 14, 202, "staff02"),
        ("staff03", 4, 9, 1, None),
    ]
    customers = []
    for seed, (userid, day, hour, add_way, oper) in enumerate(adds):
        customers.append(customer_flows_in(
            sandbox_corp, post_event, userid=userid, state=code.state, add_way=add_way,
            create_time=int(_at(day, hour).timestamp()), seed=seed, oper_userid=oper,
        ))  # fmt: skip
    # The first customer leaves staff01; staff03 removes its customer.
    post_event("del_follow_user", int(_at(5).timestamp()), UserID="staff01",
               ExternalUserID=customers[0].external_userid)  # fmt: skip
    post_event("del_external_contact", int(_at(6).timestamp()), UserID="staff03",
               ExternalUserID=customers[7].external_userid)  # fmt: skip
    _convert(corp, customers[1].external_userid, "consult", _at(2, 20))
    _convert(corp, customers[1].external_userid, "order", _at(4), "300.00")
    Staff.objects.filter(corp=corp, userid="staff01").update(avg_reply_minutes=42.4)
    rollups_rebuild(corp=corp, first=FIRST, last=LAST, now=NOW)
    return {"code": code, "customers": customers}


@pytest.fixture
def api(admin_user) -> APIClient:
    client = APIClient()
    client.force_authenticate(admin_user)
    return client


def _by_name(rows: list[dict]) -> dict[str, dict]:
    return {row["name"]: row for row in rows}


def test_each_adds_initiator_comes_from_the_details_oper_userid(corp, october):
    adds = RelationEvent.objects.filter(corp=corp, kind=RelationEvent.Kind.ADDED)
    got = sorted(adds.values_list("staff__userid", "add_way", "initiator"))
    assert got == [
        ("staff01", 1, "customer"), ("staff01", 1, "customer"),
        ("staff01", 2, "staff"), ("staff01", 2, "staff"),
        ("staff02", 1, "customer"), ("staff02", 201, "handed_over"),
        ("staff02", 202, "handed_over"),  # 202 by staff02 itself: an admin's assignment
        ("staff03", 1, "customer"),
    ]  # fmt: skip
    flows = DailyFlow.objects.filter(corp=corp, touch="any")
    assert sum(flows.values_list("staff_initiated_adds", flat=True)) == 2


def test_an_initiator_learned_later_completes_the_add_and_dirties_its_day(corp):
    at = _at(2)
    first = relation_event_record(corp=corp, userid="staff01", external_userid="wm-late",
                                  kind=RelationEvent.Kind.ADDED, occurred_at=at)  # fmt: skip
    assert first.event.initiator == ""
    before = first.event.recorded_at
    again = relation_event_record(corp=corp, userid="staff01", external_userid="wm-late",
                                  kind=RelationEvent.Kind.ADDED, occurred_at=at, add_way=2,
                                  oper_userid="staff01")  # fmt: skip
    assert (again.created, again.changed) == (False, True)
    event = RelationEvent.objects.get(pk=first.event.pk)
    assert (event.initiator, event.add_way) == ("staff", 2)
    assert event.recorded_at > before  # analytics.refresh rebuilds the add's day
    told_again = relation_event_record(corp=corp, userid="staff01", external_userid="wm-late",
                                       kind=RelationEvent.Kind.ADDED, occurred_at=at,
                                       add_way=2, oper_userid="staff01")  # fmt: skip
    assert told_again.changed is False


def test_the_staff_figures(corp, october):
    result = StaffReport(ReportParams(corp=corp, first=FIRST, last=LAST)).calculate()
    rows = _by_name(result.rows)
    assert set(rows) == {"staff01", "staff02", "staff03"}
    one, two, three = rows["staff01"], rows["staff02"], rows["staff03"]
    assert (one["adds"], one["new_customers"], one["lost"], one["removed"], one["net_adds"]) == (
        4, 4, 1, 0, 3,
    )  # fmt: skip
    assert (three["adds"], three["removed"], three["net_adds"]) == (1, 1, 0)
    assert (one["staff_initiated_adds"], one["initiated_share"]) == (2, Decimal("0.5"))
    assert (two["staff_initiated_adds"], two["initiated_share"]) == (0, Decimal(0))
    assert (one["initiated_alert"], two["initiated_alert"]) == (True, False)
    # staff01: 3 of 5 on the 2nd, 1 of 5 on the 3rd; staff02: 3 of 10; staff03 has no cap
    assert (one["caps_used"], one["caps_max_day"]) == (Decimal("0.4"), Decimal("0.6"))
    assert (two["caps_used"], two["caps_max_day"]) == (Decimal("0.3"), Decimal("0.3"))
    assert (three["caps_used"], three["caps_max_day"]) == (None, None)
    assert one["avg_reply_minutes"] == Decimal("42.4")
    assert two["avg_reply_minutes"] is None
    assert one["consult_72h_rate"] == Decimal("0.25")
    assert one["revenue"] == Decimal("300.00")
    totals = result.totals
    assert (totals["adds"], totals["staff_initiated_adds"]) == (8, 2)
    assert totals["initiated_share"] == Decimal("0.25")
    assert totals["caps_used"] == Decimal("7") / Decimal("20")  # (3+1+3) / (5+5+10)
    assert totals["avg_reply_minutes"] is None
    assert DailyCapUse.objects.filter(corp=corp).count() == 3


def test_the_alert_follows_the_corps_threshold(admin_client, corp, october):
    page = admin_client.get("/reports/staff/", {"corp": corp.corp_id, **QUERY})
    html = page.content.decode()
    assert 'data-alert-count="1"' in html
    assert html.count('data-alert="initiated"') == 1
    staff01 = Staff.objects.get(corp=corp, userid="staff01")
    assert f'data-staff="{staff01.pk}"' in html

    # 0.5 is not above 0.5: nobody is flagged
    DecisionSettings.objects.create(corp=corp, staff_initiated_alert_share=Decimal("0.5"))
    html = admin_client.get("/reports/staff/", {"corp": corp.corp_id, **QUERY}).content.decode()
    assert 'data-alert-count="0"' in html
    assert 'data-alert="initiated"' not in html
    result = StaffReport(ReportParams(corp=corp, first=FIRST, last=LAST)).calculate()
    assert result.alert_share == Decimal("0.5")
    assert not any(row["initiated_alert"] for row in result.rows)


def test_the_page_and_the_api_agree(admin_client, api, corp, october):
    body = api.get("/api/v1/reports/staff/", {"corp": corp.corp_id, **QUERY}).json()
    assert body["alert_share"] == 0.1
    rows = _by_name(body["rows"])
    one = rows["staff01"]
    assert (one["staff_initiated_adds"], one["initiated_share"], one["initiated_alert"]) == (
        2, 0.5, True,
    )  # fmt: skip
    assert (one["caps_used"], one["caps_max_day"], one["revenue"]) == (0.4, 0.6, "300.00")
    assert one["adds"] == 4
    assert one["net_adds"] == 3
    html = admin_client.get("/reports/staff/", {"corp": corp.corp_id, **QUERY}).content.decode()
    for name in ("staff01", "staff02", "staff03"):
        row = html.split(f">{name}</a></th>", 1)[1].split("</tr>", 1)[0]
        cells = dict(re.findall(r'data-figure="(\w+)" data-sort="([^"]*)"', row))
        assert set(cells) == set(PAGE_FIGURES)
        for figure, value in cells.items():
            from_api = rows[name][figure]
            assert (value == "") == (from_api is None), figure
            if from_api is not None:
                assert Decimal(value) == Decimal(str(from_api)), (name, figure)
    assert "50.00%" in html.split(">staff01</a></th>", 1)[1].split("</tr>", 1)[0]


def test_exports_carry_the_staff_columns(api, corp, october):
    query = {"corp": corp.corp_id, **QUERY}
    response = api.get("/api/v1/reports/staff/", {**query, "format": "csv"})
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    lines = list(csv.reader(io.StringIO(text)))
    header = lines[0]
    # the figures' labels in the request's language (zh-hans by default); positions are stable
    assert len(header) == 2 + 18 + 6
    by_name = {line[1]: line for line in lines[1:]}
    assert by_name["staff01"][-6:] == ["2", "0.5000", "true", "0.4000", "0.6000", "42.4"]
    assert by_name["staff03"][-6:] == ["0", "0.0000", "false", "", "", ""]

    response = api.get("/api/v1/reports/staff/", {**query, "format": "xlsx"})
    assert response.status_code == 200
    sheet = openpyxl.load_workbook(io.BytesIO(b"".join(response.streaming_content))).active
    values = list(sheet.iter_rows(values_only=True))
    assert len(values[0]) == 26
    rows = {row[1]: row for row in values[1:]}
    assert rows["staff01"][-6:-1] == (2, 0.5, True, 0.4, 0.6)
    assert rows["staff02"][-6:-3] == (0, 0, False)


@pytest.fixture
def other_corp(db):
    sandbox = sandbox_corp_setup(corp_id="wwotherstaff0001", name="别的企业", members=2)
    other = corp_create(
        corp_id=sandbox.corp_id, name=sandbox.name, secret=sandbox.secret,
        callback_token=sandbox.callback_token, encoding_aes_key=sandbox.encoding_aes_key,
    )  # fmt: skip
    code = _native_code(other, {"other01": 3}, slug="pyq-other")
    relation_event_record(corp=other, userid="other01", external_userid="wm-other",
                          kind=RelationEvent.Kind.ADDED, occurred_at=_at(2))  # fmt: skip
    rollups_rebuild(corp=other, first=FIRST, last=LAST, now=NOW)
    return other, code


def test_another_corps_staff_are_out_of_sight(client, corp, october, other_corp):
    other, other_code = other_corp
    user = get_user_model().objects.create_user("lead", password="x", is_staff=True)
    client.force_login(member(user, corp, role="manager"))
    api = APIClient()
    api.force_login(user)
    body = api.get("/api/v1/reports/staff/", {"corp": corp.corp_id, **QUERY}).json()
    assert "other01" not in {row["name"] for row in body["rows"]}
    # another corp reads as a corp that does not exist; its live code as no such code
    refused = api.get("/api/v1/reports/staff/", {"corp": other.corp_id, **QUERY})
    assert refused.status_code == 400
    assert "corp" in refused.json()
    refused = api.get("/api/v1/reports/staff/",
                      {"corp": corp.corp_id, "live_code": other_code.pk, **QUERY})  # fmt: skip
    assert refused.status_code == 400
    assert "live_code" in refused.json()
    assert client.get("/reports/staff/", {"corp": other.corp_id, **QUERY}).status_code == 400
    html = client.get("/reports/staff/", {"corp": corp.corp_id, **QUERY}).content.decode()
    assert "other01" not in html
    assert "staff01" in html


def test_a_drill_down_narrows_the_caps_to_the_live_code(api, corp, october):
    other_channel = Channel.objects.create(corp=corp, name="小红书", code="xhs_1")
    code = live_code_create(corp=corp, channel=other_channel, name="小红书码", slug="xhs-staff",
                            mode=LiveCode.Mode.NATIVE, pool=[])  # fmt: skip
    body = api.get(
        "/api/v1/reports/staff/", {"corp": corp.corp_id, "live_code": code.pk, **QUERY}
    ).json()
    assert body["rows"] == []
    assert body["totals"]["caps_used"] is None
    query = {"corp": corp.corp_id, "live_code": october["code"].pk, **QUERY}
    mine = api.get("/api/v1/reports/staff/", query).json()
    assert mine["totals"]["caps_used"] == 0.35


def test_the_staff_page_reads_in_a_fixed_number_of_queries(
    admin_client, corp, sandbox_corp, post_event, october, django_assert_num_queries
):
    query = {"corp": corp.corp_id, **QUERY}
    admin_client.get("/reports/staff/", query)
    # session, user, corps, channel groups; the staff report (13), the daily trend's days and
    # the previous period's totals (6 each: the period's totals are the table's)
    with django_assert_num_queries(29):
        assert admin_client.get("/reports/staff/", query).status_code == 200
    for index in range(4):  # more staff members, more rows: the same queries
        userid = f"extra0{index}"
        staff_get_or_create(corp=corp, userid=userid)
        relation_event_record(corp=corp, userid=userid, external_userid=f"wm-extra-{index}",
                              kind=RelationEvent.Kind.ADDED, occurred_at=_at(7))  # fmt: skip
    rollups_rebuild(corp=corp, first=FIRST, last=LAST, now=NOW)
    with django_assert_num_queries(29):
        assert admin_client.get("/reports/staff/", query).status_code == 200


def test_the_staff_definitions_are_the_staff_reports_docstring_word_for_word():
    items: list[str] = []
    for line in (staff_report.__doc__ or "").split("\n\n", 1)[1].splitlines():
        if line.startswith("- "):
            items.append(line.removeprefix("- ").strip())
        elif line.strip():
            items[-1] += " " + line.strip()
    with translation.override("en"):
        assert [str(definition) for definition in STAFF_DEFINITIONS] == items


def test_a_large_staff_export_is_a_job_with_the_same_file(
    api, corp, october, settings, django_capture_on_commit_callbacks
):
    settings.REPORT_EXPORT_SYNC_MAX_ROWS = 2  # the three members go to a job
    query = {"corp": corp.corp_id, "live_code": october["code"].pk, "touch": "first", **QUERY}
    with django_capture_on_commit_callbacks(execute=True):
        response = api.get("/api/v1/reports/staff/", {**query, "format": "csv"})
    assert response.status_code == 202
    job = ExportJob.objects.get(pk=response.json()["id"])
    assert (job.report, job.status) == ("staff", "done")
    # the drill-down and the crediting are kept with the job's parameters
    assert (job.params["live_code"], job.params["touch"]) == (october["code"].pk, "first")
    with job.file.open("rb") as stored:
        from_job = stored.read()
    settings.REPORT_EXPORT_SYNC_MAX_ROWS = 50_000
    at_once = api.get("/api/v1/reports/staff/", {**query, "format": "csv"})
    assert from_job == b"".join(at_once.streaming_content)
