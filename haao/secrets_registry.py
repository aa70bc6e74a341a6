"""Every model field that holds a secret at rest, for re-encryption under the newest key."""

from __future__ import annotations

from collections.abc import Iterator

from django.apps import apps
from django.db import models

from haao.crypto import EncryptedTextField


def encrypted_fields() -> Iterator[tuple[type[models.Model], str]]:
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if isinstance(field, EncryptedTextField):
                yield model, field.attname
