"""How long `make run` takes from a fresh clone until /health answers 200, and again with
the data kept. Prints `name=value` lines last.

    python bench/first_run.py [--repo .]

The clone is fresh (no .venv, no .env, no data); pip's download cache is whatever the machine
has, so on a machine that never installed HAAO's dependencies the first figure is larger.
"""

from __future__ import annotations

import argparse
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


def time_until_healthy(clone: Path, port: int) -> float:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HAAO_", "DATABASE_URL", "REDIS_URL", "SECRET_KEY"))}
    env["PORT"] = str(port)
    started = time.monotonic()
    process = subprocess.Popen(["make", "run"], cwd=clone, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while time.monotonic() - started < TIMEOUT_SECONDS:
            if process.poll() is not None:
                raise SystemExit(f"make run exited with {process.returncode}")
            if healthy(port):
                return time.monotonic() - started
            time.sleep(0.25)
        raise SystemExit("make run never answered /health with 200")
    finally:
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "haao"
        subprocess.run(["git", "clone", "-q", args.repo, str(clone)], check=True)
        first = time_until_healthy(clone, free_port())
        again = time_until_healthy(clone, free_port())
    print(f"first_run_to_health_s={first:.1f}")
    print(f"second_run_to_health_s={again:.1f}")


if __name__ == "__main__":
    main()
