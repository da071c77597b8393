"""Bulk imports from CSV (all or nothing, row-level errors, Excel's encodings) and QR exports."""

from __future__ import annotations

import io
import re
import zipfile
from datetime import date
from decimal import Decimal

import pytest

from channels_app.models import Channel, ChannelCost, LiveCode, PoolMember
from channels_app.services.imports import (
    MAX_ROWS,
    channel_costs_import_csv,
    live_codes_create_from_csv,
    live_codes_export,
)
from channels_app.services.publishing import live_code_publish
from contacts.models import Staff
from scrm.wecom.models import ApiCall
from scrm.wecom.sandbox.models import SandboxContactWay

pytestmark = pytest.mark.django_db

HEADER_ZH = (
    "渠道代码,渠道名称,渠道类型,活码名称,模式,链接标识,成员,每日上限,分配方式,欢迎语,utm_source"
)
PNG = b"\x89PNG\r\n\x1a\n"


def _csv(*lines: str, header: str = HEADER_ZH, encoding: str = "utf-8") -> io.BytesIO:
    return io.BytesIO(("\r\n".join([header, *lines]) + "\r\n").encode(encoding))


def _errors(result) -> list[tuple]:
    return [(e.row, e.column, e.message) for e in result.errors]


# -- live codes --------------------------------------------------------------------------------


def test_valid_file_creates_draft_codes_channels_and_pools(corp, channel, staff):
    result = live_codes_create_from_csv(corp=corp, file=_csv(
        "xhs_618,小红书618,2,笔记A,landing,,staff01|staff02,20,round_robin,你好{customer_name},xhs",
        "xhs_618,小红书618,2,笔记B,native,xhs-b,staff03,,,,xhs",
        "pyq_0012,,,朋友圈素材3,,pyq-3,staff01;staff03,,,,",
    ))  # fmt: skip
    assert _errors(result) == []
    assert len(result.created) == 3
    assert [c.code for c in result.channels_created] == ["xhs_618"]
    xhs = Channel.objects.get(corp=corp, code="xhs_618")
    assert (xhs.name, xhs.channel_type, xhs.utm_source) == ("小红书618", 2, "xhs")
    first = LiveCode.objects.get(name="笔记A")
    assert re.fullmatch(r"xhs_618-[0-9a-f]{6}", first.slug)
    assert (first.mode, first.status, first.strategy, first.channel) == (
        "landing", "draft", "round_robin", xhs,
    )  # fmt: skip
    assert first.welcome_text == "你好{customer_name}"
    pool = sorted(first.pool.values_list("staff__userid", "daily_cap"))
    assert pool == [("staff01", 20), ("staff02", 20)]
    third = LiveCode.objects.get(slug="pyq-3")
    assert (third.channel, third.mode) == (channel, "landing")  # the default mode
    assert sorted(third.pool.values_list("staff__userid", flat=True)) == ["staff01", "staff03"]
    assert LiveCode.objects.get(slug="xhs-b").mode == "native"
    assert not result.warnings


def test_one_bad_row_among_many_creates_nothing_and_names_row_and_column(corp, staff):
    lines = [f"dy_{n % 3},抖音{n % 3},2,素材{n},landing,dy-{n},staff01,,,," for n in range(40)]
    lines[26] = "dy_0,抖音0,2,素材26,qr,dy-26,staff01,,,,"
    lines[30] = "dy_0,抖音0,2,素材30,landing,dy-30,staff02,lots,,,"
    result = live_codes_create_from_csv(corp=corp, file=_csv(*lines))
    # Excel numbering: the header is row 1, so line index 26 is row 28.
    assert [(row, column) for row, column, _message in _errors(result)] == [
        (28, "模式"), (32, "每日上限"),
    ]  # fmt: skip
    assert "native" in result.errors[0].message
    assert not result.created
    assert LiveCode.objects.count() == 0
    assert PoolMember.objects.count() == 0
    assert not Channel.objects.filter(code__startswith="dy_").exists()


def test_gbk_file_from_excel_is_read(corp, staff):
    file = _csv("xhs_618,小红书,2,电梯海报,landing,lift-1,staff01,,,欢迎光临,", encoding="gbk")
    result = live_codes_create_from_csv(corp=corp, file=file)
    assert _errors(result) == []
    code = LiveCode.objects.get(slug="lift-1")
    assert (code.name, code.channel.name, code.welcome_text) == ("电梯海报", "小红书", "欢迎光临")


def test_utf8_bom_and_english_headers(corp, staff):
    header = "channel_code,channel_name,name,staff,Mode,Daily Cap"
    file = _csv("mall_1,商场,Counter A,staff02,native,5", header=header, encoding="utf-8-sig")
    assert file.getvalue().startswith(b"\xef\xbb\xbf")
    result = live_codes_create_from_csv(corp=corp, file=file)
    assert _errors(result) == []
    (code,) = result.created
    assert (code.name, code.mode) == ("Counter A", "native")
    assert list(code.pool.values_list("staff__userid", "daily_cap")) == [("staff02", 5)]


