"""Every model field that holds a secret at rest: for re-encryption under the newest key, and
for redacting an organization's own secrets from text bound for a cloud model."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

from django.apps import apps
from django.db import models

from haao.crypto import EncryptedTextField, Secret
from haao.reads import read_once


def encrypted_fields() -> Iterator[tuple[type[models.Model], str]]:
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if isinstance(field, EncryptedTextField):
                yield model, field.attname


def organization_secrets(*, organization: Any) -> list[str]:
    """The secrets HAAO keeps for the organization, whichever model holds them (endpoint keys,
    the SSO client secret, repository tokens and deploy keys, webhook secrets), found by
    field type, so a secret field added later is covered without touching this. Read once per
    Celery task (haao.reads): an attempt's coder call and its audit redact the same ones."""
    return read_once(("organization_secrets", organization.pk),
                     lambda: _secrets_read(organization))


@cache
def _secret_columns() -> list[tuple[type[models.Model], str]]:
    """Every encrypted field of a model that belongs to an organization."""
    return [(model, attname) for model, attname in encrypted_fields()
            if any(field.name == "organization" for field in model._meta.concrete_fields)]


def _secrets_read(organization: Any) -> list[str]:
    """One query: a column of every secret field's values, each field's rows one part of a
    UNION ALL (every part an EncryptedTextField, read as the first part's field reads)."""
    parts = [model._default_manager.filter(organization=organization).order_by()
             .values_list(name, flat=True) for model, name in _secret_columns()]
    if not parts:
        return []
    found: list[str] = []
    for value in parts[0].union(*parts[1:], all=True):
        text = value.reveal() if isinstance(value, Secret) else str(value or "")
        if text:
            found.append(text)
    return found
