"""An operator's worst moment, measured: every Celery worker process of a running `make run`
is killed with SIGKILL a moment into a ticket's first attempt, and HAAO is started again as a
supervisor would. How long until the ticket waits at Gate 2 again, and was anything lost or
done twice? Prints `name=value` lines last.

    python bench/recovery.py [--kill-after 0.7] [--redis redis://127.0.0.1:6379/9]

What runs is `make run`'s: `manage.py serve` (web, one worker, beat, the sample models) on
embedded defaults (SQLite, the SQLite broker) in a scratch data directory, with every HAAO
setting at its default; `--redis` puts the broker and cache on Redis instead. The sample
models' demo task is used: the coder's first answer fails the project's tests, its retry
passes, the Tech Lead audits. The worker is killed `--kill-after` seconds after the first
attempt starts; `serve` then stops the rest (it stops when a part of it dies) and is started
again at once.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from first_run import clean_env, free_port, healthy

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_SECONDS = 900


def environment(data: Path, port: int, redis: str) -> dict[str, str]:
    """`make run`'s environment: its .env's fresh secrets, the sample models, this virtualenv
    as the checks' toolchain; nothing else set."""
    from cryptography.fernet import Fernet

    env = clean_env(port)
    env.update({"HAAO_READ_DOTENV": "false", "HAAO_DATA_DIR": str(data),
                "SECRET_KEY": "recovery-bench-" + os.urandom(24).hex(),
                "HAAO_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
                "HAAO_SAMPLE_MODELS": "true", "HAAO_SAMPLE_MODELS_PORT": str(free_port()),
                "HAAO_CHECK_TOOLCHAIN": sys.prefix,
                "DJANGO_SETTINGS_MODULE": "haao.settings"})
    if redis:
        env["REDIS_URL"] = redis
    return env


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)


def serve(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, "manage.py", "serve", "--port", env["PORT"]],
                                   cwd=ROOT, env=env, stdout=out, stderr=out,
                                   start_new_session=True)
    started = time.monotonic()
    while not healthy(int(env["PORT"])):
        if process.poll() is not None or time.monotonic() - started > TIMEOUT_SECONDS:
            raise SystemExit(f"serve did not come up; its log:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    return process


def worker_groups(serve_pid: int) -> list[int]:
    """The process groups of serve's Celery workers (each is its own group: the leader and
    its pool's processes)."""
    groups = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == serve_pid and b"celery" in command and b"worker" in command:
            groups.append(os.getpgid(int(entry.name)))
    return groups


def until(condition: Any, what: str, log: Path) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > TIMEOUT_SECONDS:
            raise SystemExit(f"timed out waiting for {what}; serve's log:\n"
                             f"{log.read_text()[-3000:]}")
        time.sleep(0.1)
    return time.monotonic()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kill-after", type=float, default=0.7)
    parser.add_argument("--redis", default="", help="broker and cache on this Redis database")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="haao-recovery-") as tmp:
        data = Path(tmp) / "var"
        env = environment(data, free_port(), args.redis)
        log = Path(tmp) / "serve.log"
        manage(env, "migrate", "--noinput")
        manage(env, "createcachetable")
        manage(env, "seed_demo", "--no-logins")
        os.environ.update(env)
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        measure(env, log, kill_after=args.kill_after)


def measure(env: dict[str, str], log: Path, *, kill_after: float) -> None:
    from django.utils import timezone

    from accounts.models import User
    from agents.models import ModelCall
    from tickets.models import Attempt, Project, Requirement, Ticket
    from tickets.services import requirement_approve, requirement_create

    process = serve(env, log)
    owner = User.objects.get(email="po@demo.haao.local")
    project = Project.objects.get(organization__slug="demo")
    requirement = requirement_create(project=project, actor=owner,
                                     title="Invoices round half a cent the wrong way",
                                     text="Totals of 0.125 must round to 0.13.")
    until(lambda: Requirement.objects.get(pk=requirement.pk).status == "proposed",
          "the proposal", log)
    [ticket] = requirement_approve(requirement=Requirement.objects.get(pk=requirement.pk),
                                   actor=owner)
    until(lambda: Attempt.objects.filter(ticket=ticket).exists(), "the first attempt", log)
    first = Attempt.objects.get(ticket=ticket, number=1)
    time.sleep(max(0.0, kill_after - (timezone.now() - first.started_at).total_seconds()))
    groups = worker_groups(process.pid)
    for group in groups:
        os.killpg(group, signal.SIGKILL)
    killed = time.monotonic()
    first.refresh_from_db()
    stage_at_kill = first.stage
    process.wait(timeout=60)  # serve stops the rest once its worker is gone
    restarted = time.monotonic()
    process = serve(env, log)
    try:
        moved = until(lambda: Attempt.objects.filter(pk=first.pk).exclude(
            stage=stage_at_kill, outcome="running").exists(), "the first attempt to move", log)
        gate_2 = until(lambda: Ticket.objects.get(pk=ticket.pk).status in (
            "awaiting_acceptance", "blocked"), "Gate 2", log)
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=60)
    final = Ticket.objects.get(pk=ticket.pk)
    attempts = list(Attempt.objects.filter(ticket=ticket).order_by("number"))
    if final.status != "awaiting_acceptance":
        raise SystemExit(f"{final.key} ended {final.status}: {final.block_reason}")
    calls = {attempt.number: ModelCall.objects.filter(attempt=attempt, role="code").count()
             for attempt in attempts}
    print(f"worker_groups_killed={len(groups)}")
    print(f"first_attempt_stage_at_kill={stage_at_kill}")
    print(f"restart_seconds={restarted - killed:.1f}")
    print(f"first_attempt_moved_after_restart_s={moved - restarted:.1f}")
    print(f"restart_to_gate_2_s={gate_2 - restarted:.1f}")
    print(f"attempts={','.join(f'{a.number}:{a.outcome}' for a in attempts)}")
    print(f"coder_calls_per_attempt={','.join(f'{n}:{c}' for n, c in calls.items())}")
    print(f"first_attempt_deliveries={attempts[0].deliveries}")


if __name__ == "__main__":
    main()
