"""Secrets at rest: MultiFernet over HAAO_ENCRYPTION_KEYS (newest first), and a model field."""

from __future__ import annotations

from functools import cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

PREFIX = "fernet:"


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except (ValueError, TypeError):
        raise ImproperlyConfigured(
            "HAAO_ENCRYPTION_KEYS holds a value that is not a Fernet key "
            "(32 url-safe base64-encoded bytes)."
        ) from None


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return PREFIX + fernet().encrypt(plaintext.encode()).decode()


def decrypt(stored: str) -> str:
    if not stored.startswith(PREFIX):
        raise ValueError("This value was not encrypted by HAAO.")
    try:
        return fernet().decrypt(stored[len(PREFIX):].encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured(
            "A stored secret cannot be decrypted with any key in HAAO_ENCRYPTION_KEYS; "
            "was a key removed before `manage.py reencrypt_secrets` ran?"
        ) from None


def rotate(stored: str) -> str:
    """The same secret encrypted under the newest key."""
    return PREFIX + fernet().rotate(stored[len(PREFIX):].encode()).decode()


class Secret:
    """A decrypted value that never shows itself in logs, reprs or templates.

    One read from the database keeps its ciphertext and is decrypted when first revealed:
    rows with secrets (a project, an endpoint) are loaded on every step, their secrets used
    on few of them, and a Fernet decryption costs more than reading the row."""

    __slots__ = ("_stored", "_value")

    def __init__(self, value: str) -> None:
        self._value: str | None = value
        self._stored = ""

    @classmethod
    def stored(cls, ciphertext: str) -> Secret:
        """The secret whose ciphertext (with its prefix) is `ciphertext`, decrypted when
        revealed; a key that cannot decrypt it is reported then."""
        secret = cls("")
        secret._value, secret._stored = None, ciphertext
        return secret

    def reveal(self) -> str:
        if self._value is None:
            self._value = decrypt(self._stored)
        return self._value

    def __bool__(self) -> bool:
        return bool(self.reveal())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other.reveal() == self.reveal()

    def __hash__(self) -> int:
        return hash(self.reveal())

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__


class Ciphertext(str):
    """Already-encrypted text that EncryptedTextField stores as it is (used in rotation)."""


class EncryptedTextField(models.TextField):
    """Stores Fernet ciphertext; Python code sees a `Secret` (or None when empty)."""

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Secret | None:
        if not value:
            return None
        if not value.startswith(PREFIX):
            raise ValueError("This value was not encrypted by HAAO.")
        return Secret.stored(value)

    def to_python(self, value: Any) -> Secret | None:
        if value is None or isinstance(value, Secret):
            return value
        if isinstance(value, str) and value.startswith(PREFIX):
            return Secret.stored(value)
        return Secret(str(value)) if value != "" else None

    def get_prep_value(self, value: Any) -> str:
        if value is None or value == "":
            return ""
        if isinstance(value, Ciphertext):
            return str(value)
        if isinstance(value, Secret):
            if value._stored:  # read from the database and unchanged: stored as it was
                return value._stored
            value = value.reveal()
        return encrypt(str(value))

    def value_to_string(self, obj: models.Model) -> str:
        return "********"  # dumpdata and serializers never see the secret
