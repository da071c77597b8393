"""Reading an uploaded CSV file's bytes as text, the way operators in China save them.

Shared by every CSV import (live codes, channel costs, conversions): Excel on Chinese Windows
saves "CSV" as GBK unless "CSV UTF-8" is chosen (gb18030 is GBK's superset), "Unicode text" as
UTF-16, and a workbook uploaded by mistake should be named as such, not read as mojibake.
"""

from __future__ import annotations

import codecs

from django.utils.translation import gettext as _

ENCODINGS = ("utf-8-sig", "gb18030")


class CsvFileError(ValueError):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def csv_text_decode(raw: bytes) -> str:
    """The file's text; CsvFileError with a message for the operator when it is not text."""
    if not raw.strip():
        raise CsvFileError(_("The file is empty."))
    if raw.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):
        raise CsvFileError(
            _("This is an Excel workbook, not a CSV file. In Excel use Save As, CSV UTF-8.")
        )
    utf16 = raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    if b"\x00" in raw and not utf16:
        raise CsvFileError(_("This is not a text CSV file."))
    # utf-16: Excel's "Unicode text", tab separated.
    for encoding in ("utf-16",) if utf16 else ENCODINGS:
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise CsvFileError(_("The file is neither UTF-8 nor GBK text. Save it as CSV UTF-8."))
