"""Shared test set-up: the cast of every suite lives in tests/fixtures.py."""

from __future__ import annotations

pytest_plugins = ["tests.fixtures"]
