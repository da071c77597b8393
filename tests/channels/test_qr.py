"""channels_app.qr: QR PNGs, posters and ZIPs, rendered from plain arguments (no database)."""

import io
import zipfile
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from channels_app import qr
from channels_app.qr import QrRenderError, poster_png, qr_png, safe_filename, zip_of

URL = "https://scrm.example.com/l/dy-spring-2025?utm_source=douyin"
CAPTION = "长按识别二维码，添加专属顾问"
REGION = "上海徐汇、静安、浦东新区线下门店联合推广活动"
LONG_NAME = f"小红书达人合作（华东区）春夏新品种草计划第二期·{REGION}"


def _decode(image: Image.Image) -> list[str]:
    zxingcpp = pytest.importorskip("zxingcpp")
    return [barcode.text for barcode in zxingcpp.read_barcodes(image.convert("L"))]


def _open(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return image


def _image_bytes(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


# --- qr_png ------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [URL, "渠道：抖音直播间 / staff=张三"])
def test_qr_png_decodes_back_to_its_content(content):
    assert _decode(_open(qr_png(content))) == [content]


def test_qr_png_is_crisp_whole_pixel_modules():
    image = _open(qr_png(URL, box_size=7, border=4)).convert("L")
    modules = len(qr._qr_modules(URL, border=4))
    assert image.size == (modules * 7, modules * 7)
    assert {value for _, value in image.getcolors()} == {0, 255}  # no antialiasing grey
    assert image.getpixel((0, 0)) == 255  # the quiet zone is white
    assert image.getpixel((4 * 7, 4 * 7)) == 0  # the finder pattern's corner is dark


@pytest.mark.parametrize(
    ("content", "options"),
    [("", {}), ("   ", {}), ("x" * 5000, {}), (URL, {"box_size": 0}), (URL, {"border": -1})],
)
def test_qr_png_rejects_bad_input_with_a_reason(content, options):
    with pytest.raises(QrRenderError, match=r"\w"):
        qr_png(content, **options)


# --- poster_png --------------------------------------------------------------------------------


def test_poster_is_an_a6_png_at_300_dpi_whose_qr_decodes():
    image = _open(poster_png(qr_content=URL, channel_name="抖音直播间", code_name="春季新品"))
    assert image.size == (1240, 1748)
    assert image.info["dpi"] == pytest.approx((300, 300), abs=0.1)
    assert _decode(image) == [URL]


def test_poster_qr_region_alone_decodes():
    image = _open(poster_png(qr_content=URL, channel_name="抖音", code_name="门店"))
    # The code sits in the lower two thirds, centred, away from the text.
    region = image.crop((200, 500, 1040, 1600))
    assert _decode(region) == [URL]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG-transparent"])
def test_poster_uses_an_existing_wecom_qr_image(fmt):
    wecom = Image.open(io.BytesIO(qr_png(URL, box_size=6))).convert("L")
    if fmt == "JPEG":  # WeCom serves small JPEGs with compression noise
        data = _image_bytes(wecom.convert("RGB"), "JPEG", quality=80)
    else:  # dark modules on a transparent background must print on white, not black
        rgba = Image.new("RGBA", wecom.size, (0, 0, 0, 0))
        rgba.putalpha(wecom.point(lambda value: 255 - value))
        data = _image_bytes(rgba)
    image = _open(poster_png(qr_image=data, channel_name="企业微信", code_name="原生活码"))
    assert image.size == (1240, 1748)
    assert _decode(image) == [URL]
    inside_the_code = image.convert("L").crop((420, 900, 820, 1250))
    assert {value for _, value in inside_the_code.getcolors()} == {0, 255}  # JPEG noise snapped


def test_a_qr_image_with_a_picture_in_it_is_not_posterised():
    wecom = Image.open(io.BytesIO(qr_png(URL, box_size=8))).convert("RGB")
    ImageDraw.Draw(wecom).rectangle((120, 120, 200, 200), fill=(128, 128, 128))  # an "avatar"
    wecom.paste(Image.linear_gradient("L").resize((80, 80)).convert("RGB"), (130, 130))
    image = _open(poster_png(qr_image=_image_bytes(wecom), channel_name="企业微信", code_name="x"))
    inside_the_code = image.convert("L").crop((420, 900, 820, 1250))
    greys = [count for count, value in inside_the_code.getcolors() if 40 < value < 215]
    assert sum(greys) > 10_000


def test_bundled_font_has_cjk_glyphs_not_tofu():
    assert qr.FONT_PATH.is_file()
    assert qr.FONT_PATH.stat().st_size < 2 * 1024 * 1024
    assert qr._face_for(CAPTION) == (str(qr.FONT_PATH), 0)
    font = ImageFont.truetype(str(qr.FONT_PATH), 48)
    tofu = qr._glyph_bitmap(font, "\U0010fffd")  # a code point no font has: the .notdef box
    for char in "长按识别二维码添加专属顾问抖音渠道":
        assert font.getmask(char).getbbox() is not None, char
        assert qr._glyph_bitmap(font, char) != tofu, char
    assert not qr._has_glyph((str(qr.FONT_PATH), 0), "\U0010fffe")


def test_caption_is_drawn_on_the_poster():
    with_caption = _open(poster_png(qr_content=URL, channel_name="A", code_name="B"))
    without = _open(poster_png(qr_content=URL, channel_name="A", code_name="B", caption=""))
    assert with_caption.convert("L").getextrema()[0] == 0
    assert bytes(with_caption.convert("L").tobytes()) != bytes(without.convert("L").tobytes())


def test_long_names_wrap_within_the_page_and_keep_every_character():
    width = qr.POSTER_SIZE[0] - 2 * qr.MARGIN
    block = qr._fit_text(LONG_NAME, width, max_height=300, sizes=(88, 40), bold=True)
    assert len(block.lines) > 1
    assert "".join(block.lines) == LONG_NAME
    assert all(block.font.getlength(line) + 2 * block.stroke <= width for line in block.lines)
    assert block.height <= 300

    latin = "Store-" + "X" * 120 + "-第三批次"
    image = _open(poster_png(qr_content=URL, channel_name=LONG_NAME, code_name=latin))
    grey = image.convert("L")
    # Nothing reaches into the side margins: the text was wrapped or shrunk, not cut off.
    bar = qr.BAR
    for strip in ((0, bar, 60, 1748 - bar), (1180, bar, 1240, 1748 - bar)):
        assert grey.crop(strip).getextrema() == (255, 255)
    assert _decode(image) == [URL]


def test_text_too_long_for_any_legible_size_raises():
    with pytest.raises(QrRenderError):
        poster_png(qr_content=URL, channel_name="很长的名字" * 300, code_name="x")


def test_empty_code_name_is_left_out():
    image = _open(poster_png(qr_content=URL, channel_name="抖音", code_name="  "))
    assert image.size == (1240, 1748)


def test_logo_with_alpha_is_composed_on_white():
    logo = Image.new("RGBA", (400, 200), (0, 0, 0, 0))  # transparent black background
    ImageDraw.Draw(logo).ellipse((100, 0, 300, 200), fill=(220, 30, 30, 255))
    plain = _open(poster_png(qr_content=URL, channel_name="抖音", code_name="门店")).convert("RGB")
    image = _open(poster_png(qr_content=URL, channel_name="抖音", code_name="门店",
                             logo=_image_bytes(logo))).convert("RGB")  # fmt: skip
    reds = [(x, y) for x in range(0, 1240, 4) for y in range(0, 700, 4)
            if image.getpixel((x, y)) == (220, 30, 30)]  # fmt: skip
    assert reds, "the logo is drawn"
    top = min(y for _, y in reds)
    left, right = min(x for x, _ in reds), max(x for x, _ in reds)
    assert abs((left + right) / 2 - 620) < 8  # centred
    assert image.getpixel((left - 40, top + 10)) == (255, 255, 255)  # alpha kept: not black
    assert image != plain
    assert _decode(image) == [URL]


@pytest.mark.parametrize("mode", ["P", "LA", "CMYK", "1"])
def test_logos_in_other_modes_are_accepted(mode):
    source = Image.new("RGBA", (120, 60), (0, 0, 0, 0))
    ImageDraw.Draw(source).rectangle((10, 10, 110, 50), fill=(20, 120, 90, 255))
    if mode == "P":
        data = _image_bytes(source.convert("P"), "GIF", transparency=0)
    elif mode == "CMYK":
        data = _image_bytes(source.convert("RGB").convert("CMYK"), "JPEG")
    else:
        data = _image_bytes(source.convert(mode))
    png = poster_png(qr_content=URL, channel_name="抖音", code_name="门店", logo=data)
    assert _open(png).size == (1240, 1748)


@pytest.mark.parametrize(
    "data",
    [
        b"not an image at all",
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,
        pytest.param("truncated", id="truncated-png"),
    ],
)
@pytest.mark.parametrize("field", ["logo", "qr_image"])
def test_corrupt_images_raise_qr_render_error(data, field):
    if data == "truncated":
        data = qr_png(URL)[:200]
    arguments = {"channel_name": "抖音", "code_name": "门店", field: data}
    if field == "logo":
        arguments["qr_content"] = URL
    with pytest.raises(QrRenderError) as raised:
        poster_png(**arguments)
    assert isinstance(raised.value, ValueError)
    assert str(raised.value)


def test_tiny_qr_image_and_ambiguous_sources_raise():
    tiny = _image_bytes(Image.new("L", (10, 10), 255))
    with pytest.raises(QrRenderError):
        poster_png(qr_image=tiny, channel_name="a", code_name="b")
    with pytest.raises(QrRenderError):
        poster_png(channel_name="a", code_name="b")
    with pytest.raises(QrRenderError):
        poster_png(qr_image=qr_png(URL), qr_content=URL, channel_name="a", code_name="b")


def test_missing_glyphs_use_an_installed_fallback_font(monkeypatch):
    dejavu = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    if not Path(dejavu).is_file():
        pytest.skip("DejaVu Sans is not installed")
    monkeypatch.setattr(qr, "FALLBACK_FONTS", ((dejavu, 0),))
    assert qr._face_for("Knight ♞") == (dejavu, 0)
    assert qr._face_for("抖音 ♞") == (str(qr.FONT_PATH), 0)  # no single font has both


def test_without_a_fallback_missing_glyphs_still_render_and_warn(monkeypatch, caplog):
    monkeypatch.setattr(qr, "FALLBACK_FONTS", ())
    png = poster_png(qr_content=URL, channel_name="抖音 ♞", code_name="门店")
    assert _open(png).size == (1240, 1748)
    assert "♞" in caplog.text


# --- file names and ZIPs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ext", "expected"),
    [
        ("抖音-直播间", "png", "抖音-直播间.png"),
        ("抖音/直播\\间", ".PNG", "抖音_直播_间.png"),
        ("../../etc/passwd", "png", "_.._etc_passwd.png"),
        ("a\x00b\nc\td", "zip", "ab c d.zip"),
        ("evil\u202egnp.exe", "png", "evilgnp.exe.png"),
        ('x:*?"<>|y', "png", "x_______y.png"),
        ("CON", "txt", "_CON.txt"),
        ("  . hidden .  ", "png", "hidden.png"),
        ("", "png", "未命名.png"),
        ("报表", "", "报表"),
    ],
)
def test_safe_filename(name, ext, expected):
    assert safe_filename(name, ext) == expected


def test_safe_filename_limits_length_in_bytes():
    name = safe_filename("渠道" * 200, "png")
    assert name.endswith(".png")
    assert len(name.encode("utf-8")) <= qr.MAX_NAME_BYTES + 4
    assert name.startswith("渠道渠道")


def test_zip_has_unique_safe_names_and_intact_contents():
    poster = poster_png(qr_content=URL, channel_name="抖音", code_name="门店")
    files = [
        ("海报.png", poster),
        ("海报.png", b"second"),
        ("海报.PNG", b"third"),
        ("a/b.png", b"path"),
        ("海报-2.png", b"named like a suffix"),
        ("..\\..\\boot.ini", b"windows path"),
        ("无扩展名", b"no extension"),
    ]
    archive = zipfile.ZipFile(io.BytesIO(zip_of(files)))
    assert archive.testzip() is None
    names = archive.namelist()
    assert names == [
        "海报.png", "海报-2.png", "海报-3.png", "a_b.png", "海报-2-2.png", "_.._boot.ini",
        "无扩展名",
    ]  # fmt: skip
    assert len({name.lower() for name in names}) == len(names)
    for info, (_, content) in zip(archive.infolist(), files, strict=True):
        assert info.compress_type == zipfile.ZIP_DEFLATED
        assert info.flag_bits & 0x800 or info.filename.isascii()  # UTF-8 names flagged
        assert "/" not in info.filename
        assert "\\" not in info.filename
        assert archive.read(info) == content


def test_zip_of_nothing_is_a_valid_empty_archive():
    assert zipfile.ZipFile(io.BytesIO(zip_of([]))).namelist() == []
