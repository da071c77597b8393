"""Report exports: CSV (UTF-8 with BOM) and XLSX read back the JSON report's numbers with
Chinese headers; ?format=csv|xlsx on the report API; past the row threshold a background job
with progress and a download, visible only to whom it belongs; old files deleted by beat."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import time
from decimal import Decimal
from urllib.parse import quote

import openpyxl
import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.utils import timezone, translation
from rest_framework.test import APIClient

from analytics import export_jobs, exports
from analytics.export_jobs import export_files_purge, export_job_create, export_job_run
from analytics.exports import BOM, Table, csv_write, figure_columns, report_columns, xlsx_write
from analytics.models import ExportJob
from analytics.reports import FIGURES, ChannelReport, ReportParams
from analytics.reports.base import GROUPS
from analytics.rollups import rollups_rebuild
from channels_app.models import ChannelCost
from scrm.wecom.models import CorpMembership
from tests.analytics.test_reports import (
    FIRST,
    LAST,
    NOW,
    _add,
    _at,
    _codes,
    _convert,
    _scan,
    _slot,
)
from tests.tenancy import member

pytestmark = pytest.mark.django_db

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture(autouse=True)
def _chinese_and_a_media_folder(settings, tmp_path) -> None:
    settings.LANGUAGE_CODE = "zh-hans"  # what the project ships with, whatever the shell says
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.REPORT_EXPORT_SYNC_MAX_ROWS = 50_000


@pytest.fixture
def month(corp):
    """October 2026: a Moments ad (native code, cost 3,100) with two adds and an order, and
    Xiaohongshu (a landing code) with two scans and one add through them."""
    codes = _codes(corp)
    ChannelCost.objects.create(corp=corp, channel=codes["pyq"].channel, start_date=FIRST,
                               end_date=LAST, amount=Decimal("3100"))  # fmt: skip
    _add(corp, "wm-a", "staff01", codes["pyq"].state, _at(2))
    _add(corp, "wm-b", "staff02", codes["pyq"].state, _at(3))
    _convert(corp, "wm-a", "order", _at(4), "620.50")
    slot = _slot(codes["xhs"], "staff03")
    _scan(codes["xhs"], _at(5), "device-1", slot)
    _scan(codes["xhs"], _at(5, 11), "device-2", slot)
    _add(corp, "wm-c", "staff03", slot.state, _at(5, 12))
    rollups_rebuild(corp=corp, first=FIRST, last=LAST, now=NOW)
    return codes


def _client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def api(admin_user) -> APIClient:
    return _client(admin_user)


def _query(corp, **extra) -> dict:
    return {"corp": corp.corp_id, "from": "2026-10-01", "to": "2026-10-31", **extra}


def _body(response) -> bytes:
    # The test client closes a streamed response once its content is read (closing it here
    # would close the test's database connection too, through request_finished).
    return b"".join(response.streaming_content) if response.streaming else response.content


def _csv(content: bytes) -> list[list[str]]:
    assert content.startswith(BOM.encode("utf-8"))
    return list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))


def _number(text: str) -> object:
    """A CSV cell as the JSON API gives it: counts int, rates float, money a "0.00" string."""
    if text == "":
        return None
    return int(text) if text.lstrip("-").isdigit() else text


def _same_as_json(json_row: dict, csv_row: dict) -> None:
    for name, _label, kind in FIGURES:
        value = csv_row[name]
        if kind == "rate":
            assert (float(value) if value else None) == json_row[name], name
        else:
            assert _number(value) == json_row[name], name


# -- the writers over the API ------------------------------------------------------------------


def test_csv_has_a_bom_chinese_headers_and_the_json_numbers(api, corp, month):
    body = api.get("/api/v1/reports/channels/", _query(corp)).json()
    response = api.get("/api/v1/reports/channels/", _query(corp, format="csv"))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response.streaming
    lines = _csv(_body(response))
    header, *rows, totals = lines
    assert header[:4] == ["编号", "渠道", "扫码记录", "访客数"]
    assert header[-1] == "投资回报率"
    names = ["key", "name", *(name for name, _label, _kind in FIGURES)]
    assert len(rows) == len(body["rows"]) == 2
    for json_row, cells in zip(body["rows"], rows, strict=True):
        csv_row = dict(zip(names, cells, strict=True))
        assert (int(csv_row["key"]), csv_row["name"]) == (json_row["key"], json_row["name"])
        _same_as_json(json_row, csv_row)
    pyq = dict(zip(names, rows[0], strict=True))
    assert (pyq["revenue"], pyq["cost"], pyq["roi"]) == ("620.50", "3100.00", "0.2002")
    assert pyq["scan_to_add"] == ""  # null: a native code has no scans
    xhs = dict(zip(names, rows[1], strict=True))
    assert xhs["scan_to_add"] == "0.5000"
    total_row = dict(zip(names, totals, strict=True))
    assert (total_row["key"], total_row["name"]) == ("", "合计")
    _same_as_json(body["totals"], total_row)


@pytest.mark.parametrize("group_by", GROUPS)
def test_every_grouping_exports_the_json_rows(api, corp, month, group_by):
    body = api.get("/api/v1/reports/channels/", _query(corp, group_by=group_by)).json()
    names = ["key", "name", *(name for name, _label, _kind in FIGURES)]
    response = api.get("/api/v1/reports/channels/", _query(corp, group_by=group_by, format="csv"))
    assert response.status_code == 200
    header, *rows, totals = _csv(_body(response))
    assert header[1] == str(exports.GROUP_LABELS[group_by])
    assert len(rows) == len(body["rows"])
    for json_row, cells in zip(body["rows"], rows, strict=True):
        csv_row = dict(zip(names, cells, strict=True))
        assert csv_row["name"] == json_row["name"]
        _same_as_json(json_row, csv_row)
    _same_as_json(body["totals"], dict(zip(names, totals, strict=True)))
    response = api.get("/api/v1/reports/channels/", _query(corp, group_by=group_by, format="xlsx"))
    sheet = openpyxl.load_workbook(io.BytesIO(_body(response))).active
    assert sheet.max_row == 1 + len(body["rows"]) + 1


def test_xlsx_opens_with_chinese_headers_number_formats_and_the_json_numbers(api, corp, month):
    body = api.get("/api/v1/reports/channels/", _query(corp)).json()
    response = api.get("/api/v1/reports/channels/", _query(corp, format="xlsx"))
    assert response.status_code == 200
    assert response["Content-Type"] == XLSX
    book = openpyxl.load_workbook(io.BytesIO(_body(response)))
    sheet = book.active
    assert sheet.title == "渠道报表"
    rows = list(sheet.iter_rows())
    header = [cell.value for cell in rows[0]]
    labels = {name: position for position, name in enumerate(
        ["key", "name", *(name for name, _label, _kind in FIGURES)])}  # fmt: skip
    assert header[:3] == ["编号", "渠道", "扫码记录"]
    assert header[labels["revenue"]] == "收入"
    assert header[labels["cost_per_new_customer"]] == "获客成本"
    assert len(rows) == 1 + 2 + 1  # header, two channels, totals
    for json_row, cells in zip(body["rows"], rows[1:3], strict=True):
        assert cells[0].value == json_row["key"]
        assert cells[1].value == json_row["name"]
        for name, _label, kind in FIGURES:
            cell, expected = cells[labels[name]], json_row[name]
            if expected is None:
                assert cell.value is None, name
            elif kind == "money":
                assert Decimal(str(cell.value)).quantize(Decimal("0.01")) == Decimal(expected)
                assert cell.number_format == "0.00"
            elif kind == "rate":
                assert cell.value == pytest.approx(expected)
                assert cell.number_format == "0.00%"
            else:
                assert cell.value == expected, name
    totals = rows[-1]
    assert totals[1].value == "合计"
    assert totals[labels["revenue"]].value == pytest.approx(620.5)
    assert totals[labels["adds"]].value == body["totals"]["adds"] == 3


def test_the_daily_trend_exports_a_day_column_and_every_day(api, corp, month):
    response = api.get("/api/v1/reports/daily/", _query(corp, format="csv"))
    header, *rows, totals = _csv(_body(response))
    assert header[:2] == ["日期", "扫码记录"]
    assert [row[0] for row in rows[:3]] == ["2026-10-01", "2026-10-02", "2026-10-03"]
    assert len(rows) == 31
    assert totals[0] == "合计"
    book = openpyxl.load_workbook(
        io.BytesIO(_body(api.get("/api/v1/reports/daily/", _query(corp, format="xlsx"))))
    )
    sheet = book.active
    assert sheet.title == "每日趋势"
    assert sheet["A2"].value == dt.datetime(2026, 10, 1)
    assert sheet["A2"].number_format == "yyyy-mm-dd"
    assert sheet.max_row == 1 + 31 + 1


@pytest.mark.parametrize(
    ("path", "fmt", "title", "slug"),
    [
        ("channels", "xlsx", "渠道报表", "channel-report"),
        ("channels", "csv", "渠道报表", "channel-report"),
        ("daily", "xlsx", "每日趋势", "daily-trend"),
    ],
)
def test_the_file_is_named_after_the_report_corp_and_period(api, corp, month, path, fmt, title,
                                                            slug):  # fmt: skip
    response = api.get(f"/api/v1/reports/{path}/", _query(corp, format=fmt))
    _body(response)
    name = f"{title}_{corp.corp_id}_2026-10-01_2026-10-31.{fmt}"
    fallback = f"{slug}_{corp.corp_id}_2026-10-01_2026-10-31.{fmt}"
    assert response["Content-Disposition"] == (
        f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name)}"
    )
    assert response["Cache-Control"] == "private, no-store"


def test_format_json_is_the_json_and_an_unknown_format_is_a_400(api, corp, month):
    assert api.get("/api/v1/reports/channels/", _query(corp, format="json")).json()["rows"]
    response = api.get("/api/v1/reports/channels/", _query(corp, format="pdf"))
    assert response.status_code == 400
    assert "format" in response.json()
    assert "pdf" in response.json()["format"][0]
    # a bad parameter of a file export is a 400 in JSON too
    response = api.get("/api/v1/reports/daily/", _query(corp, format="csv", window=10))
    assert response.status_code == 400
    assert "window" in response.json()


def test_an_export_needs_a_login(corp, month):
    response = APIClient().get("/api/v1/reports/channels/", _query(corp, format="csv"))
    assert response.status_code in (401, 403)


# -- the writers on their own ------------------------------------------------------------------


def _rows(count: int):
    for index in range(count):
        yield {"key": index, "name": f"=cmd{index}" if index == 0 else f"成员{index}",
               "adds": index, "revenue": Decimal("1.5"), "roi": None}  # fmt: skip


def test_the_writers_take_any_rows_and_report_progress(monkeypatch, tmp_path):
    monkeypatch.setattr(exports, "CHUNK_ROWS", 4)
    table = Table(title="渠道报表", columns=report_columns("channels"), rows=_rows(10),
                  totals={"adds": 45})  # fmt: skip
    seen: list[int] = []
    path = tmp_path / "out.xlsx"
    assert xlsx_write(table, str(path), progress=seen.append) == 11
    assert seen == [4, 8, 11]
    sheet = openpyxl.load_workbook(path).active
    # A name that looks like a formula stays text (no formula, no CSV/XLSX injection).
    assert sheet["B2"].value == "=cmd0"
    assert sheet["B2"].data_type == "s"
    assert sheet.max_row == 12
    seen.clear()
    out = io.BytesIO()
    csv_write(Table("t", figure_columns()[:3], [{"scans": 1}] * 9), out, seen.append)
    assert seen == [4, 8, 9]
    lines = _csv(out.getvalue())
    assert lines[0] == ["扫码记录", "访客数", "添加数"]
    assert lines[1] == ["1", "", ""]
    out = io.BytesIO()
    csv_write(Table("t", report_columns("channels"), _rows(1)), out)
    assert _csv(out.getvalue())[1][1] == "'=cmd0"


def test_headers_follow_the_language(corp, month):
    result = ChannelReport(ReportParams(corp=corp, first=FIRST, last=LAST)).calculate()
    with translation.override("en"):
        response = exports.report_export_response(result, "csv")
        header = _csv(_body(response))[0]
    assert header[:3] == ["ID", "channel", "scans"]
    assert "channel-report_" in response["Content-Disposition"]


# -- background jobs ---------------------------------------------------------------------------


@pytest.fixture
def small_threshold(settings) -> None:
    settings.REPORT_EXPORT_SYNC_MAX_ROWS = 5  # the daily trend's 31 rows go to a job


def test_a_large_export_is_a_job_that_runs_and_gives_the_same_file(
    api, corp, month, small_threshold, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.get("/api/v1/reports/daily/", _query(corp, format="csv"))
    assert response.status_code == 202
    job = response.json()
    assert response["Location"] == job["url"]
    assert job["url"] == f"http://testserver/api/v1/reports/exports/{job['id']}/"
    # Queued after commit: the test's transaction holds the commit until the answer is out.
    assert (job["status"], job["progress"], job["rows_total"]) == ("pending", 0.0, 32)
    assert job["download_url"] is None
    status = api.get(job["url"]).json()
    assert (status["status"], status["progress"], status["rows_done"], status["rows_total"]) == (
        "done", 1.0, 32, 32,
    )  # fmt: skip
    assert status["download_url"] == f"{job['url']}download/"
    download = api.get(status["download_url"])
    assert download.status_code == 200
    assert download["Content-Type"] == "text/csv; charset=utf-8"
    name = quote(f"每日趋势_{corp.corp_id}_2026-10-01_2026-10-31.csv")
    assert download["Content-Disposition"].endswith(f"filename*=UTF-8''{name}")
    from_job = _body(download)
    row = ExportJob.objects.get(pk=job["id"])
    assert row.file.name.startswith(f"exports/{corp.pk}/")
    assert default_storage.exists(row.file.name)
    assert (row.report, row.format, row.created_by.username) == ("daily", "csv", "admin")
    # The same bytes as the export answered at once below the threshold.
    result = export_jobs.REPORT_CLASSES["daily"](
        ReportParams(corp=corp, first=FIRST, last=LAST)
    ).calculate()
    assert from_job == _body(exports.report_export_response(result, "csv"))


def test_a_job_reports_progress_while_it_runs(
    api, admin_user, corp, month, monkeypatch, django_capture_on_commit_callbacks
):
    params = ReportParams(corp=corp, first=FIRST, last=LAST)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        job = export_job_create(report="daily", params=params, fmt="xlsx", user=admin_user)
    assert len(queued) == 1  # queued after commit
    url = f"/api/v1/reports/exports/{job.pk}/"
    before = api.get(url).json()
    assert (before["status"], before["progress"], before["download_url"]) == (
        "pending", 0.0, None,
    )  # fmt: skip
    assert api.get(f"{url}download/").status_code == 409
    monkeypatch.setattr(exports, "CHUNK_ROWS", 10)
    seen = []

    def watch(done: int) -> None:
        seen.append(api.get(url).json()["progress"])

    original = exports.xlsx_write
    monkeypatch.setattr(
        export_jobs, "xlsx_write",
        lambda table, out, progress: original(table, out, lambda n: (progress(n), watch(n))),
    )  # fmt: skip
    assert export_job_run(job_id=job.pk).status == ExportJob.Status.DONE
    assert seen == [pytest.approx(10 / 32), pytest.approx(20 / 32), pytest.approx(30 / 32), 1.0]
    assert export_job_run(job_id=job.pk) is None  # a duplicate delivery: already done
    book = openpyxl.load_workbook(io.BytesIO(_body(api.get(f"{url}download/"))))
    assert book.active.max_row == 33


def test_a_run_that_lost_its_worker_is_taken_over(admin_user, corp, month):
    params = ReportParams(corp=corp, first=FIRST, last=LAST)
    job = export_job_create(report="channels", params=params, fmt="csv", user=admin_user)
    ExportJob.objects.filter(pk=job.pk).update(
        status=ExportJob.Status.RUNNING, started_at=timezone.now() - dt.timedelta(minutes=5)
    )
    assert export_job_run(job_id=job.pk) is None  # still running elsewhere, recently started
    ExportJob.objects.filter(pk=job.pk).update(
        started_at=timezone.now() - export_jobs.STALE_RUN - dt.timedelta(minutes=1)
    )
    assert export_job_run(job_id=job.pk).status == ExportJob.Status.DONE


def test_a_failed_job_says_why(admin_user, corp, api):
    job = ExportJob.objects.create(
        corp=corp, created_by=admin_user, report="channels", format="csv",
        params={"first": "2026-10-31", "last": "2026-10-01", "window": 30, "group_by": "channel",
                "channel_type": None, "channel_group": ""},
    )  # fmt: skip
    assert export_job_run(job_id=job.pk).status == ExportJob.Status.FAILED
    body = api.get(f"/api/v1/reports/exports/{job.pk}/").json()
    assert body["status"] == "failed"
    assert body["error"]
    assert api.get(f"/api/v1/reports/exports/{job.pk}/download/").status_code == 409


def test_a_job_is_a_404_to_whom_cannot_see_it(
    corp, month, small_threshold, django_user_model, monkeypatch,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    from scrm.wecom.services import corp_create

    other = corp_create(corp_id="wwother000000001", name="其他企业", secret="s",
                        callback_token="t", encoding_aes_key="A" * 43)  # fmt: skip
    owner_user = member(django_user_model.objects.create_user(username="owner"), other,
                        role="manager")  # fmt: skip
    owner = _client(owner_user)
    # A manager of the first corp only.
    stranger_user = django_user_model.objects.create_user(username="stranger")
    stranger = _client(member(stranger_user, corp, role="manager"))
    with django_capture_on_commit_callbacks(execute=True):
        started = owner.get("/api/v1/reports/daily/", _query(other, format="xlsx"))
    assert started.status_code == 202
    url = started.json()["url"]
    assert owner.get(url).status_code == 200
    assert owner.get(f"{url}download/").status_code == 200
    # Another user's job of another corp: as if it did not exist.
    assert stranger.get(url).status_code == 404
    assert stranger.get(f"{url}download/").status_code == 404
    # A manager of both corps who did not ask for the job: 404 too.
    member(stranger_user, other, role="manager")
    assert stranger.get(url).status_code == 404
    # The owner no longer belongs to the job's corp (a manager of the first one now): 404.
    CorpMembership.objects.filter(user=owner_user, corp=other).delete()
    member(owner_user, corp, role="manager")
    assert owner.get(url).status_code == 404
    assert owner.get(f"{url}download/").status_code == 404


def test_old_files_are_deleted_and_their_jobs_expire(
    api, admin_user, corp, month, small_threshold, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        old = api.get("/api/v1/reports/daily/", _query(corp, format="csv")).json()
        new = api.get("/api/v1/reports/daily/", _query(corp, format="xlsx")).json()
    ExportJob.objects.filter(pk=old["id"]).update(
        created_at=timezone.now() - dt.timedelta(hours=25)
    )
    old_file = ExportJob.objects.get(pk=old["id"]).file.name
    orphan = default_storage.save(f"exports/{corp.pk}/orphan.csv", io.BytesIO(b"x"))
    stale = time.time() - 2 * 86400
    os.utime(default_storage.path(orphan), (stale, stale))
    fresh_orphan = default_storage.save(f"exports/{corp.pk}/writing.csv", io.BytesIO(b"x"))

    assert export_files_purge() == 2
    assert not default_storage.exists(old_file)
    assert not default_storage.exists(orphan)
    assert default_storage.exists(fresh_orphan)  # may be a job still writing
    assert default_storage.exists(ExportJob.objects.get(pk=new["id"]).file.name)
    assert api.get(old["url"]).json()["status"] == "expired"
    assert api.get(f"{old['url']}download/").status_code == 410
    assert api.get(f"{new['url']}download/").status_code == 200
    assert export_files_purge() == 0  # idempotent


def test_the_purge_is_scheduled_by_setup_periodic_tasks():
    from django_celery_beat.models import PeriodicTask

    call_command("setup_periodic_tasks", stdout=io.StringIO())
    task = PeriodicTask.objects.get(task="analytics.tasks.export_files_purge_task")
    assert task.interval.every == 3600
