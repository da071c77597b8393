"""Welcome attachments edited as rows (kind, title, link, media id...) instead of raw JSON. The
stored value stays WeCom's own attachment list (send_welcome_msg), built from the rows."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.template.loader import render_to_string
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _

MAX_ATTACHMENTS = 9  # WeCom's limit per welcome message
KINDS = [("", "---------"), ("image", _("image")), ("link", _("link")),
         ("miniprogram", _("mini program")), ("video", _("video")),
         ("file", _("file"))]  # fmt: skip
COLUMNS = ["msgtype", "title", "url", "media_id", "pic_url", "desc", "appid", "page"]
# (row column, WeCom key) per kind; the first of each kind's `needed` must be given.
WECOM_KEYS: dict[str, list[tuple[str, str]]] = {
    "image": [("media_id", "media_id"), ("pic_url", "pic_url")],
    "link": [("title", "title"), ("url", "url"), ("pic_url", "picurl"), ("desc", "desc")],
    "miniprogram": [("title", "title"), ("media_id", "pic_media_id"), ("appid", "appid"),
                    ("page", "page")],
    "video": [("media_id", "media_id")],
    "file": [("media_id", "media_id")],
}  # fmt: skip
NEEDED = {"image": [("media_id", "pic_url")], "link": [("title",), ("url",)],
          "miniprogram": [("title",), ("media_id",), ("appid",), ("page",)],
          "video": [("media_id",)], "file": [("media_id",)]}  # fmt: skip


def to_rows(attachments: list[dict]) -> list[dict[str, str]]:
    rows = []
    for attachment in attachments or []:
        kind = attachment.get("msgtype", "")
        body = attachment.get(kind) or {}
        row = {"msgtype": kind}
        for column, key in WECOM_KEYS.get(kind, []):
            row[column] = str(body.get(key, ""))
        rows.append(row)
    return rows


def from_row(row: dict[str, str]) -> dict:
    kind = row["msgtype"]
    body = {key: row[column] for column, key in WECOM_KEYS[kind] if row.get(column)}
    return {"msgtype": kind, kind: body}


def _row_problems(number: int, row: dict[str, str]) -> list[str]:
    """What a row (kind and columns) lacks: the rules of the admin's rows and of the stored
    list alike."""
    kind = row.get("msgtype", "")
    if kind not in WECOM_KEYS:
        return [_("Row %(n)d: choose the kind of attachment.") % {"n": number}]
    problems = []
    for alternatives in NEEDED[kind]:
        if not any(row.get(column) for column in alternatives):
            names = " / ".join(alternatives)
            problems.append(_("Row %(n)d: %(field)s is needed.") % {"n": number, "field": names})
    return problems


def validate_welcome_attachments(value: Any) -> None:
    """A welcome_attachments field's validator: WeCom's list as send_welcome_msg takes it (at
    most 9; each a known msgtype with its fields, as text, under that name), whichever
    interface wrote it (the admin's rows, the API's JSON, an import)."""
    if not isinstance(value, list):
        raise ValidationError(_("A list of attachments is expected."), code="invalid")
    problems = []
    for number, attachment in enumerate(value, start=1):
        kind = attachment.get("msgtype") if isinstance(attachment, dict) else None
        kind = kind if isinstance(kind, str) else None  # JSON may put a list there
        body = attachment.get(kind) if kind in WECOM_KEYS else None
        known = {key for _column, key in WECOM_KEYS.get(kind, [])}
        if not isinstance(body, dict) or set(attachment) != {"msgtype", kind}:
            problems.append(
                _("Row %(n)d: a msgtype (%(kinds)s) and its fields under that name.")
                % {"n": number, "kinds": ", ".join(WECOM_KEYS)}
            )
        elif unknown := sorted(str(key) for key in body if key not in known):
            problems.append(
                _("Row %(n)d: unknown fields %(fields)s (known: %(known)s).")
                % {"n": number, "fields": ", ".join(unknown), "known": ", ".join(sorted(known))}
            )
        elif any(not isinstance(text, str) for text in body.values()):
            problems.append(_("Row %(n)d: the fields are text.") % {"n": number})
        else:
            problems.extend(_row_problems(number, to_rows([attachment])[0]))
    if len(value) > MAX_ATTACHMENTS:
        problems.append(_("At most 9 attachments."))
    if problems:
        raise ValidationError(problems, code="invalid")


class AttachmentRowsWidget(forms.Widget):
    template_name = "admin/channels_app/widgets/attachment_rows.html"

    def get_context(self, name: str, value: Any, attrs: dict | None) -> dict:
        context = super().get_context(name, value, attrs)
        items = value if isinstance(value, list) else []
        # Stored attachments are WeCom's (the body nested under its msgtype); a form sent
        # back with errors has rows already.
        rows = [to_rows([item])[0] if isinstance(item.get(item.get("msgtype", "")), dict)
                else item for item in items if isinstance(item, dict)]  # fmt: skip
        blank = max(0, min(2, MAX_ATTACHMENTS - len(rows)))
        context["widget"].update(rows=[*rows, *({} for _row in range(blank))], kinds=KINDS,
                                 columns=COLUMNS[1:])  # fmt: skip
        return context

    def render(self, name: str, value: Any, attrs: dict | None = None,
               renderer: Any = None) -> str:  # fmt: skip
        # The project's templates (the default form renderer reads only the apps' own).
        context = self.get_context(name, value, attrs)
        return mark_safe(render_to_string(self.template_name, context))  # noqa: S308

    def value_from_datadict(self, data: Any, files: Any, name: str) -> list[dict[str, str]]:
        rows = []
        for index in range(MAX_ATTACHMENTS + 2):
            row = {c: str(data.get(f"{name}-{index}-{c}", "")).strip() for c in COLUMNS}
            if row["msgtype"] or any(row[c] for c in COLUMNS[1:]):
                rows.append(row)
        return rows

    def value_omitted_from_data(self, data: Any, files: Any, name: str) -> bool:
        return False  # no row is a valid answer: no attachments


class AttachmentRowsField(forms.Field):
    widget = AttachmentRowsWidget

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{**kwargs, "required": False})

    def to_python(self, value: Any) -> list[dict]:
        rows = value or []
        errors = [
            problem
            for number, row in enumerate(rows, start=1)
            for problem in _row_problems(number, row)
        ]
        if len(rows) > MAX_ATTACHMENTS:
            errors.append(_("At most 9 attachments."))
        if errors:
            raise ValidationError(errors)
        return [from_row(row) for row in rows]

    def has_changed(self, initial: Any, data: Any) -> bool:
        try:
            return self.to_python(data) != list(initial or [])
        except ValidationError:
            return True
