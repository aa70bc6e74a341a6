"""HAAO as `make run` starts it, for tests that use it as a new user would: a fresh data
directory on the embedded defaults (SQLite, SQL broker), `migrate`, `seed_demo` (its printed
logins read back), then `manage.py serve`'s web, worker and beat processes, stopped with
SIGINT as Ctrl-C does."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from haao import envfile

ROOT = Path(__file__).resolve().parents[1]
# seed_demo's lines "  Product owner  po@demo.haao.local  password: demo-…"
_LOGIN = re.compile(r"^\s+(?P<role>\S.*?)\s{2,}(?P<email>\S+@\S+)\s+password:\s+(?P<pw>\S+)$",
                    re.MULTILINE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_pair() -> int:
    """A free port whose next one is free too (the sample models' Tech Lead and coder)."""
    for _ in range(50):
        port = free_port()
        if port >= 65000:
            continue
        try:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    raise RuntimeError("no two free neighbouring ports")


def poll(read: Callable[[], Any], *, until: Callable[[Any], bool], timeout: float,
         what: str, logs: Path) -> Any:
    """`read()` until `until` holds, or fail with the last value and the server's log."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = read()
        if until(value):
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}; last: {value}\n"
                f"{logs.read_text(errors='replace')[-5000:]}")


@dataclass
class DemoServer:
    url: str
    env: dict[str, str]
    logins: dict[str, tuple[str, str]]  # role label → (email, password), as printed
    seed_output: str
    log: Path

    def manage(self, *args: str) -> str:
        return manage(self.env, *args)


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def demo_env(data: Path, port: int) -> dict[str, str]:
    """`make run`'s environment: the `.env` it writes (fresh secrets), the sample models it
    turns on, and nothing else of HAAO's but where the data goes and the ports (the suite's
    own database, broker and secrets are dropped)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HAAO_", "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG"))}
    dotenv = data.parent / ".env"
    envfile.ensure(dotenv)
    env.update(line.split("=", 1) for line in dotenv.read_text().splitlines() if "=" in line)
    env.update({"HAAO_DATA_DIR": str(data), "PORT": str(port), "HAAO_READ_DOTENV": "false",
                "HAAO_SAMPLE_MODELS": "true",  # as the Makefile's run target sets it
                "HAAO_SAMPLE_MODELS_PORT": str(free_port_pair()),
                "HAAO_BASE_URL": f"http://127.0.0.1:{port}"})
    return env


@contextmanager
def demo_server(tmp_path: Path, **extra_env: str) -> Iterator[DemoServer]:
    port = free_port()
    env = {**demo_env(tmp_path / "data", port), **extra_env}
    manage(env, "migrate", "--noinput")
    manage(env, "createcachetable")
    seeded = manage(env, "seed_demo")
    logins = {m["role"].strip(): (m["email"], m["pw"]) for m in _LOGIN.finditer(seeded)}
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen([sys.executable, "manage.py", "serve"], cwd=ROOT, env=env,
                                  stdout=out, stderr=out, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        poll(lambda: status_of(f"{url}/health"), until=lambda s: s == 200, timeout=90,
             what="the web process", logs=log)
        yield DemoServer(url=url, env=env, logins=logins, seed_output=seeded, log=log)
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def status_of(url: str) -> int:
    """The HTTP status of a GET, or 0 when nothing answered."""
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0
