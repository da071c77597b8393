"""What operators print for live codes (活码): a bare QR PNG, a poster around it, a ZIP of many.

Pure functions: plain arguments in, bytes out, no database. Text is set in a bundled subset of
Noto Sans CJK SC (channels_app/fonts/README.md) because Pillow's default font has no CJK glyphs
and servers often have no CJK font installed. Every bad input raises QrRenderError with a reason.
"""

from __future__ import annotations

import io
import logging
import os
import re
import time
import unicodedata
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import qrcode
import qrcode.constants
import qrcode.exceptions
from django.utils.translation import gettext as _
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

logger = logging.getLogger(__name__)

FONT_PATH = Path(__file__).resolve().parent / "fonts" / "NotoSansCJKsc-Regular-subset.otf"
# Tried in order for text with characters outside the bundled subset (rare hanzi, symbols).
FALLBACK_FONTS: tuple[tuple[str, int], ...] = (
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 2),  # face 2 is SC
    ("/usr/share/fonts/opentype/noto/NotoSansCJKsc-Regular.otf", 0),
    ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", 0),
    ("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", 0),
    ("/System/Library/Fonts/PingFang.ttc", 0),
    ("C:/Windows/Fonts/msyh.ttc", 0),
    ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 0),
)

# M (15% recovery): nothing is drawn over the code, and fewer modules mean bigger modules at the
# same print size, which scan better from a distance than Q's extra redundancy would.
ERROR_CORRECTION = qrcode.constants.ERROR_CORRECT_M

# A6 portrait (105 x 148 mm) at 300 dpi; the same pixels print as A5 at 150 dpi.
POSTER_SIZE = (1240, 1748)
POSTER_DPI = 300
MARGIN = 100
BAR = 24
QR_MAX, QR_MIN = 800, 560  # the printed code is 47-68 mm wide at 300 dpi
CARD_PADDING = 32
LOGO_BOX = (520, 180)
MAX_INPUT_PIXELS = 40_000_000  # refuse decompression bombs long before Pillow's own limit

PAPER = (255, 255, 255)
INK = (17, 24, 39)
MUTED = (75, 85, 99)
BAR_COLOUR = (51, 65, 85)
CARD_EDGE = (209, 213, 219)

DEFAULT_CAPTION = "长按识别二维码，添加专属顾问"


class QrRenderError(ValueError):
    """An image could not be rendered; str(error) is the reason, fit to show an operator."""


# --- QR -----------------------------------------------------------------------------------------


def qr_png(content: str, *, box_size: int = 10, border: int = 4) -> bytes:
    """A 1-bit PNG of `content` (a URL or text): `box_size` pixels per module, `border` modules
    of quiet zone (4 is the standard's minimum). Modules are whole pixels, so edges are crisp."""
    if not 1 <= box_size <= 40 or not 0 <= border <= 20:
        raise QrRenderError(_("The QR module size or border is out of range."))
    return _png(_qr_image(content, box_size=box_size, border=border))


def _qr_image(content: str, *, box_size: int, border: int) -> Image.Image:
    modules = _qr_modules(content, border=border)
    count = len(modules)
    image = Image.new("1", (count, count))
    image.putdata([0 if dark else 1 for row in modules for dark in row])
    # NEAREST scaling by a whole factor keeps every module a sharp square (no blur).
    return image.resize((count * box_size, count * box_size), Image.Resampling.NEAREST)


def _qr_modules(content: str, *, border: int) -> list[list[bool]]:
    if not content or not content.strip():
        raise QrRenderError(_("There is nothing to encode in the QR code."))
    code = qrcode.QRCode(error_correction=ERROR_CORRECTION, border=border)
    try:
        code.add_data(content)
        code.make(fit=True)
    except (qrcode.exceptions.DataOverflowError, ValueError) as exc:
        raise QrRenderError(_("The content is too long for a QR code.")) from exc
    return code.get_matrix()


# --- Poster ------------------------------------------------------------------------------------


