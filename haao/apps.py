from __future__ import annotations

from django.apps import AppConfig


class HaaoConfig(AppConfig):
    """Project-wide commands (serve, reencrypt_secrets); no models."""

    name = "haao"
    verbose_name = "HAAO"
