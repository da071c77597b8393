"""Bulk work from the admin: live codes and channel costs from CSV files, all or nothing with
row-level errors (read and reported by scrm.csv_import), and the QR images or posters of many
codes as one ZIP."""

from __future__ import annotations

import io
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import IO, Any, Literal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from channels_app.models import Channel, ChannelCost, LiveCode, PoolMember
from channels_app.services.costs import channel_costs_create
from channels_app.services.live_codes import PoolRow, live_code_create
from contacts.models import Staff
from scrm.csv_import import (
    Column,
    CsvFileError,
    Report,
    RowError,
    Table,
    csv_table_read,
    report_validation_error,
    row_reporter,
)
from scrm.wecom.models import Corp

MAX_ROWS = 2000
STAFF_SEPARATORS = re.compile(r"[|;；,，\s]+")
DATE_RE = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})$")

UTM_COLUMNS = tuple(
    Column(f"utm_{p}", f"utm_{p}") for p in ("source", "medium", "campaign", "content")
)
LIVE_CODE_COLUMNS = (
    Column("channel_code", "渠道代码", required=True),
    Column("channel_name", "渠道名称"),
    Column("channel_type", "渠道类型"),
    Column("name", "活码名称", required=True),
    Column("mode", "模式"),
    Column("slug", "链接标识"),
    Column("staff", "成员", required=True),
    Column("daily_cap", "每日上限"),
    Column("strategy", "分配方式"),
    Column("welcome_text", "欢迎语"),
    *UTM_COLUMNS,
)
COST_COLUMNS = (
    Column("channel_code", "渠道代码", required=True),
    Column("start_date", "开始日期", required=True),
    Column("end_date", "结束日期", required=True),
    Column("amount", "金额", required=True),
    Column("currency", "币种"),
    Column("note", "备注"),
)


@dataclass
class ImportResult:
    created: list[Any] = field(default_factory=list)
    channels_created: list[Channel] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _read(file: IO[bytes], columns: tuple[Column, ...], max_rows: int,
          result: ImportResult) -> Table | None:  # fmt: skip
    try:
        return csv_table_read(file, columns=columns, max_rows=max_rows)
    except CsvFileError as exc:
        result.errors.extend(exc.errors)
        return None


# -- live codes --------------------------------------------------------------------------------

CHANNEL_FIELD_COLUMNS = {
    "name": "channel_name",
    "code": "channel_code",
    "channel_type": "channel_type",
    **{column.key: column.key for column in UTM_COLUMNS},
}
LIVE_CODE_FIELD_COLUMNS = {f: f for f in ("name", "slug", "mode", "strategy", "welcome_text")}


@dataclass
class _PlannedCode:
    number: int  # the row of the file
    live_code: LiveCode  # validated, not saved: live_code_create writes it with its pool
    channel: Channel
    pool: list[PoolRow]


