"""`manage.py serve` (what `make run` starts): web, worker and beat up; Ctrl-C stops them all."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from websockets.exceptions import ConnectionClosed

from haao.web import OPTIONS, web_command
from tests.demo_server import free_port

ROOT = Path(__file__).resolve().parents[1]


def children_of(pid: int) -> set[int]:
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The parent pid is the 2nd field after the parenthesised command name.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.add(int(entry.name))
            found |= children_of(int(entry.name))
    return found


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180, check=True)


def test_serve_answers_health_and_ctrl_c_stops_every_process(tmp_path) -> None:
    env = {**os.environ, "HAAO_DATA_DIR": str(tmp_path), "PORT": str(free_port())}
    env.pop("DATABASE_URL", None)  # its own SQLite file: the embedded defaults, as `make run`
    env.pop("REDIS_URL", None)
    manage(env, "migrate", "--noinput")
    manage(env, "createcachetable")
    first = manage(env, "seed_demo").stdout
    assert "Seeded the demo organization" in first and "admin@demo.haao.local" in first
    again = manage(env, "seed_demo").stdout
    assert "Found the demo organization" in again
    # Same password on every run: the data (and the printed login) are kept.
    assert first.split("password: ")[1].split()[0] == again.split("password: ")[1].split()[0]

    quiet = manage(env, "seed_demo", "--no-logins").stdout
    assert "Found the demo organization" in quiet and "password:" not in quiet
    password = first.split("password: ")[1].split()[0]

    # Every process writes to one pipe, in the order a person at the console would read it.
    server = subprocess.Popen([sys.executable, "-u", "manage.py", "serve"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(iter(server.stdout.readline, "")),
                              daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline:
            try:
                response = httpx.get(f"http://127.0.0.1:{env['PORT']}/health", timeout=5)
                status = response.status_code
                if status == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        assert status == 200, "the web server never answered /health with 200"
        while time.monotonic() < deadline + 60 and not any("password:" in line
                                                            for line in output):
            time.sleep(0.2)
        text = "".join(output)
        url = f"http://127.0.0.1:{env['PORT']}/"
        assert f"HAAO is serving on {url}" in text, text
        assert f"Open   {url}o/demo/" in text
        assert f"admin@demo.haao.local  password: {password}" in text
        # The logins come after the start-up output of the web server and the worker.
        logins = text.index("HAAO is serving on")
        assert text.index("[tasks]") < text.index(" ready.") < logins, text
        processes = children_of(server.pid)
        assert len(processes) >= 3, "web, worker and beat should be running"
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
    def alive() -> list[int]:
        return [pid for pid in processes if Path(f"/proc/{pid}").exists()
                and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()]

    deadline = time.monotonic() + 10  # the children's own exit, after serve's
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert alive() == [], f"processes left running after Ctrl-C: {alive()}"


def test_the_web_process_hides_its_name_and_compresses_no_socket(tmp_path) -> None:
    """What haao.web sets, seen from outside: no server header, and no per-socket
    compression of broadcast events even when a client offers it."""
    from websockets.sync.client import connect

    env = {**os.environ, "HAAO_DATA_DIR": str(tmp_path), "DEBUG": "false",
           "ALLOWED_HOSTS": "127.0.0.1", "HAAO_HTTPS": "false"}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    manage(env, "migrate", "--noinput")
    port = free_port()
    env["HAAO_BASE_URL"] = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(web_command("127.0.0.1", port), cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        response = None
        while response is None and time.monotonic() < deadline:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
            except httpx.TransportError:
                time.sleep(0.3)
        assert response is not None, "the web process never answered"
        assert "server" not in response.headers
        with connect(f"ws://127.0.0.1:{port}/ws/o/demo/projects/PAY/events/",
                     origin=env["HAAO_BASE_URL"], compression="deflate",
                     open_timeout=10) as socket:
            assert socket.response.headers.get("Sec-WebSocket-Extensions") is None
            with contextlib.suppress(ConnectionClosed):
                socket.recv(timeout=10)
            assert socket.close_code == 4403  # anonymous: refused after the handshake
    finally:
        server.terminate()
        server.wait(timeout=15)


def test_the_readmes_web_command_is_the_one_serve_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    lines = [line for line in readme.splitlines() if "uvicorn haao.asgi:application" in line]
    assert len(lines) >= 2  # the table of processes and the Procfile
    for line in lines:
        assert " ".join(OPTIONS) in line, line
