"""`/health`: is each part HAAO depends on answering? 200 when all are, 503 naming the rest.

The sandbox is reported too, but fails the status only while some organization needs it
(one that does not allow unsandboxed checks); otherwise it is a warning.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from channels.layers import get_channel_layer
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from accounts.models import Organization
from agents.failures import sandbox_probe
from haao.celery import app as celery_app

TIMEOUT_SECONDS = 3.0
# A sandboxed check costs tens of milliseconds and rarely changes its answer: probe this often.
SANDBOX_PROBE_SECONDS = 300
_sandbox_lock = threading.Lock()
# When it was probed, the problem ("" when none) and what a working sandbox runs.
_sandbox_seen: tuple[float, str, str] | None = None


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_cache() -> None:
    key = f"health:{uuid.uuid4().hex}"
    cache.set(key, "ok", 10)
    if cache.get(key) != "ok":
        raise RuntimeError("a value written to the cache could not be read back")
    cache.delete(key)


def check_broker() -> None:
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=int(TIMEOUT_SECONDS))


def check_channel_layer() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer is configured")

    async def round_trip() -> None:
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "health.ping"})
        message = await asyncio.wait_for(layer.receive(channel), TIMEOUT_SECONDS)
        if message.get("type") != "health.ping":
            raise RuntimeError("the channel layer returned another message")

    # Its own thread and loop: callable from any context, even one with a running loop.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, round_trip()).result(timeout=TIMEOUT_SECONDS * 2)


def sandbox_state() -> tuple[str, str]:
    """(problem, detail) of this machine's sandbox: a trivial check of the default
    toolchain's python (cached a while); the problem is "" when it runs."""
    global _sandbox_seen

    with _sandbox_lock:
        if _sandbox_seen is None or time.monotonic() - _sandbox_seen[0] > SANDBOX_PROBE_SECONDS:
            _sandbox_seen = (time.monotonic(), *sandbox_probe())
        return _sandbox_seen[1], _sandbox_seen[2]


def check_sandbox() -> None:
    """A trivial check of the default toolchain's python, in the sandbox (cached a while)."""
    problem, _ = sandbox_state()
    if problem:
        raise RuntimeError(problem)


def sandbox_summary(problem: str, detail: str) -> str:
    """One line for an admin of `sandbox_state()`: "Sandbox: working (bubblewrap 0.8.0,
    python 3.11.7 at …)", or the problem in words."""
    if problem:
        return f"Sandbox: not working on this server. {problem}"
    return f"Sandbox: working ({detail})" if detail else "Sandbox: working"


def sandbox_required() -> bool:
    """Whether a broken sandbox stops work: some organization does not allow checks without."""

    try:
        return Organization.objects.filter(allow_unsandboxed_checks=False).exists()
    except Exception:  # the database part reports its own failure
        return True


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "cache": check_cache,
    "broker": check_broker,
    "channel_layer": check_channel_layer,
    "sandbox": check_sandbox,
}


@never_cache
@require_GET
def health(request: HttpRequest) -> JsonResponse:
    results: dict[str, dict[str, object]] = {}
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            check()
        except Exception as exc:  # any failure of a dependency is a health answer, not a 500
            text = str(exc) if name == "sandbox" else f"{type(exc).__name__}: {exc}"
            results[name] = {"ok": False, "error": text[:1000 if name == "sandbox" else 300]}
        else:
            results[name] = {"ok": True}
        results[name]["ms"] = round((time.perf_counter() - started) * 1000, 1)
    if "sandbox" in results:
        results["sandbox"]["required"] = sandbox_required()
    broken = [name for name, result in results.items() if not result["ok"]]
    failed = [name for name in broken if results[name].get("required", True)]
    warnings = [name for name in broken if name not in failed]
    body = {"status": "ok" if not failed else "fail", "failed": failed, "warnings": warnings,
            "checks": results}
    return JsonResponse(body, status=200 if not failed else 503)
