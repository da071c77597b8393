"""Conversions (咨询 / 订单 / 退款 / 自定义) from the business's own systems, matched to customers.

Rows arrive as the API's JSON list or the admin's CSV, with the same columns:
corp_id, external_id, kind, custom_name, amount, currency, occurred_at, external_userid, unionid,
note. `conversions_import` validates every row and writes all of them or none;
`conversions_import_csv` reads a CSV file (scrm.csv_import, strict: every column must be one of
these) and reports problems by the file's row numbers.

- Idempotent by (corp, external_id): a row sent again with the same content is a duplicate and
  writes nothing; the same external_id with different content is a row error.
- Amounts are stored as given. A refund may be sent negative (-199.00) or positive (199.00),
  depending on the source system; reports must read refunds by `kind`, never by sign. An order
  amount cannot be negative.
- occurred_at is ISO-8601; without an offset it is read in the corp's time zone.
- Matching: by external_userid among the corp's customers, else by unionid. Unmatched rows are
  kept and matched later by `conversions_match_pending` (a beat task), e.g. once the customer's
  add or details arrive. A match appends a timeline line ("订单 ¥199.00").
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import IO, TYPE_CHECKING, Any

import django_filters
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from contacts.filters import LocalDayFilter
from contacts.models import AuditLog, ConversionEvent, ExternalContact, TimelineEvent
from scrm.csv_import import Column, CsvFileError, ImportRejected, RowError, csv_table_read
from scrm.input_guard import text_problem, text_storable
from scrm.wecom.models import Corp

if TYPE_CHECKING:
    from django.contrib.auth.models import User

MAX_ROWS_PER_REQUEST = 1000
# A month of orders; 10,000 validated rows hold a few MB in memory during the import.
MAX_ROWS_PER_CSV = 10_000
# Rows matched per pass of the beat task: one query for the candidates, two for the customers.
MATCH_BATCH = 1000

FIELDS = (
    "corp_id",
    "external_id",
    "kind",
    "custom_name",
    "amount",
    "currency",
    "occurred_at",
    "external_userid",
    "unionid",
    "note",
)
REQUIRED_COLUMNS = ("corp_id", "external_id", "kind", "occurred_at")
CSV_COLUMNS = tuple(Column(name, required=name in REQUIRED_COLUMNS) for name in FIELDS)
MAX_LENGTHS = {"external_id": 64, "custom_name": 64, "external_userid": 64, "unionid": 64,
               "note": 255}  # fmt: skip
AMOUNT_REQUIRED = {ConversionEvent.Kind.ORDER, ConversionEvent.Kind.REFUND}
AMOUNT_LIMIT = Decimal(10) ** 12  # max_digits=14 with 2 decimal places
CENT = Decimal("0.01")
OCCURRED_YEARS = (2000, 2099)  # occurred_at's local year, first and last accepted
CURRENCY_SYMBOLS = {"CNY": "¥", "USD": "$", "EUR": "€", "GBP": "£", "HKD": "HK$"}


class ConversionImportError(ImportRejected):
    """Some rows are invalid; nothing was written. Each RowError's row is the row's index in
    the list sent (0-based; None for the whole request) and its column the field at fault
    ("" for the row as a whole, answered as non_field_errors)."""


@dataclass(frozen=True)
class ImportResult:
    created: int
    duplicates: int
    matched: int  # of the rows created, those matched to a customer at once
    unmatched: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


# -- validation --------------------------------------------------------------------------------


class _Row:
    """Collects one row's errors while its fields are cleaned."""

    def __init__(self, index: int, raw: dict[str, Any]) -> None:
        self.index, self.raw, self.errors = index, raw, []

    def error(self, field: str, message: str) -> None:
        self.errors.append(RowError(self.index, field, message))

    def text(self, field: str) -> str:
        value = self.raw.get(field)
        if value is None:
            return ""
        if isinstance(value, bool) or not isinstance(value, str | int):
            self.error(field, _("Must be text."))
            return ""
        value = str(value).strip()
        if problem := text_problem(value):  # NUL: PostgreSQL would refuse the row (a 500)
            self.error(field, problem)
            return ""
        limit = MAX_LENGTHS.get(field)
        if limit and len(value) > limit:
            self.error(field, _("At most %(n)d characters.") % {"n": limit})
        return value