def poster_png(
    *,
    qr_image: bytes | None = None,
    qr_content: str | None = None,
    channel_name: str,
    code_name: str,
    logo: bytes | None = None,
    caption: str = DEFAULT_CAPTION,
) -> bytes:
    """A printable portrait poster: A6 (105 x 148 mm) at 300 dpi, 1240 x 1748 px.

    Top to bottom: optional logo, the channel name as the title, the code name, the QR in a card
    and the caption. The QR is either `qr_image` (WeCom's own contact-way PNG/JPEG) or made from
    `qr_content`; pass exactly one. Long text wraps and then shrinks; text that cannot fit even
    at the smallest legible size raises QrRenderError rather than being cut off.
    """
    if (qr_image is None) == (qr_content is None):
        raise QrRenderError(_("Pass exactly one of a QR image or the content to encode."))
    width, height = POSTER_SIZE
    inner, usable = width - 2 * MARGIN, height - 2 * (BAR + MARGIN)
    logo_image = _fit_logo(_open_image(logo, _("logo"))) if logo else None
    title = _fit_text(channel_name, inner, max_height=300, sizes=(88, 40), bold=True)
    subtitle = _fit_text(code_name, inner, max_height=140, sizes=(52, 32))
    note = _fit_text(caption, inner, max_height=130, sizes=(44, 28))

    # (block, space below it); the header's last gap separates it from the QR card.
    header: list[tuple[Image.Image | TextBlock, int]] = [
        (block, gap)
        for block, gap in ((logo_image, 48), (title, 24), (subtitle, 24))
        if block is not None
    ]
    if header:
        header[-1] = (header[-1][0], 72)
    header_height = sum(block.height + gap for block, gap in header)
    note_height = 48 + note.height if note else 0
    fit = usable - header_height - note_height - 2 * CARD_PADDING
    qr = _poster_qr(qr_image, qr_content, max(QR_MIN, min(QR_MAX, fit)))
    card = qr.width + 2 * CARD_PADDING
    total = header_height + card + note_height
    if total > usable:
        raise QrRenderError(_("The names are too long to fit on the poster."))

    canvas = Image.new("RGB", POSTER_SIZE, PAPER)
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, width, BAR - 1), fill=BAR_COLOUR)
    draw.rectangle((0, height - BAR, width, height), fill=BAR_COLOUR)
    y = BAR + MARGIN + (usable - total) // 2
    for block, gap in header:
        if isinstance(block, Image.Image):
            canvas.paste(block, ((width - block.width) // 2, y), block)
        else:
            block.draw(draw, width // 2, y)
        y += block.height + gap
    left = (width - card) // 2
    draw.rounded_rectangle((left, y, left + card - 1, y + card - 1), radius=28, fill=PAPER,
                           outline=CARD_EDGE, width=3)  # fmt: skip
    canvas.paste(qr, (left + CARD_PADDING, y + CARD_PADDING))
    if note:
        note.draw(draw, width // 2, y + card + 48)
    return _png(canvas, dpi=POSTER_DPI)


def _poster_qr(qr_image: bytes | None, qr_content: str | None, target: int) -> Image.Image:
    if qr_content is not None:
        count = len(_qr_modules(qr_content, border=4))
        return _qr_image(qr_content, box_size=max(1, target // count), border=4).convert("L")
    image = _flatten(_open_image(qr_image or b"", _("QR image")))
    if min(image.size) < 21:  # a version-1 QR code alone is 21 modules wide
        raise QrRenderError(_("The QR image is too small to be a QR code."))
    image = ImageOps.pad(image, (max(image.size),) * 2, color=255)
    image = image.resize((target, target), Image.Resampling.LANCZOS)
    # WeCom serves small JPEGs: scaled up, their compression noise prints as ragged modules.
    # A plain two-tone code is snapped back to black and white (crisp at any scale); one with a
    # picture in it (an avatar in the centre) is left in greys rather than posterised.
    histogram = image.histogram()
    if sum(histogram[48:208]) < 0.08 * target * target:
        image = image.point(lambda value: 255 if value >= 128 else 0)
    return image


def _open_image(data: bytes | None, what: str) -> Image.Image:
    """Decode any format Pillow reads. Pillow signals broken input with many exception types
    (OSError, SyntaxError, ValueError, struct.error, EOFError...), so all become QrRenderError."""
    if not data:
        raise QrRenderError(_("The %(what)s is empty.") % {"what": what})
    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > MAX_INPUT_PIXELS:
            raise QrRenderError(_("The %(what)s is too large.") % {"what": what})
        image.seek(0)  # first frame of an animation
        image.load()
        image = ImageOps.exif_transpose(image)
        return image.convert("RGBA")
    except QrRenderError:
        raise
    except UnidentifiedImageError as exc:
        message = _("The %(what)s is not in an image format we can read (PNG, JPEG, GIF, WebP…).")
        raise QrRenderError(message % {"what": what}) from exc
    except Exception as exc:
        message = _("The %(what)s is damaged or truncated (%(detail)s).")
        detail = str(exc)[:120] or type(exc).__name__
        raise QrRenderError(message % {"what": what, "detail": detail}) from exc


def _flatten(image: Image.Image) -> Image.Image:
    """Greyscale on white paper: a transparent QR would otherwise print on black."""
    paper = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return Image.alpha_composite(paper, image).convert("L")


def _fit_logo(image: Image.Image) -> Image.Image:
    # Centre what is drawn, not the transparent margin a logo file often carries.
    image = image.crop(image.getchannel("A").getbbox() or (0, 0, *image.size))
    box_width, box_height = LOGO_BOX
    # Fit the box, but enlarge a small logo at most 2x so it does not print blurred.
    scale = min(box_width / image.width, box_height / image.height, 2.0)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


# --- Text --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextBlock:
    lines: list[str]
    font: ImageFont.FreeTypeFont
    line_height: int
    fill: tuple[int, int, int]
    stroke: int

    @property
    def height(self) -> int:
        return self.line_height * len(self.lines)

    def draw(self, draw: ImageDraw.ImageDraw, centre_x: int, top: int) -> None:
        for number, line in enumerate(self.lines):
            draw.text((centre_x, top + number * self.line_height), line, font=self.font,
                      fill=self.fill, anchor="ma", stroke_width=self.stroke,
                      stroke_fill=self.fill)  # fmt: skip


def _fit_text(
    text: str, width: int, *, max_height: int, sizes: tuple[int, int], bold: bool = False
) -> TextBlock | None:
    """Wrap at the largest size that fits, shrinking in 4 px steps down to `sizes[1]`, then on
    to a 20 px floor (about 6 pt at 300 dpi) before giving up with QrRenderError."""
    text = " ".join(_printable(text).split())
    if not text:
        return None
    largest, smallest = sizes
    face = _face_for(text)
    for size in [*range(largest, smallest - 1, -4), *range(smallest - 4, 19, -4)]:
        # A stroke of the text's own colour stands in for a bold weight, which would double the
        # bundled font's size; it widens every glyph, so it is taken off the line width.
        stroke = max(1, size // 40) if bold else 0
        font = _font(face, size)
        lines = _wrap(text, font, width - 2 * stroke)
        line_height = round(size * 1.32)
        if line_height * len(lines) <= max_height:
            return TextBlock(lines, font, line_height, INK if bold else MUTED, stroke)
    raise QrRenderError(_("The text “%(text)s” is too long for the poster.") % {"text": text})


def _printable(text: str) -> str:
    return "".join(" " if unicodedata.category(c).startswith("C") else c for c in text or "")


# Latin words and numbers stay whole (a line may break after a hyphen); closing punctuation
# and hyphens never start a line (禁则).
_TOKEN = re.compile(r"[A-Za-z0-9@#&%+_.'/]+-*|\s|.", re.DOTALL)
_NO_LINE_START = set("，。、；：？！）」』】》〉”’,.;:?!)]}%…·-")


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: float) -> list[str]:
    tokens: list[str] = []
    for token in _TOKEN.findall(text):
        if tokens and token[0] in _NO_LINE_START:
            tokens[-1] += token
        else:
            tokens.append(token)
    lines, line = [], ""
    for token in tokens:
        if font.getlength(line + token) <= width:
            line += token
            continue
        if line.strip():
            lines.append(line.strip())
        line = token.lstrip()
        while len(line) > 1 and font.getlength(line) > width:  # one word wider than the page
            cut = len(line) - 1
            while cut > 1 and font.getlength(line[:cut]) > width:
                cut -= 1
            lines.append(line[:cut])
            line = line[cut:]
    if line.strip():
        lines.append(line.strip())
    return lines


@lru_cache(maxsize=64)
def _font(face: tuple[str, int], size: int) -> ImageFont.FreeTypeFont:
    path, index = face
    return ImageFont.truetype(path, size, index=index)


def _face_for(text: str) -> tuple[str, int]:
    """The bundled face when it has every glyph, else the first installed fallback that does.
    Without one the bundled face is used and the missing glyphs print as boxes, with a warning."""
    bundled = (str(FONT_PATH), 0)
    needed = {c for c in text if not c.isspace()}
    if all(_has_glyph(bundled, c) for c in needed):
        return bundled
    for face in FALLBACK_FONTS:
        if os.path.exists(face[0]) and all(_has_glyph(face, c) for c in needed):
            return face
    missing = "".join(sorted(c for c in needed if not _has_glyph(bundled, c)))
    logger.warning("poster text has characters no installed font covers: %r", missing)
    return bundled


@lru_cache(maxsize=8192)
def _has_glyph(face: tuple[str, int], char: str) -> bool:
    """A character the font lacks renders as its .notdef glyph (the "tofu" box)."""
    try:
        font = _font(face, 32)
    except OSError:
        return False
    return _glyph_bitmap(font, char) != _glyph_bitmap(font, "\U0010fffd")


def _glyph_bitmap(font: ImageFont.FreeTypeFont, char: str) -> bytes:
    image = Image.new("L", (64, 64))
    ImageDraw.Draw(image).text((8, 8), char, font=font, fill=255)
    return image.tobytes()


# --- Files -------------------------------------------------------------------------------------


def _png(image: Image.Image, dpi: int | None = None) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **({"dpi": (dpi, dpi)} if dpi else {}))
    return buffer.getvalue()


_UNSAFE = re.compile(r'[\\/:*?"<>|]')
_RESERVED = re.compile(r"^(con|prn|aux|nul|com\d|lpt\d)(\..*)?$", re.IGNORECASE)
MAX_NAME_BYTES = 200  # under the 255-byte limit of common filesystems, with room for "-99.png"


def safe_filename(name: str, ext: str) -> str:
    """A file name that is safe on Windows, macOS and Linux and inside a ZIP: no path separators,
    control or bidi characters, reserved names or leading dots; Chinese and other letters kept.
    `ext` is given with or without its dot ("png", ".png")."""
    stem, suffix = _safe_parts(name, ext)
    return f"{stem}.{suffix}" if suffix else stem


def _safe_parts(name: str, ext: str) -> tuple[str, str]:
    stem = unicodedata.normalize("NFC", name or "")
    stem = "".join(" " if c.isspace() else c for c in stem
                   if c.isspace() or not unicodedata.category(c).startswith("C"))  # fmt: skip
    stem = " ".join(_UNSAFE.sub("_", stem).split()).strip(" .")
    if _RESERVED.match(stem):
        stem = f"_{stem}"
    while len(stem.encode("utf-8")) > MAX_NAME_BYTES:
        stem = stem[:-1].rstrip(" .")
    return stem or "未命名", re.sub(r"[^A-Za-z0-9]", "", ext or "").lower()[:10]


_EXTENSION = re.compile(r"(.+)\.([A-Za-z0-9]{1,10})", re.DOTALL)


def zip_of(files: Iterable[tuple[str, bytes]]) -> bytes:
    """A deflated ZIP of (name, content) pairs. Names go through safe_filename and repeats get
    -2, -3 ... before the extension, compared case-insensitively as Windows and macOS do."""
    buffer = io.BytesIO()
    used: set[str] = set()
    stamp = time.localtime()[:6]
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files:
            match = _EXTENSION.fullmatch(name or "")
            stem, suffix = _safe_parts(*(match.groups() if match else (name, "")))
            dot = "." if suffix else ""
            safe, number = f"{stem}{dot}{suffix}", 1
            while safe.lower() in used:
                number += 1
                safe = f"{stem}-{number}{dot}{suffix}"
            used.add(safe.lower())
            entry = zipfile.ZipInfo(safe, date_time=stamp)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16  # rw-r--r-- when unpacked with unzip
            archive.writestr(entry, content)
    return buffer.getvalue()
