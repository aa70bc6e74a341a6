"""Loaded with `-p` before Django starts: the environment a test run needs.

Tests never read a developer's .env; scripts/test.sh sets real values, these are fallbacks.
"""

from __future__ import annotations

import os

os.environ.setdefault("HAAO_READ_DOTENV", "false")
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production-0123456789abcdefghij")
os.environ.setdefault("HAAO_ENCRYPTION_KEYS", "6vQ1d3Zs9m8Zb1g8Qk4j0oE1uXyP1YbqfQ0rJ5m6Z0A=")
os.environ.setdefault("HAAO_HTTPS", "false")
os.environ.setdefault("HAAO_DATA_DIR", "/tmp/haao-pytest-data")
# Playwright's sync API (tests/browser.py, used by tests/e2e and tests/servers) runs an event
# loop in the test thread for the rest of the session; Django would then refuse every later
# test's own synchronous database access in that process.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

# Each xdist worker gets its own Redis database: its Celery workers, cache and channel layer
# must not see another test process's tasks (tests/loop.py starts real workers).
_xdist = os.environ.get("PYTEST_XDIST_WORKER", "")
if _xdist.startswith("gw") and os.environ.get("REDIS_URL", "").startswith("redis://"):
    _base = os.environ["REDIS_URL"].rsplit("/", 1)[0] if os.environ["REDIS_URL"].count("/") > 2 \
        else os.environ["REDIS_URL"]
    os.environ["REDIS_URL"] = f"{_base}/{1 + int(_xdist[2:]) % 15}"


# Tests that never open the database behave the same on every backend: when the whole suite
# runs twice (scripts/test.sh, PostgreSQL then the embedded defaults), the second pass sets
# HAAO_SKIP_DATABASE_FREE=1 and runs only what the backend can change.
DATABASE_FIXTURES = frozenset({"db", "transactional_db", "django_db_reset_sequences",
                               "django_db_serialized_rollback", "live_server"})


def pytest_collection_modifyitems(config: object, items: list) -> None:  # type: ignore[type-arg]
    if os.environ.get("HAAO_SKIP_DATABASE_FREE") != "1":
        return
    kept, skipped = [], []
    for item in items:
        uses_database = item.get_closest_marker("django_db") is not None or bool(
            DATABASE_FIXTURES & set(getattr(item, "fixturenames", ())))
        (kept if uses_database else skipped).append(item)
    if skipped:
        config.hook.pytest_deselected(items=skipped)  # type: ignore[attr-defined]
        items[:] = kept
