"""Untrusted text and JSON that would reach the database or the parser as a 500.

- PostgreSQL refuses NUL (U+0000) in text and jsonb, and psycopg2 cannot encode a lone
  surrogate: either fails the statement after validation passed. SQLite takes both, so a bug
  of this kind only shows on PostgreSQL. `text_problem` names what is wrong with a string.
- Python's json module recurses once per nesting level: JSON nested a few thousand deep raises
  RecursionError, which DRF's JSONParser (it catches ValueError) lets through as a 500.
"""

from __future__ import annotations

from typing import Any

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


class GuardedJSONParser(JSONParser):
    """DRF's JSONParser, with JSON nested deeper than Python can parse refused as a 400."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(_("JSON parse error - nested too deeply.")) from None
