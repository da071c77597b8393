"""The `state` scheme: what our contact ways carry, and how it parses back without a lookup.

WeCom returns a contact way's `state` (at most 30 characters) with every add. Ours is ASCII
letters and digits only (WeCom's 84025 check), built as

    "sc" KIND id36 [ "S" second_id36 ] check2

- KIND is one uppercase letter: N a native live code, L a landing slot (the second id is the
  slot, leased to one scan at a time), R a referral code, G a customer-group join way.
- ids are base 36 in lowercase (0-9a-z), so the uppercase letters can never occur inside them.
- check2 is crc32 of everything before it, mod 36**2, in lowercase base 36: a foreign state
  that happens to look like ours is recognised as foreign (the chance of a false match is 1 in
  1,296), and a state truncated or edited by hand fails its check.

Distinct (kind, ids) give distinct strings and the parse is the exact inverse, so states never
collide. The longest (L with two 10-digit ids) is 26 characters. Anything else, including
states of other tools and 获客链接 customer_channel values, parses as `foreign` and is kept.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

MAX_LENGTH = 30
DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
KINDS = {"N": "native", "L": "landing", "R": "referral", "G": "group"}
KIND_LETTERS = {name: letter for letter, name in KINDS.items()}
# A landing slot's state (kind L), as a database regex: one per slot, an internal detail that
# names no code an operator knows (the code and channel are the first source's own columns).
LANDING_SLOT_REGEX = r"^scL[0-9a-z]{1,10}S[0-9a-z]{1,10}[0-9a-z]{2}$"
PATTERN = re.compile(r"^sc([NLRG])([0-9a-z]{1,10})(?:S([0-9a-z]{1,10}))?([0-9a-z]{2})$")


@dataclass(frozen=True)
class ParsedState:
    kind: str  # native, landing, referral, group, foreign or empty
    object_id: int | None = None
    second_id: int | None = None
    raw: str = ""

    @property
    def is_ours(self) -> bool:
        return self.kind in KIND_LETTERS


def to_base36(number: int) -> str:
    if number < 0:
        raise ValueError("ids are positive")
    if number == 0:
        return "0"
    out = []
    while number:
        number, rest = divmod(number, 36)
        out.append(DIGITS[rest])
    return "".join(reversed(out))


def _check(body: str) -> str:
    value = zlib.crc32(body.encode()) % (36 * 36)
    return DIGITS[value // 36] + DIGITS[value % 36]


def encode_state(kind: str, object_id: int, second_id: int | None = None) -> str:
    letter = KIND_LETTERS[kind]
    body = "sc" + letter + to_base36(object_id)
    if second_id is not None:
        body += "S" + to_base36(second_id)
    state = body + _check(body)
    if len(state) > MAX_LENGTH:  # impossible for ids below 36**10, kept as a guard
        raise ValueError("state longer than 30 characters")
    return state


def parse_state(state: str | None) -> ParsedState:
    """Parse a state from WeCom; never raises. Not ours -> kind 'foreign' (or '' if empty)."""
    raw = (state or "")[:64]
    if not raw:
        return ParsedState(kind="")
    match = PATTERN.match(raw)
    if match is None or _check(raw[:-2]) != match.group(4):
        return ParsedState(kind="foreign", raw=raw)
    letter, first, second = match.group(1), match.group(2), match.group(3)
    leading_zero = any(part and len(part) > 1 and part[0] == "0" for part in (first, second))
    if (letter == "L") != (second is not None) or leading_zero:
        return ParsedState(kind="foreign", raw=raw)
    return ParsedState(
        kind=KINDS[letter],
        object_id=int(first, 36),
        second_id=int(second, 36) if second is not None else None,
        raw=raw,
    )