def _amount(row: _Row, kind: str) -> Decimal | None:
    value = row.raw.get("amount")
    if value is None or value == "":
        if kind in AMOUNT_REQUIRED:
            row.error("amount", _("Required for orders and refunds."))
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        row.error("amount", _("Enter a number such as 199.00."))
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        row.error("amount", _("Enter a number such as 199.00."))
        return None
    if not amount.is_finite():
        row.error("amount", _("Enter a number such as 199.00."))
    elif abs(amount) >= AMOUNT_LIMIT:
        row.error("amount", _("The amount is too large."))
    elif amount != amount.quantize(CENT):
        row.error("amount", _("At most 2 decimal places."))
    elif kind == ConversionEvent.Kind.ORDER and amount < 0:
        row.error("amount", _("An order cannot be negative; send a refund instead."))
    else:
        return amount
    return None


def _occurred_at(row: _Row, corp: Corp | None) -> datetime | None:
    text = row.text("occurred_at")
    if not text:
        if not any(e.column == "occurred_at" for e in row.errors):
            row.error("occurred_at", _("This field is required."))
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        row.error("occurred_at", _("Use ISO-8601, such as 2024-06-18T20:30:00+08:00."))
        return None
    # Year 1 or 9999 with an offset does not fit a UTC datetime (OverflowError on save), and no
    # order is that old or that far ahead: checked on the local year, before any conversion.
    if not OCCURRED_YEARS[0] <= value.year <= OCCURRED_YEARS[1]:
        row.error("occurred_at", _("The year must be between %(first)d and %(last)d.")
                  % {"first": OCCURRED_YEARS[0], "last": OCCURRED_YEARS[1]})  # fmt: skip
        return None
    if timezone.is_naive(value):
        if corp is None:
            return None  # the corp error is reported; its time zone is unknown
        value = value.replace(tzinfo=corp.tzinfo)
    return value


def _clean_row(index: int, raw: object, corps: dict[str, Corp]) -> tuple[dict | None, list]:
    if not isinstance(raw, dict):
        return None, [RowError(index, "", _("Each row must be an object."))]
    row = _Row(index, raw)
    for field in sorted(set(raw) - set(FIELDS), key=str):
        # Named back in the answer: a lone surrogate (JSON "\\udfff") cannot be encoded.
        row.error(str(field).encode("utf-8", "backslashreplace").decode(), _("Unknown field."))
    corp_id = row.text("corp_id")
    corp = corps.get(corp_id)
    if not corp_id:
        row.error("corp_id", _("This field is required."))
    elif corp is None:
        row.error("corp_id", _("Unknown corp."))
    external_id = row.text("external_id")
    if not external_id and not any(e.column == "external_id" for e in row.errors):
        row.error("external_id", _("This field is required."))
    kind = row.text("kind")
    if kind not in ConversionEvent.Kind.values:
        row.error("kind", _("Choose one of: consult, order, refund, custom."))
    currency = row.text("currency").upper() or (corp.currency if corp else "CNY")
    if not re.fullmatch(r"[A-Z]{3}", currency):
        row.error("currency", _("Use a 3-letter currency code such as CNY."))
    elif corp is not None and (refused := corp.currency_error(currency)):
        row.error("currency", refused)
    cleaned = {
        "corp": corp,
        "external_id": external_id,
        "kind": kind,
        "custom_name": row.text("custom_name"),
        "amount": _amount(row, kind),
        "currency": currency,
        "occurred_at": _occurred_at(row, corp),
        "external_userid": row.text("external_userid"),
        "unionid": row.text("unionid"),
        "note": row.text("note"),
    }
    if not cleaned["external_userid"] and not cleaned["unionid"]:
        row.error("external_userid", _("Give external_userid or unionid (or both)."))
    return (None if row.errors else cleaned), row.errors


