"""Corp secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256) with keys from the environment.

SECRETS_KEY holds one key or several, comma-separated: the first encrypts, every one decrypts,
so a key is rotated by putting the new one first, running `manage.py rotate_secrets` (which
re-encrypts every corp's secrets with it) and then dropping the old one. A key is a Fernet key
(`Fernet.generate_key()`, 44 characters) or any other long random string, from which one is
derived. Without SECRETS_KEY a key is derived from SECRET_KEY, and the system check says so:
whoever holds SECRET_KEY (and a copy of the database) then holds the secrets too. That derived
key always decrypts (last), so setting SECRETS_KEY later and running `rotate_secrets` moves
the stored secrets to it.

The database column holds only the token; the model attribute is the plaintext, and so is
the per-process corp credential cache (memory only). Only `isnull` lookups exist on these
columns: a filter on a secret (`secret__startswith=`) would be an oracle, and on a token with a
random IV it would mean nothing anyway.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.validators import MaxLengthValidator
from django.db import models

# Not a secret: it only separates this key's derivation from any other use of the same input.
_DERIVATION_CONTEXT = b"scrm.wecom.vault/corp-secrets/v1:"


class SecretsKeyError(ImproperlyConfigured):
    """A stored secret cannot be decrypted with any key of SECRETS_KEY."""


def _fernet_key(material: str) -> bytes:
    """A Fernet key as given, or one derived (SHA-256) from any other string."""
    try:
        if len(base64.urlsafe_b64decode(material.encode())) == 32 and len(material) == 44:
            return material.encode()
    except (binascii.Error, ValueError):
        pass
    digest = hashlib.sha256(_DERIVATION_CONTEXT + material.encode()).digest()
    return base64.urlsafe_b64encode(digest)


def configured_keys() -> list[str]:
    """SECRETS_KEY as a list (the first encrypts); empty when unset."""
    value = getattr(settings, "SECRETS_KEY", None) or []
    if isinstance(value, str):
        value = value.split(",")
    return [k.strip() for k in value if k and k.strip()]


def weak_keys() -> list[int]:
    """Positions (1-based) of SECRETS_KEY entries that are neither a Fernet key nor 32+
    characters: derived from, they would be guessable."""
    return [
        n for n, key in enumerate(configured_keys(), start=1)
        if len(key) < 32 and _fernet_key(key) != key.encode()
    ]  # fmt: skip


def uses_derived_key() -> bool:
    return not configured_keys()


@functools.lru_cache(maxsize=8)
def _box(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(_fernet_key(k)) for k in keys])


def box() -> MultiFernet:
    """The keys in force (read at call time, so tests and rotation see settings changes).

    The key derived from SECRET_KEY always decrypts, last: secrets stored under the embedded
    default are read once SECRETS_KEY is set, and `rotate_secrets` moves them to it."""
    derived = f"derived-from-SECRET_KEY:{settings.SECRET_KEY}"
    return _box((*configured_keys(), derived))


def seal(plaintext: str) -> str:
    return box().encrypt(plaintext.encode()).decode("ascii")


def unseal(token: str) -> str:
    try:
        return box().decrypt(token.encode("ascii")).decode()
    except (InvalidToken, UnicodeError) as exc:
        raise SecretsKeyError(
            "A corp secret cannot be decrypted: is SECRETS_KEY (or, without it, SECRET_KEY) "
            "the key it was encrypted with? Put the old key after the new one in SECRETS_KEY."
        ) from exc


def is_sealed(value: str) -> bool:
    """Whether `value` is a token of the keys in force (used by the data migration)."""
    try:
        box().decrypt(value.encode("ascii"))
    except (InvalidToken, UnicodeError):
        return False
    return True


class EncryptedTextField(models.TextField):
    """A short secret kept encrypted in a text column; the attribute is the plaintext.

    `max_length` bounds the plaintext (validated, shown on forms), not the column. The empty
    string is stored as is: an unset secret is no secret."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.max_length is not None:
            self.validators.append(MaxLengthValidator(self.max_length))

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return seal(str(value))

    def from_db_value(self, value: str | None, expression: object, connection: object) -> Any:
        if value is None or value == "":
            return value
        return unseal(value)

    def get_lookup(self, lookup_name: str) -> Any:
        # No exact, startswith, contains, regex...: each would be a way to test a guess.
        return super().get_lookup(lookup_name) if lookup_name == "isnull" else None

    def get_transform(self, lookup_name: str) -> Any:
        return None

    def formfield(self, **kwargs: Any) -> Any:
        from django import forms

        # A one-line input, not the TextField's textarea.
        return super().formfield(**{"widget": forms.TextInput, **kwargs})
