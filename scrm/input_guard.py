"""Untrusted text and JSON that would reach the database or the parser as a 500.

- PostgreSQL refuses NUL (U+0000) in text and jsonb, and psycopg2 cannot encode a lone
  surrogate: either fails the statement after validation passed. SQLite takes both, so a bug
  of this kind only shows on PostgreSQL. `text_problem` names what is wrong with a string.
- Python's json module recurses once per nesting level: JSON nested a few thousand deep raises
  RecursionError, which DRF's JSONParser (it catches ValueError) lets through as a 500.
- Python's json module reads NaN, Infinity and 1e400 (infinite) as floats; PostgreSQL's jsonb
  refuses them. `json_problem` walks a parsed value (keys included) for all of these: every API
  body (GuardedJSONParser) and every JSONField of ours (StorableJSONField, validated wherever
  full_clean runs: the admin's forms, the services) refuse them with a reason and a place.
"""

from __future__ import annotations

import json
import math
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db import models
from django.forms.fields import InvalidJSONInput
from django.utils.translation import gettext as _
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored as text (a translated reason), or None when it can."""
    if "\x00" in value:
        return _("NUL characters are not accepted.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return _("Invalid Unicode (a lone surrogate).")
    return None


def text_storable(value: str) -> bool:
    return text_problem(value) is None


def json_problem(value: Any) -> str | None:
    """Why the parsed JSON `value` cannot be stored (text that is not storable anywhere in it,
    keys included, or a number that is not finite), with where ("rows[3].note: ..."), or None
    when it can. Iterative: as deep as the parser went."""
    pending: list[tuple[str, Any]] = [("", value)]
    while pending:
        path, item = pending.pop()
        problem = None
        if isinstance(item, str):
            problem = text_problem(item)
        elif isinstance(item, float) and not math.isfinite(item):
            problem = _("Numbers must be finite (no NaN, Infinity or out-of-range values).")
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and (problem := text_problem(key)):
                    break
                pending.append((f"{path}.{key}" if path else str(key), child))
        elif isinstance(item, list | tuple):
            pending.extend((f"{path}[{index}]", child) for index, child in enumerate(item))
        if problem:
            return f"{path}: {problem}" if path else problem
    return None


def validate_json_storable(value: Any) -> None:
    """A model JSONField's validator: see json_problem."""
    if problem := json_problem(value):
        raise ValidationError(problem, code="unstorable")


class StorableJSONFormField(forms.JSONField):
    """Django's JSON form field, whose value shown again with an error stays printable: a lone
    surrogate (from a "\\ud800" typed in the JSON) is written back escaped, not as a character
    the page cannot be encoded with (a 500 on the way out)."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, InvalidJSONInput):
            return value
        readable = json_problem(value) is None
        return json.dumps(value, ensure_ascii=not readable, cls=self.encoder)


class StorableJSONField(models.JSONField):
    """Every JSONField of ours: refuses what PostgreSQL cannot store (json_problem) wherever
    full_clean runs (the admin's forms, the services), and shows a refused value back."""

    default_validators = [validate_json_storable]

    def formfield(self, **kwargs: Any) -> Any:
        return super().formfield(**{"form_class": StorableJSONFormField, **kwargs})


class GuardedJSONParser(JSONParser):
    """DRF's JSONParser, with JSON nested deeper than Python can parse, and a body holding what
    PostgreSQL cannot store (json_problem), refused as a 400 with the reason."""

    # False where the view checks its rows' text itself and answers an error per row.
    refuse_unstorable = True

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(_("JSON parse error - nested too deeply.")) from None
        if self.refuse_unstorable and (problem := json_problem(data)):
            raise ParseError(_("JSON parse error - %(reason)s") % {"reason": problem})
        return data


class RowsJSONParser(GuardedJSONParser):
    """For a list of rows whose fields the view checks one by one (NUL and lone surrogates
    reported per row and field): only the nesting is guarded here."""

    refuse_unstorable = False