CONTENT_FIELDS = ("kind", "custom_name", "amount", "currency", "occurred_at", "external_userid",
                  "unionid", "note")  # fmt: skip


def _same_content(stored: ConversionEvent, cleaned: dict[str, Any]) -> bool:
    fields = CONTENT_FIELDS
    contact = stored.external_contact
    if contact is not None and contact.erased_at and not (stored.external_userid or stored.unionid):
        # Erasure blanked the identifiers: a re-sent row is the same one and must not bring the
        # personal identifiers back, so it is a duplicate (nothing is written).
        fields = tuple(f for f in fields if f not in ("external_userid", "unionid"))
    return all(getattr(stored, field) == cleaned[field] for field in fields)


# -- writes ------------------------------------------------------------------------------------


def conversions_import(
    *,
    rows: object,
    actor: User | None = None,
    source: str = "api",
    max_rows: int = MAX_ROWS_PER_REQUEST,
    corps: QuerySet[Corp] | None = None,
) -> ImportResult:
    """Validate and store conversion rows, all or none (one transaction); with an actor, an
    audit row records who sent them. `corps`: the corps the rows may name (those where the
    sender may write; None: every corp); any other corp_id is an "Unknown corp." row error,
    so a row is only ever matched to a customer of a corp the sender works in.

    Raises ConversionImportError with every row error found. Safe to call again with the same
    rows: they come back as duplicates.
    """
    try:
        return _import(rows, max_rows, actor, source, corps)
    except IntegrityError:
        # A concurrent import stored some of these external_ids between our check and our
        # insert (the unique constraint caught it): check again, they are known now.
        return _import(rows, max_rows, actor, source, corps)


def conversions_import_csv(
    *, file: IO[bytes] | bytes, actor: User | None = None, corps: QuerySet[Corp] | None = None
) -> ImportResult:
    """conversions_import of a CSV file's rows (the admin's upload): the first row names the
    columns, every one of FIELDS; at most MAX_ROWS_PER_CSV rows; `corps` as there. Raises
    ConversionImportError whose rows are the file's row numbers (the header is row 1; None for
    the file as a whole).
    """
    try:
        table = csv_table_read(file, columns=CSV_COLUMNS, max_rows=MAX_ROWS_PER_CSV, strict=True)
    except CsvFileError as exc:
        raise ConversionImportError(exc.errors) from None
    numbers = [number for number, _cells in table.rows]
    rows = [{key: value for key, value in cells.items() if value} for _number, cells in table.rows]
    try:
        return conversions_import(
            rows=rows, actor=actor, source="csv", max_rows=MAX_ROWS_PER_CSV, corps=corps
        )
    except ConversionImportError as exc:
        errors = [e if e.row is None else replace(e, row=numbers[e.row]) for e in exc.errors]
        raise ConversionImportError(errors) from None


