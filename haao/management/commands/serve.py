"""Run HAAO on one machine: the ASGI web server, a Celery worker and Celery beat.

Ctrl-C (or SIGTERM) stops every process this command started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from agents.engine import routing
from haao.celery import READY_FILE_VARIABLE
from haao.management.commands.seed_demo import demo_login_lines
from haao.web import web_command

STOP_GRACE_SECONDS = 10
# A slow machine still gets the address and logins, even if the worker never says it's ready.
ANNOUNCE_AFTER_SECONDS = 120
SETTLE_SECONDS = 1.0


def local_host(host: str) -> str:
    """The address this machine reaches a server bound to `host` at (a wildcard → loopback)."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104


def served_url(host: str, port: int) -> str:
    """The URL a browser on this machine opens for a server bound to `host`:`port`."""
    shown = local_host(host).strip("[]")
    return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"


def answers(host: str, port: int) -> bool:
    """Whether the web server accepts connections yet."""
    target = local_host(host).strip("[]")
    try:
        with socket.create_connection((target, port), timeout=1):
            return True
    except OSError:
        return False


class Command(BaseCommand):
    help = "Serves HTTP + WebSocket on HOST:PORT and runs background work until interrupted."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=settings.SERVE_HOST)
        parser.add_argument("--port", type=int, default=settings.SERVE_PORT)
        parser.add_argument("--workers", type=int,
                            default=settings.HAAO_WORKER_CONCURRENCY)

    def handle(self, *args: Any, **options: Any) -> None:
        python = sys.executable
        data_dir = settings.DATA_DIR
        data_dir.mkdir(parents=True, exist_ok=True)
        commands = {
            "web": web_command(options["host"], options["port"]),
            # One machine: this worker takes every kind of work, dedicated queues included.
            "worker": [python, "-m", "celery", "-A", "haao", "worker", "--loglevel", "INFO",
                       "-Q", ",".join([*routing.SHARED_QUEUES, *routing.dedicated_queues()]),
                       "--concurrency", str(options["workers"]), "--without-gossip",
                       "--without-mingle"],
            "beat": [python, "-m", "celery", "-A", "haao", "beat", "--loglevel", "INFO",
                     "--schedule", str(data_dir / "celerybeat-schedule")],
        }
        if settings.HAAO_SAMPLE_MODELS:
            commands["sample-models"] = [python, "-m", "sample_models.demo", "--port",
                                         str(settings.HAAO_SAMPLE_MODELS_PORT)]
        if settings.HAAO_DEMO_LOCAL_MODEL:
            commands["local-model"] = [python, "-m", "agents.localmodel", "--port",
                                       str(settings.HAAO_DEMO_LOCAL_MODEL_PORT)]
        ready_file = data_dir / "worker-ready"
        ready_file.unlink(missing_ok=True)
        environment = {**os.environ, READY_FILE_VARIABLE: str(ready_file)}
        processes: dict[str, subprocess.Popen[bytes]] = {}
        stopping = False
        announced = False
        url = served_url(options["host"], options["port"])

        def stop(signum: int, frame: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            for name, command in commands.items():
                # Own process group: a Ctrl-C reaches us once, and we stop the children in order.
                processes[name] = subprocess.Popen(  # noqa: S603
                    command, start_new_session=True, env=environment)
            started = time.monotonic()
            ready_at: float | None = None
            while not stopping:
                for name, process in processes.items():
                    if process.poll() is not None:
                        self.stderr.write(f"{name} exited with {process.returncode}; stopping.")
                        stopping = True
                now = time.monotonic()
                if ready_at is None and ready_file.exists() and answers(options["host"],
                                                                        options["port"]):
                    ready_at = now
                # The worker logs "ready" just after it signals it: let that line out first.
                if not stopping and not announced and (
                        now - started > ANNOUNCE_AFTER_SECONDS
                        or (ready_at is not None and now - ready_at >= SETTLE_SECONDS)):
                    self._announce(url)
                    announced = True
                time.sleep(0.3)
        finally:
            self._stop_all(processes)

    def _announce(self, url: str) -> None:
        """Where HAAO answers and the demo's logins, last, after the processes' start-up."""
        lines = ["", f"HAAO is serving on {url} (Ctrl-C stops it).",
                 *demo_login_lines(base_url=url), ""]
        self.stdout.write("\n".join(lines))
        self.stdout.flush()

    def _stop_all(self, processes: dict[str, subprocess.Popen[bytes]]) -> None:
        for process in processes.values():
            if process.poll() is None:
                # The leader only: Celery then shuts its pool down warmly.
                process.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for process in processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # anything the leader left behind
        self.stdout.write("Stopped.")