class _LiveCodePlanner:
    """Validates every row against the database as it is, without writing anything."""

    def __init__(self, corp: Corp, table: Table, result: ImportResult) -> None:
        self.corp, self.table, self.result = corp, table, result
        values = [row for _number, row in table.rows]
        codes = {row["channel_code"].lower() for row in values}
        self.channels = {c.code: c for c in Channel.objects.filter(corp=corp, code__in=codes)}
        self.new_channels: dict[str, Channel] = {}
        userids = {u for row in values for u in STAFF_SEPARATORS.split(row["staff"]) if u}
        staff = Staff.objects.filter(corp=corp, userid__in=userids | {u.lower() for u in userids})
        self.staff = {member.userid: member for member in staff}
        slugs = {row.get("slug", "") for row in values} - {""}
        self.taken_slugs = set(
            LiveCode.objects.filter(slug__in=slugs).values_list("slug", flat=True)
        )
        self.slug_rows: dict[str, int] = {}
        self.warned_channels: set[str] = set()
        self.generated: set[str] = set()

    def plan(self) -> list[_PlannedCode]:
        planned = []
        for number, row in self.table.rows:
            errors_before = len(self.result.errors)
            code = self._row(number, row, row_reporter(self.result.errors, number, self.table))
            if code is not None and len(self.result.errors) == errors_before:
                planned.append(code)
        self._regenerate_taken_slugs(planned)
        return planned

    def _row(self, number: int, row: dict[str, str], report: Report) -> _PlannedCode | None:
        channel = self._channel(row, report)
        mode = row.get("mode", "").lower() or LiveCode.Mode.LANDING
        if mode not in LiveCode.Mode.values:
            report("mode", _("Use native or landing."))
            mode = LiveCode.Mode.LANDING
        strategy = row.get("strategy", "").lower() or LiveCode.Strategy.LEAST_LOADED
        if strategy not in LiveCode.Strategy.values:
            allowed = ", ".join(LiveCode.Strategy.values)
            report("strategy", _("Use one of: %(values)s.") % {"values": allowed})
            strategy = LiveCode.Strategy.LEAST_LOADED
        slug = self._slug(number, row, channel, report)
        live_code = LiveCode(
            corp=self.corp, name=row["name"], slug=slug, mode=mode, strategy=strategy,
            welcome_text=row.get("welcome_text", ""),
        )  # fmt: skip
        try:
            # Slugs are checked for the whole file at once above; the channel may be unsaved.
            live_code.full_clean(exclude=["corp", "channel"], validate_unique=False,
                                 validate_constraints=False)  # fmt: skip
        except ValidationError as exc:
            report_validation_error(report, exc, LIVE_CODE_FIELD_COLUMNS)
        pool = self._pool(row, report)
        return _PlannedCode(number, live_code, channel, pool) if channel is not None else None

    def _channel(self, row: dict[str, str], report: Report) -> Channel | None:
        code = row["channel_code"].lower()
        if not code:
            report("channel_code", _("This field is required."))
            return None
        if code in self.channels:
            extras = ("channel_type", *(column.key for column in UTM_COLUMNS))
            if code not in self.warned_channels and any(row.get(key) for key in extras):
                self.warned_channels.add(code)
                self.result.warnings.append(
                    _("The channel %(code)s exists already; its type and utm_* were kept.")
                    % {"code": code}
                )
            return self.channels[code]
        if code in self.new_channels:
            return self.new_channels[code]
        channel = Channel(corp=self.corp, code=code, name=row.get("channel_name", ""))
        for column in UTM_COLUMNS:
            setattr(channel, column.key, row.get(column.key, ""))
        kind = row.get("channel_type", "")
        if kind and (not kind.isdigit() or int(kind) not in Channel.Type.values):
            report("channel_type", _("Use a number from 0 to 4."))
        elif kind:
            channel.channel_type = int(kind)
        exclude = ["corp"]
        if not channel.name:
            report("channel_name", _("Give a name for the new channel %(code)s.") % {"code": code})
            exclude.append("name")
        try:
            channel.full_clean(exclude=exclude, validate_unique=False, validate_constraints=False)
        except ValidationError as exc:
            report_validation_error(report, exc, CHANNEL_FIELD_COLUMNS)
        self.new_channels[code] = channel
        return channel

    def _slug(self, number: int, row: dict[str, str], channel: Channel | None,
              report: Report) -> str:  # fmt: skip
        slug = row.get("slug", "")
        if not slug:
            slug = self._new_slug(channel.code if channel else "code")
        elif slug in self.taken_slugs:
            report("slug", _("The link slug %(slug)s is already used.") % {"slug": slug})
        elif slug in self.slug_rows:
            report("slug", _("The link slug %(slug)s is also on row %(row)d.")
                   % {"slug": slug, "row": self.slug_rows[slug]})  # fmt: skip
        self.slug_rows.setdefault(slug, number)
        return slug

    def _new_slug(self, channel_code: str) -> str:
        slug = f"{channel_code}-{secrets.token_hex(3)}"
        while slug in self.slug_rows or slug in self.taken_slugs:
            slug = f"{channel_code}-{secrets.token_hex(3)}"
        self.generated.add(slug)
        return slug

    def _regenerate_taken_slugs(self, planned: list[_PlannedCode]) -> None:
        """Generated slugs are checked against the database in one query, not one per row."""
        generated = {i.live_code.slug: i for i in planned if i.live_code.slug in self.generated}
        taken = set(LiveCode.objects.filter(slug__in=generated).values_list("slug", flat=True))
        while taken:
            self.taken_slugs |= taken
            renamed = []
            for slug in taken:
                item = generated[slug]
                item.live_code.slug = self._new_slug(item.channel.code)
                self.slug_rows[item.live_code.slug] = 0
                renamed.append(item.live_code.slug)
            taken = set(LiveCode.objects.filter(slug__in=renamed).values_list("slug", flat=True))

    def _pool(self, row: dict[str, str], report: Report) -> list[PoolRow]:
        cap: int | None = None
        if row.get("daily_cap"):
            if not row["daily_cap"].isdigit():
                report("daily_cap", _("Give a whole number, 0 or more, or leave it empty."))
            else:
                try:  # the model field's own range, without a PoolMember to hang it on
                    cap = PoolMember._meta.get_field("daily_cap").clean(int(row["daily_cap"]), None)
                except ValidationError as exc:
                    for message in exc.messages:
                        report("daily_cap", message)
        userids = list(dict.fromkeys(u for u in STAFF_SEPARATORS.split(row["staff"]) if u))
        if not userids:
            report("staff", _("List at least one member's UserID."))
        pool: list[PoolRow] = []
        for userid in userids:
            staff = self.staff.get(userid) or self.staff.get(userid.lower())
            if staff is None:
                report("staff", _("Unknown member UserID %(userid)s.") % {"userid": userid})
            elif staff.status != Staff.Status.ACTIVE:
                report("staff", _("%(staff)s has left or is disabled.") % {"staff": staff})
            else:
                pool.append({"staff": staff, "daily_cap": cap})
        return pool