@transaction.atomic
def _import(
    rows: object, max_rows: int, actor: User | None, source: str, allowed: QuerySet[Corp] | None
) -> ImportResult:
    if not isinstance(rows, list):
        raise ConversionImportError([RowError(None, "", _("Send a JSON list of rows."))])
    if not rows:
        raise ConversionImportError([RowError(None, "", _("Send at least one row."))])
    if len(rows) > max_rows:
        message = _("At most %(n)d rows at a time; split the rows.") % {"n": max_rows}
        raise ConversionImportError([RowError(None, "", message)])
    corp_ids = {str(r.get("corp_id") or "").strip() for r in rows if isinstance(r, dict)}
    corp_ids = {corp_id for corp_id in corp_ids if text_storable(corp_id)}  # NUL: row errors
    known = Corp.objects.all() if allowed is None else allowed
    corps = {c.corp_id: c for c in known.filter(corp_id__in=corp_ids)}

    errors: list[RowError] = []
    cleaned_rows: list[tuple[int, dict]] = []
    for index, raw in enumerate(rows):
        cleaned, row_errors = _clean_row(index, raw, corps)
        errors += row_errors
        if cleaned is not None:
            cleaned_rows.append((index, cleaned))

    stored = _stored_by_key(cleaned_rows)
    new: dict[tuple[int, str], dict] = {}
    duplicates = 0
    for index, cleaned in cleaned_rows:
        key = (cleaned["corp"].pk, cleaned["external_id"])
        earlier = stored.get(key)
        same = (
            _same_content(earlier, cleaned)
            if earlier is not None
            else (key not in new or all(new[key][f] == cleaned[f] for f in CONTENT_FIELDS))
        )
        if not same:
            message = _("external_id already used with different data")
            errors.append(RowError(index, "external_id", message))
        elif earlier is not None or key in new:
            duplicates += 1
        else:
            new[key] = cleaned
    if errors:
        raise ConversionImportError(errors)

    conversions = [ConversionEvent(**cleaned) for cleaned in new.values()]
    matched = _match(conversions)
    ConversionEvent.objects.bulk_create(conversions)
    _timeline_lines(matched)
    result = ImportResult(
        created=len(conversions),
        duplicates=duplicates,
        matched=len(matched),
        unmatched=len(conversions) - len(matched),
    )
    if actor is not None:
        corp_pks = {cleaned["corp"].pk for _index, cleaned in cleaned_rows}
        AuditLog.objects.create(
            corp_id=corp_pks.pop() if len(corp_pks) == 1 else None,
            actor=actor,
            actor_label=actor.get_username(),
            action="conversions_import",
            target=f"conversions ({source})",
            detail=result.as_dict(),
        )
    return result


def _stored_by_key(cleaned_rows: list[tuple[int, dict]]) -> dict[tuple[int, str], Any]:
    by_corp: dict[Corp, set[str]] = defaultdict(set)
    for _index, cleaned in cleaned_rows:
        by_corp[cleaned["corp"]].add(cleaned["external_id"])
    stored = {}
    for corp, external_ids in by_corp.items():
        for conversion in ConversionEvent.objects.filter(
            corp=corp, external_id__in=external_ids
        ).select_related("external_contact"):
            stored[(corp.pk, conversion.external_id)] = conversion
    return stored


def _match(conversions: Sequence[ConversionEvent]) -> list[ConversionEvent]:
    """Set the customer on the conversions that have one (in memory); return those matched.

    Two queries per corp: customers by external_userid, then by unionid."""
    by_corp: dict[int, list[ConversionEvent]] = defaultdict(list)
    for conversion in conversions:
        by_corp[conversion.corp_id].append(conversion)
    now = timezone.now()
    matched = []
    for corp_id, items in by_corp.items():
        userids = {c.external_userid for c in items if c.external_userid}
        by_userid = dict(
            ExternalContact.objects.filter(corp_id=corp_id, external_userid__in=userids)
            .values_list("external_userid", "pk")
        )  # fmt: skip
        unionids = {c.unionid for c in items if c.unionid and c.external_userid not in by_userid}
        by_unionid: dict[str, int] = {}
        if unionids:
            # The earliest customer wins should a unionid ever appear twice in one corp.
            for unionid, pk in (
                ExternalContact.objects.filter(corp_id=corp_id, unionid__in=unionids)
                .order_by("-pk")
                .values_list("unionid", "pk")
            ):
                by_unionid[unionid] = pk
        for conversion in items:
            contact_id = by_userid.get(conversion.external_userid) or by_unionid.get(
                conversion.unionid
            )
            if contact_id and conversion.external_contact_id is None:
                conversion.external_contact_id = contact_id
                conversion.matched_at = now
                matched.append(conversion)
    return matched


def conversion_summary(conversion: ConversionEvent) -> str:
    """The kind (or custom name) and the amount: "订单 ¥199.00", "退款 -¥50.00", "咨询"."""
    label = conversion.custom_name if conversion.kind == ConversionEvent.Kind.CUSTOM else ""
    label = label or str(conversion.get_kind_display())
    if conversion.amount is None:
        return label
    sign = "-" if conversion.amount < 0 else ""
    number = f"{abs(conversion.amount):,.2f}"
    symbol = CURRENCY_SYMBOLS.get(conversion.currency)
    money = f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {conversion.currency}"
    return f"{label} {money}"


