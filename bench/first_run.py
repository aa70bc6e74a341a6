"""How long `make run` takes from a fresh clone until /health answers 200, and until the demo's
first ticket waits at Gate 2; and again with the data kept. Prints `name=value` lines last.

    python bench/first_run.py [--repo .]

The Gate 2 figure is what a new user meets: no variable set by hand, the sample models, the
product owner's requirement ("0.125 must round to 0.13") submitted as soon as the portal
answers, the proposal approved as soon as it arrives, until the ticket awaits acceptance.

The clone is fresh (no .venv, no .env, no data); pip's download cache is whatever the machine
has, so on a machine that never installed HAAO's dependencies the first figure is larger.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

TIMEOUT_SECONDS = 900


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


# A product owner's API token, made the way the console makes one (the clone's own .env).
MAKE_API_KEY = """
from datetime import timedelta
from django.utils import timezone
from accounts.models import Organization, User
from accounts.services import api_token_create
_, raw = api_token_create(organization=Organization.objects.get(slug="demo"),
                          user=User.objects.get(email="po@demo.haao.local"), name="first run",
                          scopes=["read", "write"], expires_at=timezone.now() + timedelta(hours=1))
print(raw)
"""


def clean_env(port: int) -> dict[str, str]:
    """The caller's environment without any HAAO setting: what a new user's shell has."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HAAO_", "DATABASE_URL", "REDIS_URL", "SECRET_KEY"))}
    env["PORT"] = str(port)
    return env


def time_first_run(clone: Path, port: int, *, to_gate_2: bool) -> tuple[float, float | None]:
    """Seconds until /health answers 200 and (when asked) until the first ticket waits at
    Gate 2, from `make run`'s start."""
    env = clean_env(port)
    started = time.monotonic()
    process = subprocess.Popen(["make", "run"], cwd=clone, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while not healthy(port):
            if process.poll() is not None:
                raise SystemExit(f"make run exited with {process.returncode}")
            if time.monotonic() - started > TIMEOUT_SECONDS:
                raise SystemExit("make run never answered /health with 200")
            time.sleep(0.25)
        health = time.monotonic() - started
        if not to_gate_2:
            return health, None
        token = subprocess.run([str(clone / ".venv/bin/python"), "manage.py", "shell", "-c",
                                MAKE_API_KEY], cwd=clone, env=env, capture_output=True,
                               text=True, check=True).stdout.strip().splitlines()[-1]
        wait_for_gate_2(port, token, started)
        return health, time.monotonic() - started
    finally:
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        process.wait(timeout=60)


def wait_for_gate_2(port: int, token: str, started: float) -> None:
    api = f"http://127.0.0.1:{port}/api/v1/orgs/demo/"

    def call(method: str, path: str, body: dict[str, str] | None = None) -> dict:
        request = urllib.request.Request(
            api + path, method=method, data=json.dumps(body).encode() if body else None,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return dict(json.load(response))

    def until(read, done, what: str) -> dict:
        while time.monotonic() - started < TIMEOUT_SECONDS:
            value = read()
            if done(value):
                return value
            time.sleep(0.25)
        raise SystemExit(f"timed out waiting for {what}")

    key = call("POST", "projects/DEMO/requirements/", {
        "title": "Invoices round half a cent the wrong way",
        "text": "Totals of 0.125 must round to 0.13."})["key"]
    proposal = until(lambda: call("GET", f"requirements/{key}/"),
                     lambda r: r["status"] != "decomposing", "the proposal")
    if proposal["status"] != "proposed":
        raise SystemExit(f"the demo's requirement ended {proposal['status']}: {proposal}")
    call("POST", f"requirements/{key}/approve/")
    ticket = proposal["tickets"][0]["key"]
    final = until(lambda: call("GET", f"tickets/{ticket}/"),
                  lambda t: t["state"] in ("awaiting_acceptance", "blocked"), "Gate 2")
    if final["state"] != "awaiting_acceptance":
        raise SystemExit(f"the demo's ticket was blocked: {json.dumps(final)[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "haao"
        subprocess.run(["git", "clone", "-q", args.repo, str(clone)], check=True)
        first, gate_2 = time_first_run(clone, free_port(), to_gate_2=True)
        again, _ = time_first_run(clone, free_port(), to_gate_2=False)
    print(f"first_run_to_health_s={first:.1f}")
    print(f"first_run_to_gate_2_s={gate_2:.1f}")
    print(f"second_run_to_health_s={again:.1f}")


if __name__ == "__main__":
    main()