def live_codes_create_from_csv(
    *, corp: Corp, file: IO[bytes], max_rows: int = MAX_ROWS
) -> ImportResult:
    """Draft live codes from a CSV file, one per row, creating channels whose code is new.

    Every row is validated first; if any row fails, nothing is created and `errors` lists
    (row, column, message). Otherwise everything is created in one transaction. Publishing to
    WeCom is a separate step."""
    result = ImportResult()
    table = _read(file, LIVE_CODE_COLUMNS, max_rows, result)
    if table is None:
        return result
    planner = _LiveCodePlanner(corp, table, result)
    planned = planner.plan()
    if result.errors:
        return result
    try:
        with transaction.atomic():
            for channel in planner.new_channels.values():
                channel.save()
            result.created = _live_codes_create(corp, planned, table, result)
            if result.errors:
                transaction.set_rollback(True)
    except IntegrityError:
        # Someone created the same slug or channel code between validation and insert.
        message = _("A code or channel in the file was created meanwhile; nothing was imported.")
        result.errors.append(RowError(None, "", message))
    if result.errors:
        result.created = []
        return result
    result.channels_created = list(planner.new_channels.values())
    return result


def _live_codes_create(corp: Corp, planned: list[_PlannedCode], table: Table,
                       result: ImportResult) -> list[LiveCode]:  # fmt: skip
    """The planned codes with their pools, through the service every interface uses; stops at
    the first row the service refuses (a slug taken meanwhile), its errors under that row."""
    created = []
    for item in planned:
        code = item.live_code
        try:
            created.append(
                live_code_create(corp=corp, channel=item.channel, name=code.name, slug=code.slug,
                                 mode=code.mode, strategy=code.strategy,
                                 welcome_text=code.welcome_text, pool=item.pool)
            )  # fmt: skip
        except ValidationError as exc:
            report = row_reporter(result.errors, item.number, table)
            report_validation_error(report, exc, {**LIVE_CODE_FIELD_COLUMNS, "pool": "staff"})
            break
    return created


# -- channel costs -----------------------------------------------------------------------------

COST_FIELD_COLUMNS = {f: f for f in ("start_date", "end_date", "amount", "currency", "note")}


def _parse_date(text: str) -> date | None:
    match = DATE_RE.match(text)
    if not match:
        return None
    try:
        return date(*(int(part) for part in match.groups()))
    except ValueError:
        return None


