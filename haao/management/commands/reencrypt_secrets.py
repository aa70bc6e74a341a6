"""Re-encrypt every stored secret under the newest key of HAAO_ENCRYPTION_KEYS."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction
from django.db.models import TextField
from django.db.models.functions import Cast

from haao import crypto
from haao.secrets_registry import encrypted_fields


class Command(BaseCommand):
    help = ("Re-encrypts every secret at rest under the first (newest) key of "
            "HAAO_ENCRYPTION_KEYS; after it, older keys can be removed.")

    def handle(self, *args: Any, **options: Any) -> None:
        total = 0
        for model, attname in encrypted_fields():
            # Cast to plain text: the raw ciphertext, not the Secret the field hands to Python.
            rows = (model._default_manager.exclude(**{attname: ""})
                    .annotate(ciphertext=Cast(attname, TextField()))
                    .values_list("pk", "ciphertext"))
            with transaction.atomic():
                for pk, stored in rows.iterator(chunk_size=500):
                    model._default_manager.filter(pk=pk).update(
                        **{attname: crypto.Ciphertext(crypto.rotate(stored))}
                    )
                    total += 1
            self.stdout.write(f"{model._meta.label}.{attname}: re-encrypted")
        self.stdout.write(self.style.SUCCESS(f"{total} secret(s) now under the newest key."))
