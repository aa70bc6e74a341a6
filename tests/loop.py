"""Real Celery worker and beat processes for the loop's tests, on the test database.

The workers are separate processes: they share the test database (PostgreSQL; an in-memory
SQLite test database cannot be shared) and this test process's Redis database
(tests/environment.py gives each xdist worker its own), and call the scripted model
servers that run in this process on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from amqp.exceptions import ChannelError
from django.db import connection

from haao.audit import Actor, seal, unsealed_waiting
from haao.web import web_command
from policies.services import policy_update
from sample_models import AnthropicServer, OpenAIServer, RecordedRequest
from sample_models.anthropic import tool_use_reply
from sample_models.rounding import RIGHT_FIX
from tests.fixtures import coder_endpoint, tech_lead_endpoint
from tickets import services
from tickets.models import Project, Requirement, Ticket
from tickets.selectors import StreamEvent, ticket_events

ROOT = Path(__file__).resolve().parents[1]
ALL_QUEUES = "control,cloud,local,checks"


def require_shared_database() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("real workers share the test database: run against PostgreSQL "
                    "(scripts/test.sh does; the embedded demo is tested in test_demo.py)")


def database_url() -> str:
    db = connection.settings_dict
    return (f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/"
            f"{db['NAME']}")


@dataclass
class Processes:
    """Worker and beat processes started for one test; `kill` and `start` control them."""

    workdir: Path
    env_extra: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        env = {**os.environ, "DATABASE_URL": database_url(),
               "HAAO_ENDPOINT_ALLOWLIST": "127.0.0.1",
               "HAAO_WORKSPACE_ROOT": str(self.workdir / "workspaces"),
               "HAAO_DATA_DIR": str(self.workdir / "data"),
               "HAAO_ATTEMPT_LEASE_SECONDS": "6", "HAAO_RECOVERY_INTERVAL": "2",
               "HAAO_RESEND_AFTER_SECONDS": "10",
               "HAAO_ENDPOINT_HEALTH_INTERVAL": "2", "HAAO_ENDPOINT_WAIT_SECONDS": "1",
               "HAAO_MAX_DELIVERIES": "3", "PYTHONUNBUFFERED": "1",
               # The sample project's checks run with this interpreter (it has pytest).
               "HAAO_CHECK_TOOLCHAIN": ",".join(sorted({sys.prefix, sys.base_prefix}))}
        env.update(self.env_extra)
        return env

    def start_worker(self, name: str = "worker", *, queues: str = ALL_QUEUES,
                     concurrency: int = 2, env: dict[str, str] | None = None) -> None:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "haao", "worker", "-Q", queues,
             "--concurrency", str(concurrency), "--loglevel", "INFO", "--without-gossip",
             "--without-mingle", "--without-heartbeat", "-n", f"{name}@%h"],
            cwd=ROOT, env={**self.env(), **(env or {})}, stdout=log, stderr=log,
            start_new_session=True)

    def start_beat(self) -> None:
        log = open(self.workdir / "beat.log", "ab")  # noqa: SIM115
        self.procs["beat"] = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "haao", "beat", "--loglevel", "INFO",
             "--schedule", str(self.workdir / "beat-schedule")],
            cwd=ROOT, env=self.env(), stdout=log, stderr=log, start_new_session=True)

    def start_web(self) -> str:
        """The portal and its WebSockets, served as in production (haao.web) on a free
        loopback port; returns its base URL once it answers."""
        import socket
        import urllib.error
        import urllib.request

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        log = open(self.workdir / "web.log", "ab")  # noqa: SIM115
        self.procs["web"] = subprocess.Popen(
            web_command("127.0.0.1", port),
            # Its own address is HAAO_BASE_URL: live sockets open only from that origin.
            cwd=ROOT, env={**self.env(), "HAAO_HTTPS": "false", "DEBUG": "false",
                           "ALLOWED_HOSTS": "127.0.0.1,localhost",
                           "HAAO_BASE_URL": f"http://127.0.0.1:{port}"},
            stdout=log, stderr=log, start_new_session=True)
        url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    return True
            except urllib.error.HTTPError:
                return True  # it answers (a 503 names a part that is down)
            except OSError:
                return False

        wait_for(answers, timeout=60, what="the web process to answer", processes=self)
        return url

    def kill(self, name: str = "worker") -> None:
        """kill -9 the process and every child it forked (the prefork pool)."""
        process = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self) -> None:
        for name in list(self.procs):
            process = self.procs[name]
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for name in list(self.procs):
            process = self.procs.pop(name)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-6000:]}"
                         for path in sorted(self.workdir.glob("*.log")))


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    require_shared_database()
    running = Processes(workdir=tmp_path)
    try:
        yield running
    finally:
        running.stop()


def wait_for(check: Callable[[], Any], *, timeout: float = 90, what: str = "",
             processes: Processes | None = None, interval: float = 0.2) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` (and the logs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    logs = processes.logs() if processes else ""
    pytest.fail(f"timed out after {timeout:g} s waiting for {what or check}\n{state()}\n{logs}")


def workers_idle() -> bool:
    """No task waits in a queue, and the workers run none and hold none for later (what
    `celery inspect active reserved scheduled` says); False while no worker answers."""
    from haao.celery import app

    with app.connection_for_write() as connection:
        for queue in ALL_QUEUES.split(","):
            # A queue nobody has sent to yet does not exist, and holds nothing.
            with contextlib.suppress(ChannelError), connection.channel() as channel:
                if channel.queue_declare(queue, passive=True).message_count:
                    return False
    inspect = app.control.inspect(timeout=1.0)
    for replies in (inspect.active(), inspect.reserved(), inspect.scheduled()):
        if not replies or any(replies.values()):
            return False
    return True


def state() -> str:
    """Every ticket and attempt, for a failure message."""
    from tickets.models import Attempt, Ticket

    lines = [f"{t.key} {t.status} retries_left={t.retries_left} {t.block_reason[:300]}"
             for t in Ticket.objects.select_related("project")]
    lines += [f"  attempt {a.ticket_id} #{a.number} {a.executor} {a.stage} {a.outcome} "
              f"deliveries={a.deliveries} lost={a.lost}: {a.error[:400]}"
              for a in Attempt.objects.order_by("ticket", "number")]
    return "\n".join(lines)


def workspace_root(processes: Processes) -> Path:
    return Path(processes.env()["HAAO_WORKSPACE_ROOT"])


# --- The sample project and scripted model servers most loop tests use -----------------------

@pytest.fixture
def repo(tmp_path: Path) -> Path:
    from tests.samples import SAMPLE_PROJECT, git_checkout

    return git_checkout(SAMPLE_PROJECT, tmp_path / "invoice-calc")


@pytest.fixture
def project(cast: Any, repo: Path) -> Any:
    from haao.audit import Actor
    from policies.services import policy_update
    from tests.factories import ProjectFactory
    from tickets import services

    project = ProjectFactory(organization=cast.org, key="INV", name="Invoice calc",
                             repository=str(repo), default_branch="main")
    policy_update(organization=cast.org, project=project, changes={"wip_limit": 2},
                  actor=Actor.of(cast.admin))
    services.project_grant_set(organization=cast.org, project=project,
                               user=cast.product_owner, grants={"approve"}, actor=cast.admin)
    return project


@pytest.fixture
def coder() -> Iterator[Any]:
    from sample_models import OpenAIServer

    with OpenAIServer(flavor="lmstudio") as server:
        yield server


@pytest.fixture
def cloud() -> Iterator[Any]:
    from sample_models import AnthropicServer

    with AnthropicServer(api_key="sk-ant-test") as server:
        yield server


# --- Driving the loop: scripted models, endpoints, requirements and waits -------------------

class Script:
    """Answers in order, the last one repeated; thread-safe (the server answers in threads)."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.lock = threading.Lock()
        self.calls = 0

    def next(self) -> Any:
        with self.lock:
            answer = self.answers[min(self.calls, len(self.answers) - 1)]
            self.calls += 1
        return answer