def test_unknown_and_departed_staff_are_row_errors(corp, staff):
    Staff.objects.filter(userid="staff03").update(status=Staff.Status.LEFT)
    result = live_codes_create_from_csv(corp=corp, file=_csv(
        "pyq_1,朋友圈,,A,,a-1,staff01|nobody,,,,",
        "pyq_1,朋友圈,,B,,b-1,staff03,,,,",
    ))  # fmt: skip
    assert [(row, column) for row, column, _m in _errors(result)] == [(2, "成员"), (3, "成员")]
    assert "nobody" in result.errors[0].message
    assert "staff03" in result.errors[1].message
    assert LiveCode.objects.count() == 0


def test_duplicate_slugs_in_the_file_and_in_the_database(corp, staff, make_code):
    make_code(slug="taken")
    result = live_codes_create_from_csv(corp=corp, file=_csv(
        "pyq_1,朋友圈,,A,,same,staff01,,,,",
        "pyq_1,朋友圈,,B,,same,staff01,,,,",
        "pyq_1,朋友圈,,C,,taken,staff01,,,,",
    ))  # fmt: skip
    assert [(row, column) for row, column, _m in _errors(result)] == [(3, "链接标识"),
                                                                      (4, "链接标识")]  # fmt: skip
    assert "第 2 行" in result.errors[0].message
    assert LiveCode.objects.count() == 1


def test_model_validation_errors_are_reported_by_column(corp, staff):
    result = live_codes_create_from_csv(corp=corp, file=_csv(
        "Bad-Code,坏渠道,,A,,a-1,staff01,,,,",
        "new_one,,,B,,b-1,staff01,,,,",
        "pyq_1,朋友圈,9,,,c 1,staff01,,fastest,,",
    ))  # fmt: skip
    columns = [(row, column) for row, column, _m in _errors(result)]
    assert (2, "渠道代码") in columns  # fails the channel code pattern
    assert (3, "渠道名称") in columns  # a new channel needs a name
    assert {(4, "渠道类型"), (4, "活码名称"), (4, "链接标识"), (4, "分配方式")} <= set(columns)
    assert LiveCode.objects.count() == 0


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty"),
        (b"\r\n\r\n", "empty"),
        ("渠道代码,活码名称\r\npyq_1,A\r\n".encode(), "成员 (staff)"),
        (b"PK\x03\x04rest-of-a-workbook", "Excel"),
        (b"\x00\x01\x02binary", "not a text CSV"),
        ("渠道代码,活码名称,成员\r\n".encode(), "no data rows"),
        ("渠道代码,活码名称,成员,成员\r\n".encode(), "twice"),
    ],
)
def test_bad_files_are_one_message_not_a_crash(corp, content, expected, settings):
    settings.LANGUAGE_CODE = "en"
    result = live_codes_create_from_csv(corp=corp, file=io.BytesIO(content))
    ((row, column, message),) = _errors(result)
    assert (row, column) == (None, "")
    assert expected in message


def test_more_than_the_row_limit_is_refused(corp, staff):
    lines = [f"pyq_1,朋友圈,,A{n},,,staff01,,,," for n in range(MAX_ROWS + 1)]
    result = live_codes_create_from_csv(corp=corp, file=_csv(*lines))
    ((row, _column, message),) = _errors(result)
    assert row is None
    assert str(MAX_ROWS) in message
    assert LiveCode.objects.count() == 0


def test_tab_separated_unicode_text_from_excel(corp, staff):
    text = "渠道代码\t渠道名称\t活码名称\t成员\r\nxhs_1\t小红书\t笔记\tstaff01\r\n"
    result = live_codes_create_from_csv(corp=corp, file=io.BytesIO(text.encode("utf-16")))
    assert _errors(result) == []
    assert LiveCode.objects.get().name == "笔记"


# -- channel costs -----------------------------------------------------------------------------

COST_HEADER = "渠道代码,开始日期,结束日期,金额,币种,备注"


def test_costs_import_accepts_both_date_styles(corp, channel):
    result = channel_costs_import_csv(corp=corp, file=_csv(
        "pyq_0012,2025-06-01,2025-06-30,\"12,000.50\",,6月投放",
        "PYQ_0012,2025/7/1,2025/7/31,8000,cny,",
        header=COST_HEADER,
    ))  # fmt: skip
    assert _errors(result) == []
    costs = list(ChannelCost.objects.order_by("start_date"))
    assert [(c.start_date, c.end_date, c.amount, c.currency, c.corp) for c in costs] == [
        (date(2025, 6, 1), date(2025, 6, 30), Decimal("12000.50"), "CNY", corp),
        (date(2025, 7, 1), date(2025, 7, 31), Decimal("8000"), "CNY", corp),
    ]
    assert costs[0].note == "6月投放"


