"""Shared set-up of benchmarks that need Django: a throwaway SQLite database and data dir."""

from __future__ import annotations

import os
from pathlib import Path


def configure_django(scratch: Path) -> None:
    """Point HAAO at a scratch directory and set Django up; call before importing models."""
    os.environ["DATABASE_URL"] = f"sqlite:///{scratch / 'bench.sqlite3'}"
    os.environ["HAAO_DATA_DIR"] = str(scratch / "data")
    os.environ["HAAO_READ_DOTENV"] = "false"
    os.environ["HAAO_HTTPS"] = "false"
    os.environ["DEBUG"] = "false"
    os.environ["HAAO_ENDPOINT_ALLOWLIST"] = "127.0.0.1"
    os.environ.setdefault("SECRET_KEY", "benchmark-only-secret-key-" + "x" * 40)
    os.environ.setdefault("HAAO_ENCRYPTION_KEYS", "6vQ1d3Zs9m8Zb1g8Qk4j0oE1uXyP1YbqfQ0rJ5m6Z0A=")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "haao.settings")
    import django

    django.setup()