class TechLead:
    """Proposes the given tickets, audits with the given verdicts, solves with given edits."""

    def __init__(self, *, tickets: list[dict[str, Any]], verdicts: Script | None = None,
                 solutions: Script | None = None) -> None:
        self.tickets = tickets
        self.verdicts = verdicts or Script({"passed": True, "summary": "Meets the DoD.",
                                            "findings": []})
        self.solutions = solutions or Script(RIGHT_FIX)

    def __call__(self, request: RecordedRequest) -> Any:
        tools = {tool.get("name") for tool in request.body.get("tools") or []}
        if "propose_tickets" in tools:
            return tool_use_reply("propose_tickets", {"tickets": self.tickets})
        if "submit_audit" in tools:
            return tool_use_reply("submit_audit", self.verdicts.next())
        return self.solutions.next()


def kinds(server: AnthropicServer) -> list[str]:
    """What each request to the Tech Lead was: propose, audit or solve."""
    found = []
    for request in server.requests:
        if request.path != "/v1/messages":
            continue
        tools = {tool.get("name") for tool in request.body.get("tools") or []}
        found.append("propose" if "propose_tickets" in tools else
                     "audit" if "submit_audit" in tools else "solve")
    return found


def add_endpoints(cast: Any, coder: OpenAIServer | None, cloud: AnthropicServer | None,
                  **coder_values: Any) -> None:
    if coder is not None:
        coder_endpoint(cast.org, cast.admin, base_url=coder.url, **coder_values)
    if cloud is not None:
        tech_lead_endpoint(cast.org, cast.admin, base_url=cloud.url)


