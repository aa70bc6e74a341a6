from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Organizations and identity"
    default_auto_field = "django.db.models.BigAutoField"
