"""Secret token formats: API tokens (`haao_…` with a checksum) and invitation tokens."""

from __future__ import annotations

import hashlib
import secrets
import string
import zlib

API_TOKEN_PREFIX = "haao_"  # noqa: S105 (a public marker, not a secret)
_ALPHABET = string.digits + string.ascii_letters
_BODY_LENGTH = 32  # 190 bits of randomness
_CHECKSUM_LENGTH = 6


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, rest = divmod(number, 62)
        chars.append(_ALPHABET[rest])
    return "".join(reversed(chars))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), _CHECKSUM_LENGTH)


def new_api_token() -> str:
    """A token like GitHub's: recognisable prefix, random body, CRC32 checksum."""
    body = "".join(secrets.choice(_ALPHABET) for _ in range(_BODY_LENGTH))
    return f"{API_TOKEN_PREFIX}{body}{_checksum(body)}"


def looks_like_api_token(raw: str) -> bool:
    """Cheap offline check (prefix, length, checksum) before any database look-up."""
    expected = len(API_TOKEN_PREFIX) + _BODY_LENGTH + _CHECKSUM_LENGTH
    if len(raw) != expected or not raw.startswith(API_TOKEN_PREFIX):
        return False
    body = raw[len(API_TOKEN_PREFIX):-_CHECKSUM_LENGTH]
    return all(c in _ALPHABET for c in body) and raw[-_CHECKSUM_LENGTH:] == _checksum(body)


def display_prefix(raw: str) -> str:
    return raw[: len(API_TOKEN_PREFIX) + 6]


def new_invitation_token() -> str:
    return secrets.token_urlsafe(32)


def digest(raw: str) -> str:
    """Stored form of a token: tokens are long and random, so a plain SHA-256 is enough."""
    return hashlib.sha256(raw.encode()).hexdigest()