def _timeline_lines(conversions: Iterable[ConversionEvent]) -> None:
    """One line per matched conversion, idempotent by the same (customer, dedup key) constraint
    as timeline_record, in one insert. Stored in the project language (summaries are text)."""
    with translation.override(settings.LANGUAGE_CODE):
        lines = [
            TimelineEvent(
                corp_id=c.corp_id,
                external_contact_id=c.external_contact_id,
                kind=TimelineEvent.Kind.CONVERSION,
                occurred_at=c.occurred_at,
                summary=conversion_summary(c)[:255],
                data={
                    "conversion": c.pk,
                    "kind": c.kind,
                    "amount": None if c.amount is None else str(c.amount),
                    "currency": c.currency,
                },
                dedup_key=f"conversion:{c.pk}",
            )
            for c in conversions
        ]
    TimelineEvent.objects.bulk_create(lines, ignore_conflicts=True)


def conversions_match_pending(*, corp: Corp | None = None) -> int:
    """Match the conversions still without a customer to customers that exist now; return how
    many were matched. Only rows that can match are read (the join runs in the database), so
    conversions of people who never added cost one indexed query per pass, not a scan in Python.
    """
    candidates = conversion_pending_candidates(corp=corp)
    total = 0
    while True:
        with transaction.atomic():
            batch = list(candidates.order_by("pk")[:MATCH_BATCH])
            matched = _match(batch)
            ConversionEvent.objects.bulk_update(matched, ["external_contact", "matched_at"])
            _timeline_lines(matched)
        total += len(matched)
        if len(batch) < MATCH_BATCH or not matched:
            return total


# -- reads -------------------------------------------------------------------------------------


def conversion_pending_candidates(*, corp: Corp | None = None) -> QuerySet[ConversionEvent]:
    """Unmatched conversions for which a customer with that external_userid or unionid exists."""
    contacts = ExternalContact.objects.filter(corp_id=OuterRef("corp_id"))
    queryset = ConversionEvent.objects.filter(external_contact__isnull=True).filter(
        Exists(contacts.filter(external_userid=OuterRef("external_userid")))
        | (~Q(unionid="") & Exists(contacts.filter(unionid=OuterRef("unionid"))))
    )
    return queryset if corp is None else queryset.filter(corp=corp)


class ConversionEventFilter(django_filters.FilterSet):
    corp = django_filters.CharFilter(field_name="corp__corp_id", label=gettext_lazy("corp ID"))
    kind = django_filters.ChoiceFilter(
        choices=ConversionEvent.Kind.choices, label=gettext_lazy("kind")
    )
    # matched=true: exclude rows without a customer; matched=false: keep only those.
    matched = django_filters.BooleanFilter(
        field_name="external_contact", lookup_expr="isnull", exclude=True,
        label=gettext_lazy("matched to a customer"),
    )  # fmt: skip
    external_userid = django_filters.CharFilter(label=gettext_lazy("external UserID"))
    external_id = django_filters.CharFilter(label=gettext_lazy("external ID"))
    # Local days of the conversion's corp.
    occurred_from = LocalDayFilter(field_name="occurred_at", label=gettext_lazy("occurred from"))
    occurred_to = LocalDayFilter(
        field_name="occurred_at", upper=True, label=gettext_lazy("occurred to")
    )

    class Meta:
        model = ConversionEvent
        fields = ["corp", "kind", "matched", "external_userid", "external_id"]


def conversion_list(*, filters: dict[str, Any] | None = None) -> QuerySet[ConversionEvent]:
    queryset = ConversionEvent.objects.select_related("corp", "external_contact").order_by(
        "-occurred_at", "-pk"
    )
    if filters is None:
        return queryset
    return ConversionEventFilter(filters, queryset=queryset).qs