def _parse_amount(text: str) -> Decimal | None:
    cleaned = text.replace(",", "").replace("，", "").lstrip("¥￥").strip()
    try:
        amount = Decimal(cleaned)
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def _cost_row(
    corp: Corp, row: dict[str, str], channels: dict[str, Channel], report: Report
) -> ChannelCost | None:
    channel = channels.get(row["channel_code"].lower())
    if channel is None:
        report("channel_code", _("Unknown channel code %(code)s.") % {"code": row["channel_code"]})
    start, end = _parse_date(row["start_date"]), _parse_date(row["end_date"])
    for key, value in (("start_date", start), ("end_date", end)):
        if value is None:
            report(key, _("Give a date as YYYY-MM-DD or YYYY/MM/DD."))
    amount = _parse_amount(row["amount"])
    if amount is None:
        report("amount", _("Give an amount such as 1200 or 1200.50."))
    elif amount < 0:
        report("amount", _("The amount cannot be negative."))
    currency = (row.get("currency") or "CNY").upper()
    if not re.fullmatch(r"[A-Z]{3}", currency):
        report("currency", _("Use a three-letter currency code such as CNY."))
    if channel is None or start is None or end is None or amount is None or amount < 0:
        return None
    cost = ChannelCost(corp=corp, channel=channel, start_date=start, end_date=end, amount=amount,
                       currency=currency, note=row.get("note", ""))  # fmt: skip
    try:
        cost.full_clean(exclude=["corp", "channel"])
    except ValidationError as exc:
        report_validation_error(report, exc, COST_FIELD_COLUMNS)
        return None
    return cost


def channel_costs_import_csv(
    *, corp: Corp, file: IO[bytes], max_rows: int = MAX_ROWS
) -> ImportResult:
    """Channel costs from a CSV file, all or nothing, like live_codes_create_from_csv."""
    result = ImportResult()
    table = _read(file, COST_COLUMNS, max_rows, result)
    if table is None:
        return result
    codes = {row["channel_code"].lower() for _number, row in table.rows}
    channels = {c.code: c for c in Channel.objects.filter(corp=corp, code__in=codes)}
    costs = []
    for number, row in table.rows:
        cost = _cost_row(corp, row, channels, row_reporter(result.errors, number, table))
        if cost is not None:
            costs.append(cost)
    if result.errors:
        return result
    result.created = channel_costs_create(costs=costs)
    return result


# -- QR images and posters ---------------------------------------------------------------------

QrKind = Literal["png", "poster"]
MAX_ZIP_CODES = 500  # each image is fetched or drawn in the request; posters are ~100-300 KB
QR_FETCH_TIMEOUT = (5, 15)  # connect, read (seconds)
MAX_QR_IMAGE_BYTES = 2 * 1024 * 1024
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF8")


class QrUnavailable(ValueError):
    """No image can be made for this code now (unpublished, WeCom image unreachable)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class QrExport:
    content: bytes
    filenames: list[str]
    skipped: list[tuple[LiveCode, str]]


def landing_url(live_code: LiveCode, base_url: str) -> str:
    return f"{base_url.rstrip('/')}/l/{live_code.slug}/"


def _wecom_qr_image(live_code: LiveCode) -> bytes:
    """The image WeCom made for a native code. Fetched through the client's session (the
    sandbox serves its images over HTTP like WeCom's CDN does); never re-encoded from its URL,
    since a QR of the image's address would not add anyone."""
    import requests

    from scrm.wecom.client import _session

    if not live_code.qr_code:
        raise QrUnavailable(_("not published yet: WeCom has not made its QR code"))
    if not live_code.qr_code.startswith(("https://", "http://")):
        raise QrUnavailable(_("the WeCom QR address is not a web address"))
    try:
        response = _session().get(live_code.qr_code, timeout=QR_FETCH_TIMEOUT)
    except requests.RequestException as exc:
        raise QrUnavailable(
            _("could not download the WeCom QR image (%(error)s)") % {"error": type(exc).__name__}
        ) from exc
    content = response.content
    if response.status_code != 200 or not content.startswith(IMAGE_MAGIC):
        raise QrUnavailable(
            _("could not download the WeCom QR image (HTTP %(status)d)")
            % {"status": response.status_code}
        )
    if len(content) > MAX_QR_IMAGE_BYTES:
        raise QrUnavailable(_("the WeCom QR image is too large"))
    return content