def submit(cast: Any, project: Project) -> Requirement:
    return services.requirement_create(
        project=project, actor=cast.product_owner, title="Round totals correctly",
        text="Invoice totals must round half a cent up, like our accountants do.")


def proposed(cast: Any, project: Project, processes: Processes) -> Requirement:
    """A submitted requirement, once the Tech Lead's proposal awaits Gate 1."""
    requirement = submit(cast, project)
    wait_for(lambda: Requirement.objects.get(pk=requirement.pk).status == "proposed",
             what="the Tech Lead's proposal", processes=processes)
    requirement.refresh_from_db()
    return requirement


def approved_ticket(cast: Any, project: Project, processes: Processes) -> Ticket:
    requirement = proposed(cast, project, processes)
    [ticket] = services.requirement_approve(requirement=requirement, actor=cast.product_owner)
    return ticket


def status_of(ticket: Ticket) -> Callable[[], str]:
    return lambda: Ticket.objects.get(pk=ticket.pk).status


def events(ticket: Ticket) -> list[StreamEvent]:
    """The ticket's stream as its page and socket show it: audit and progress events, once
    the rows the workers committed are sealed (a worker's sealer thread gathers them for a
    moment first, haao.audit.BackgroundSealer)."""
    ticket = Ticket.objects.select_related("project__organization").get(pk=ticket.pk)
    sealed(ticket.organization_id)
    return ticket_events(ticket=ticket, after=0, limit=100_000)


def sealed(organization_id: Any, timeout: float = 10) -> None:
    """Until every committed row of the organization is sealed. A seal here returns at once
    when a worker's sealer holds the chain head, before that sealer has committed."""
    deadline = time.monotonic() + timeout
    while True:
        seal(organization_id)
        if not unsealed_waiting(organization_id) or time.monotonic() > deadline:
            return
        time.sleep(0.05)


def chats(server: OpenAIServer) -> list[RecordedRequest]:
    return [r for r in server.requests if r.path == "/v1/chat/completions"]


def approve(cast: Any, project: Project, processes: Processes, *,
            retry_budget: int | None = None) -> list[Ticket]:
    """Submit the requirement, wait for the proposal, optionally lower the project's retry
    budget (as an admin could in its policy), and approve it."""
    requirement = proposed(cast, project, processes)
    if retry_budget is not None:
        policy_update(organization=cast.org, project=project, actor=Actor.of(cast.admin),
                      changes={"retry_budget": retry_budget})
    return services.requirement_approve(requirement=requirement, actor=cast.product_owner)


def reach(ticket: Ticket, status: str, processes: Processes, timeout: float = 90) -> Ticket:
    wait_for(lambda: status_of(ticket)() == status, what=f"{ticket.key} to be {status}",
             processes=processes, timeout=timeout)
    return Ticket.objects.get(pk=ticket.pk)