def test_costs_bad_rows_import_nothing(corp, channel):
    result = channel_costs_import_csv(corp=corp, file=_csv(
        "pyq_0012,2025-06-01,2025-06-30,100,,",
        "pyq_0012,2025-13-01,2025-06-30,100,,",
        "pyq_0012,2025-06-01,2025-06-30,-5,,",
        "nope,2025-06-01,2025-06-30,100,,",
        "pyq_0012,2025-06-30,2025-06-01,100,,",
        "pyq_0012,2025-06-01,2025-06-30,1.005,CNY,",
        header=COST_HEADER,
    ))  # fmt: skip
    assert [(row, column) for row, column, _m in _errors(result)] == [
        (3, "开始日期"), (4, "金额"), (5, "渠道代码"), (6, "结束日期"), (7, "金额"),
    ]  # fmt: skip
    assert ChannelCost.objects.count() == 0


# -- QR images and posters ---------------------------------------------------------------------


def _decoded(png: bytes) -> list[str]:
    """What a phone would read from the image."""
    zxingcpp = pytest.importorskip("zxingcpp")
    from PIL import Image

    return [result.text for result in zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))]


def _zip_names(content: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


@pytest.mark.parametrize("kind", ["png", "poster"])
def test_zip_has_one_image_per_landing_code_with_unique_names(make_code, kind):
    codes = [make_code(name="618 海报"), make_code(name="618 海报"), make_code(name="a/b:c*?")]
    export = live_codes_export(live_codes=LiveCode.objects.filter(pk__in=[c.pk for c in codes]),
                               kind=kind, base_url="https://scrm.example.com/")  # fmt: skip
    files = _zip_names(export.content)
    assert len(files) == 3
    assert len({name.lower() for name in files}) == 3
    for name, image in files.items():
        assert name.endswith(".png")
        assert not set(name) & set("/\\:*?")
        assert image.startswith(PNG)
    links = sorted(text for image in files.values() for text in _decoded(image))
    assert links == sorted(f"https://scrm.example.com/l/{code.slug}/" for code in codes)


@pytest.mark.django_db(transaction=True)
def test_native_codes_use_the_wecom_image_and_unpublished_ones_are_skipped(
    make_code, sandbox_corp, live_server, settings
):
    # The sandbox serves its QR images over HTTP, as WeCom's CDN does.
    settings.WECOM_SANDBOX_PUBLIC_URL = live_server.url
    published = live_code_publish(live_code=make_code(mode="native", name="门店收银台"))
    assert published.qr_code.startswith(live_server.url)
    draft = make_code(mode="native", name="还没发布")
    codes = LiveCode.objects.filter(pk__in=[published.pk, draft.pk])
    for kind in ("png", "poster"):
        export = live_codes_export(live_codes=codes, kind=kind, base_url="https://x.example")
        assert [code for code, _reason in export.skipped] == [draft]
        files = _zip_names(export.content)
        assert len(export.filenames) == 1
        assert files[export.filenames[0]].startswith(PNG)
        # WeCom's own add link, not a QR of the image's address.
        assert _decoded(files[export.filenames[0]]) == [
            f"https://work.weixin.qq.com/ca/sandbox/{published.config_id}"
        ]
        assert "还没发布" in files["skipped.txt"].decode()


def test_unreachable_wecom_image_is_skipped_not_a_crash(make_code):
    code = make_code(mode="native", qr_code="http://127.0.0.1:9/qr/nothing.png")
    export = live_codes_export(live_codes=[code], kind="png", base_url="https://x.example")
    ((skipped, reason),) = export.skipped
    assert skipped == code
    assert reason
    assert export.filenames == []


def test_codes_from_csv_are_drafts_whose_pools_reach_wecom_only_when_published(
    corp, staff, django_capture_on_commit_callbacks
):
    # The import creates codes only (a slug already used is a row error, above), so no pool of
    # a published code changes through it: its pools are written by the pool service, and a
    # draft is not in WeCom yet.
    with django_capture_on_commit_callbacks(execute=True):
        result = live_codes_create_from_csv(corp=corp, file=_csv(
            "pyq_1,朋友圈,,收银台,native,till,staff01|staff02,5,,,",
        ))  # fmt: skip
    assert _errors(result) == []
    (code,) = result.created
    assert (code.mode, code.status) == ("native", "draft")
    assert sorted(code.pool.values_list("staff__userid", "daily_cap")) == [
        ("staff01", 5), ("staff02", 5),
    ]  # fmt: skip
    assert not ApiCall.objects.filter(endpoint__contains="contact_way").exists()
    published = live_code_publish(live_code=code)
    assert sorted(SandboxContactWay.objects.get(config_id=published.config_id).users) == [
        "staff01", "staff02",
    ]  # fmt: skip