def _as_png(image: bytes) -> bytes:
    if image.startswith(IMAGE_MAGIC[0]):
        return image
    from PIL import Image

    buffer = io.BytesIO()
    try:
        with Image.open(io.BytesIO(image)) as opened:
            opened.save(buffer, format="PNG")
    except Exception as exc:  # Pillow reports broken images with many exception types
        raise QrUnavailable(_("the WeCom QR image is not readable")) from exc
    return buffer.getvalue()


def live_code_image(
    *, live_code: LiveCode, kind: QrKind, base_url: str, published_only: bool = False
) -> bytes:
    """A PNG of the code's QR, or a poster around it. Landing codes encode our tracked link;
    native codes use WeCom's own image. Raises QrUnavailable with the reason. With
    `published_only`, a code never published has none: a printed draft's link would only say
    "not yet published" to every customer who scans it."""
    from channels_app import qr

    if published_only and live_code.published_at is None:
        raise QrUnavailable(_("not published yet: publish the code first"))
    try:
        if live_code.mode == LiveCode.Mode.LANDING:
            content = landing_url(live_code, base_url)
            if kind == "png":
                return qr.qr_png(content)
            return qr.poster_png(qr_content=content, channel_name=live_code.channel.name,
                                 code_name=live_code.name)  # fmt: skip
        image = _wecom_qr_image(live_code)
        if kind == "png":
            return _as_png(image)
        return qr.poster_png(qr_image=image, channel_name=live_code.channel.name,
                             code_name=live_code.name)  # fmt: skip
    except qr.QrRenderError as exc:
        raise QrUnavailable(str(exc)) from exc


def live_code_filename(live_code: LiveCode, kind: QrKind) -> str:
    from channels_app import qr

    suffix = "-poster" if kind == "poster" else ""
    return qr.safe_filename(f"{live_code.channel.code}-{live_code.name}{suffix}", "png")


def _unique(name: str, used: set[str]) -> str:
    stem, dot, ext = name.rpartition(".")
    stem, dot = (stem, dot) if dot else (name, "")
    candidate, counter = name, 1
    while candidate.lower() in used:  # case-insensitive, as on Windows and macOS
        counter += 1
        candidate = f"{stem}-{counter}{dot}{ext}" if dot else f"{stem}-{counter}"
    used.add(candidate.lower())
    return candidate


def live_codes_export(
    *, live_codes: Iterable[LiveCode], kind: QrKind, base_url: str, published_only: bool = False
) -> QrExport:
    """One image per code, in a ZIP with unique file names. Codes without an image (a native
    code not yet published, with `published_only` any code not yet published, an unreachable
    WeCom image) are skipped and listed in skipped.txt inside the ZIP, never a crash."""
    from channels_app import qr

    codes = list(live_codes)
    if len(codes) > MAX_ZIP_CODES:
        raise ValidationError(
            _("At most %(max)d codes per download; select fewer.") % {"max": MAX_ZIP_CODES}
        )
    files: list[tuple[str, bytes]] = []
    skipped: list[tuple[LiveCode, str]] = []
    used: set[str] = set()
    for live_code in codes:
        try:
            image = live_code_image(live_code=live_code, kind=kind, base_url=base_url,
                                    published_only=published_only)  # fmt: skip
        except QrUnavailable as exc:
            skipped.append((live_code, exc.message))
            continue
        files.append((_unique(live_code_filename(live_code, kind), used), image))
    if skipped:
        lines = [f"{code.name} ({code.slug}): {reason}" for code, reason in skipped]
        files.append((_unique("skipped.txt", used), ("\r\n".join(lines) + "\r\n").encode()))
    names = [name for name, _image in files if name.endswith(".png")]
    return QrExport(content=qr.zip_of(files), filenames=names, skipped=skipped)
