"""The loop's throughput: 1,000 tickets from requirement to merged commit on real workers.

Instant scripted models (on 127.0.0.1) and a trivial Definition of Done, so what is measured
is HAAO's own orchestration: database, Celery, git worktrees and merges, sandbox start.

What the machine pays is reported beside what the workers pay: the CPU of the whole machine
(from /proc/stat: PostgreSQL, Redis, the sandboxed checks, the product owner's decisions,
kernel work), and PostgreSQL's and Redis's own. Run it on an otherwise idle machine. The
tickets can be spread over several projects of one organization (`--projects`), whose
repositories can start with many files (`--files`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pstats
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUEUES = "control,cloud,local,checks"
PER_PROPOSAL = 20  # agents.techlead.prompts.MAX_TICKETS: the most one proposal may hold
WORKER_MODE = "_worker"
STATEMENTS_VARIABLE = "HAAO_BENCH_STATEMENTS"
OTHER_THREADS = "(threads)"  # the workers' other threads: the audit sealer, heartbeats


# --- Inside a worker process: per-task timings --------------------------------------------------

def statement_shape(sql: str) -> str:
    """A statement with its values, ids and list lengths taken out, to count alike ones."""
    sql = re.sub(r"'(?:[^']|'')*'", "?", sql)
    sql = re.sub(r"%s|\b\d+\b", "?", sql)
    sql = re.sub(r"\(\s*\?(?:\s*,\s*\?)*\s*\)", "(…)", sql)
    sql = re.sub(r"(?:\(…\)\s*,\s*)+\(…\)", "(…), …", sql)
    sql = re.sub(r'"s\d+_x\d+"', "s", sql)  # savepoint names
    return re.sub(r"\s+", " ", sql).strip()


def run_worker(timings: str, profile: str, celery_args: list[str]) -> None:
    """Run a Celery worker that appends one JSON line per task: its kind, ids, wall time, CPU
    time of its thread and of the children it ran (git, bubblewrap), queries and commands,
    and the CPU the process's other threads used since the last task ended; with
    STATEMENTS_VARIABLE set, also each statement's shape, the other threads' apart."""
    import subprocess as sp
    import threading

    from celery.signals import task_postrun, task_prerun
    from django.db.backends.signals import connection_created
    from django.dispatch import receiver

    state: dict[str, Any] = {"out": None, "started": {}}
    commands: Counter[str] = Counter()
    command_cpu: defaultdict[str, float] = defaultdict(float)
    running: dict[int, str] = {}  # the commands started and not yet reaped, by pid
    reaped = {"cpu": 0.0}  # the children times at the last reap
    queries = {"count": 0, "seconds": 0.0}
    statements: Counter[str] = Counter()
    other_threads: Counter[str] = Counter()
    shapes = bool(os.environ.get(STATEMENTS_VARIABLE))
    popen_init = sp.Popen.__init__

    def counting_init(self: Any, args: Any, *rest: Any, **kwargs: Any) -> None:
        argv = [args] if isinstance(args, str | bytes) else list(args)
        name = os.path.basename(str(argv[0])) if argv else "?"
        if name == "git":  # name the subcommand, after any `-c key=value` options
            words = iter(str(arg) for arg in argv[1:])
            name = next((f"git {word}" for word in words
                         if not (word == "-c" and next(words, None)) and not
                         word.startswith("-")), "git")
        commands[name] += 1
        popen_init(self, args, *rest, **kwargs)
        running[self.pid] = name

    sp.Popen.__init__ = counting_init  # type: ignore[method-assign]

    def children_cpu() -> float:
        times = os.times()
        return times.children_user + times.children_system

    def reaped_now(pid: int) -> None:
        # A child's CPU joins the process's children times when it is reaped: what they grew
        # by since the last reap is the command just reaped (once, however it was reaped).
        name = running.pop(pid, None)
        if name is not None:
            now = children_cpu()
            command_cpu[name] += now - reaped["cpu"]
            reaped["cpu"] = now

    # Popen.wait and the sandbox (for its check) reap through os.waitpid; Popen.poll keeps
    # its own, so its exit-status handling is wrapped too.
    waitpid, handle_exit = os.waitpid, sp.Popen._handle_exitstatus  # type: ignore[attr-defined]

    def timed_waitpid(pid: int, options: int) -> tuple[int, int]:
        result = waitpid(pid, options)
        if result[0]:
            reaped_now(pid)
        return result

    def timed_exit(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = handle_exit(self, *args, **kwargs)
        reaped_now(self.pid)
        return result

    os.waitpid = timed_waitpid
    sp.Popen._handle_exitstatus = timed_exit  # type: ignore[attr-defined]

    def count_query(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            if threading.current_thread() is threading.main_thread():
                queries["count"] += 1
                queries["seconds"] += time.perf_counter() - started
                if shapes:
                    statements[statement_shape(sql)] += 1
            elif shapes:
                other_threads[statement_shape(sql)] += 1

    @receiver(connection_created, weak=False)
    def counted(connection: Any, **_: Any) -> None:
        if count_query not in connection.execute_wrappers:  # the wrapper outlives a reconnect
            connection.execute_wrappers.append(count_query)

    @task_prerun.connect
    def before(task_id: str, task: Any, **_: Any) -> None:
        commands.clear()
        command_cpu.clear()
        reaped["cpu"] = children_cpu()
        statements.clear()
        queries.update(count=0, seconds=0.0)
        times = os.times()
        state["started"][task_id] = (time.perf_counter(), time.thread_time(),
                                     times.children_user + times.children_system)

    @task_postrun.connect
    def after(task_id: str, task: Any, kwargs: dict[str, Any] | None = None, **_: Any) -> None:
        began = state["started"].pop(task_id, None)
        if began is None:
            return
        times = os.times()
        # The other threads' CPU (the audit sealer's, the attempts' heartbeats) since the last
        # task ended: the process's less this thread's, ended threads included.
        others = time.process_time() - time.thread_time()
        other_cpu, state["others"] = others - state.get("others", 0.0), others
        if state["out"] is None:
            state["out"] = open(f"{timings}.{os.getpid()}", "a", buffering=1)  # noqa: SIM115
        state["out"].write(json.dumps({
            "task": task.name, "kwargs": kwargs or {}, "other_cpu": other_cpu,
            "wall": time.perf_counter() - began[0], "cpu": time.thread_time() - began[1],
            "children_cpu": times.children_user + times.children_system - began[2],
            "queries": queries["count"], "query_seconds": queries["seconds"],
            "commands": dict(commands), "command_cpu": dict(command_cpu),
            "statements": dict(statements), "other_threads": dict(other_threads)}) + "\n")
        other_threads.clear()

    sys.argv = ["celery", *celery_args]
    from celery.__main__ import main

    if not profile:
        main()
        return
    import cProfile

    profiler = cProfile.Profile()
    try:
        profiler.runcall(main)
    except SystemExit:
        pass
    finally:
        profiler.dump_stats(profile)


# --- The benchmark ------------------------------------------------------------------------------

@dataclass
class Workers:
    """The Celery worker processes of the run, each in its own process group."""

    workdir: Path
    env: dict[str, str]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, index: int, *, concurrency: int, profile: str = "") -> None:
        log = open(self.workdir / f"worker{index}.log", "ab")  # noqa: SIM115
        pool = ["--pool", "solo"] if profile else ["--concurrency", str(concurrency)]
        self.procs.append(subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), WORKER_MODE,
             str(self.workdir / "timings"), profile, "-A", "haao", "worker", "-Q", QUEUES,
             *pool, "--loglevel", "INFO", "--without-gossip", "--without-mingle",
             "--without-heartbeat", "-n", f"bench{index}@%h"],
            cwd=ROOT, env=self.env, stdout=log, stderr=log, start_new_session=True))

    def start_beat(self) -> None:
        """Recovery and health checks, as in production (a step lost to an error is resent)."""
        log = open(self.workdir / "beat.log", "ab")  # noqa: SIM115
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "haao", "beat", "--loglevel", "INFO",
             "--schedule", str(self.workdir / "beat-schedule")],
            cwd=ROOT, env=self.env, stdout=log, stderr=log, start_new_session=True))

    def cpu_seconds(self) -> float:
        """User+system CPU of every worker process and its children, live or reaped."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self._tree():
            with contextlib.suppress(OSError, IndexError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
        return total / tick

    def _tree(self) -> list[int]:
        children: dict[int, list[int]] = defaultdict(list)
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError):
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                    children[ppid].append(int(entry.name))
        found, todo = [], [p.pid for p in self.procs if p.poll() is None]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, []))
        return found

    def stop(self) -> None:
        for process in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for process in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        self.procs.clear()

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}"
                         for path in sorted(self.workdir.glob("worker*.log")))


def machine_cpu_seconds() -> float:
    """Busy CPU time of the whole machine, every core and process (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def named_cpu_seconds(*names: str) -> float:
    """User+system CPU of every process with one of these names, and of the children they
    reaped (PostgreSQL's ended backends count in the postmaster's)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                head, rest = (entry / "stat").read_text().rsplit(")", 1)
                if head.split("(", 1)[1] in names:
                    total += sum(int(value) for value in rest.split()[11:15])
    return total / tick


def cpu_sample(workers: Workers) -> dict[str, float]:
    return {"worker": workers.cpu_seconds(), "machine": machine_cpu_seconds(),
            "postgres": named_cpu_seconds("postgres", "postmaster"),
            "redis": named_cpu_seconds("redis-server"),
            "driver": sum(os.times()[:4])}


def admin_connection(url: str) -> Any:
    import psycopg

    parts = urlsplit(url)
    return psycopg.connect(host=parts.hostname, port=parts.port or 5432,
                           user=parts.username or "postgres", password=parts.password or None,
                           dbname="postgres", autocommit=True)


@contextlib.contextmanager
def bench_database(url: str) -> Iterator[str]:
    """A fresh database of a unique name on the server of `url`, dropped afterwards (the
    server's `postgres` database is used to create and drop it)."""
    name = f"haao_bench_loop_{os.getpid()}"
    with admin_connection(url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(url)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        from django.db import connections

        connections.close_all()
        with admin_connection(url) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def empty_redis(url: str) -> Iterator[None]:
    """The Redis database must be empty (its queues are the run's own); flushed afterwards."""
    import redis

    client = redis.Redis.from_url(url)
    if client.dbsize():
        raise SystemExit(f"Redis database {url} holds {client.dbsize()} keys: pick an empty "
                         "one (e.g. /9), so no other worker takes the run's tasks.")
    try:
        yield
    finally:
        client.flushdb()


def numbered(text: str) -> int:
    found = re.search(r"Batch (\d+) of the benchmark", text)
    return int(found.group(1)) if found else 0


def proposal(batch: int, size: int) -> dict[str, Any]:
    """`size` independent tickets, each allowed to write its own file and checked by an empty
    Python program (the policy's allowed programs do not include `true`)."""
    tickets = []
    for offset in range(size):
        n = batch * PER_PROPOSAL + offset + 1
        tickets.append({
            "schema_version": "1", "title": f"Write note {n}",
            "objective": f"Create notes/{n}.txt with the line 'note {n}'.",
            "code_context": [{"path": "README.md", "line_start": 1, "line_end": 1}],
            "allowed_paths": [f"notes/{n}.txt"], "constraints": [],
            "definition_of_done": [{"name": "trivial", "command": ["python3", "--version"],
                                    "expected_exit_code": 0, "timeout_seconds": 30}],
            "dependencies": [], "complexity": 1})
    return {"tickets": tickets}


def start_models(tickets: int) -> tuple[Any, Any]:
    from sample_models import AnthropicServer, OpenAIServer
    from sample_models.anthropic import tool_use_reply
    from sample_models.base import RecordedRequest, last_user_text

    def tech_lead(request: RecordedRequest) -> Any:
        tools = {tool.get("name") for tool in request.body.get("tools") or []}
        if "propose_tickets" in tools:
            batch = numbered(json.dumps(request.body))
            size = min(PER_PROPOSAL, tickets - batch * PER_PROPOSAL)
            return tool_use_reply("propose_tickets", proposal(batch, size))
        if "submit_audit" in tools:
            return tool_use_reply("submit_audit", {"passed": True, "findings": [],
                                                   "summary": "The note is there."})
        raise AssertionError("the benchmark's tickets never escalate")

    def coder(request: RecordedRequest) -> Any:
        found = re.search(r"notes/(\d+)\.txt", last_user_text(request.body))
        n = found.group(1) if found else "0"
        return f"<<<<<<< FILE notes/{n}.txt\nnote {n}\n>>>>>>> END\n"

    cloud = AnthropicServer(api_key="sk-ant-bench", answer=tech_lead).start()
    local = OpenAIServer(flavor="lmstudio", answer=coder).start()
    return cloud, local


def grow(repository: Path, files: int) -> None:
    """Add `files` small files (100 to a folder) to the repository's default branch."""
    from agents.workspaces.git import git

    for n in range(files):
        path = repository / "data" / f"{n // 100:04d}" / f"{n:06d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"row {n}\n" * 8)
    git(["add", "-A"], cwd=repository)
    git(["-c", "user.name=Bench", "-c", "user.email=bench@bench.local", "commit", "-q", "-m",
         f"{files} data files"], cwd=repository)


def seed(workdir: Path, cloud: Any, local: Any, *, projects: int,
         files: int) -> tuple[list[Any], Any]:
    """An organization with a product owner, `projects` projects (each a copy of the sample
    repository with `files` more files), the two endpoints; WIP and endpoint concurrency high
    enough not to throttle."""
    from accounts import services as accounts
    from accounts.models import User
    from agents.pricing import CURRENT_SONNET
    from agents.services import endpoint_create
    from agents.workspaces.samples import SAMPLE_PROJECT, git_checkout
    from haao.audit import Actor
    from policies.services import policy_update
    from tickets.models import Project
    from tickets.services import project_create, project_grant_set
    from tickets.services.projects import project_repository_set

    admin = User.objects.create_user("admin@bench.local", secrets.token_urlsafe(), name="Admin")
    owner = User.objects.create_user("po@bench.local", secrets.token_urlsafe(), name="PO")
    organization = accounts.organization_create(name="Bench", slug="bench", creator=admin)
    accounts.membership_add(organization=organization, user=owner, role="product_owner",
                            actor=admin, via="bench")
    created = []
    for index in range(projects):
        key = "BEN" if projects == 1 else f"BE{chr(ord('A') + index)}"
        project = project_create(organization=organization, key=key, name=f"Bench {key}",
                                 actor=admin)
        repository = git_checkout(SAMPLE_PROJECT, workdir / f"origin-{key}")
        if files:
            grow(repository, files)
        project_repository_set(project=project, repository=str(repository), actor=admin)
        project_grant_set(organization=organization, project=project, user=owner,
                          grants={"approve"}, actor=admin)
        policy_update(organization=organization, project=project, actor=Actor.of(admin),
                      changes={"wip_limit": 100})  # the rule's maximum
        created.append(project)
    endpoint_create(organization=organization, actor=admin, values={
        "name": "Coder", "kind": "openai_compatible", "flavor": "lm_studio",
        "base_url": local.url, "model": "bench-coder", "role": "coder", "max_concurrency": 64,
        "price_input": "0", "price_output": "0"})
    endpoint_create(organization=organization, actor=admin, values={
        "name": "Tech Lead", "kind": "anthropic", "base_url": cloud.url,
        "model": CURRENT_SONNET, "role": "tech_lead", "max_concurrency": 64},
        api_key="sk-ant-bench")
    return [Project.objects.get(pk=project.pk) for project in created], owner


def wait(condition: Any, *, timeout: float, what: str, workers: Workers) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"Timed out waiting for {what}.\n{workers.logs()}")
        time.sleep(0.1)


def drive(projects: list[Any], owner: Any, *, tickets: int, timeout: float,
          workers: Workers) -> dict[str, Any]:
    """Requirements → proposals (spread over the projects in turn), then approve all and
    accept each ticket as it awaits."""
    from django.db import OperationalError
    from django.db.models import Max

    from tickets.models import Requirement, RequirementStatus, Ticket, TicketStatus
    from tickets.services import requirement_approve, requirement_create, ticket_accept

    batches = (tickets + PER_PROPOSAL - 1) // PER_PROPOSAL
    started = time.perf_counter()
    for batch in range(batches):
        requirement_create(project=projects[batch % len(projects)], actor=owner,
                           title=f"Notes, batch {batch + 1}",
                           text=f"Batch {batch} of the benchmark: one note file per ticket.")

    def proposed() -> bool:
        failed = Requirement.objects.filter(status=RequirementStatus.FAILED).first()
        if failed is not None:
            raise SystemExit(f"Decomposition of {failed.key} failed: {failed.failure}")
        return not Requirement.objects.exclude(status=RequirementStatus.PROPOSED).exists()

    wait(proposed, timeout=timeout, what="the proposals", workers=workers)
    decomposed = time.perf_counter() - started

    cpu_before = cpu_sample(workers)
    from django.utils import timezone

    approved_at = timezone.now()
    deadlocks = 0

    def as_owner(action: Any, **kwargs: Any) -> None:
        """The product owner's decision; a deadlock with a worker rolls it back: decide again."""
        nonlocal deadlocks
        for _ in range(20):
            try:
                action(actor=owner, **kwargs)
                return
            except OperationalError as error:
                if "deadlock" not in str(error):
                    raise
                deadlocks += 1
        raise SystemExit(f"{action.__name__} deadlocked 20 times in a row")

    for requirement in Requirement.objects.filter(project__in=projects).order_by("created_at"):
        as_owner(requirement_approve, requirement=requirement)
    deadline = time.monotonic() + timeout
    unsealed_ms: list[float] = []
    sampled = 0.0
    while True:
        if time.monotonic() - sampled >= UNSEALED_SAMPLE_SECONDS:
            sampled = time.monotonic()
            unsealed_ms.append(oldest_unsealed_ms())
        for ticket in (Ticket.objects.filter(project__in=projects,
                                             status=TicketStatus.AWAITING_ACCEPTANCE)
                       .select_related("project__organization")):
            as_owner(ticket_accept, ticket=ticket)
        merged = Ticket.objects.filter(project__in=projects).exclude(merged_commit="").count()
        if merged == tickets:
            break
        stuck = Ticket.objects.filter(project__in=projects, status=TicketStatus.BLOCKED).first()
        if stuck is not None:
            raise SystemExit(f"{stuck.key} is blocked: {stuck.block_reason}\n{workers.logs()}")
        if time.monotonic() > deadline:
            raise SystemExit(f"Timed out: {merged} of {tickets} merged.\n{workers.logs()}")
        time.sleep(0.05)
    cpu_after = cpu_sample(workers)
    last = Ticket.objects.filter(project__in=projects).aggregate(last=Max("merged_at"))["last"]
    cpu = {name: cpu_after[name] - cpu_before[name] for name in cpu_before}
    return {"decompose_seconds": decomposed, "wall": (last - approved_at).total_seconds(),
            "worker_cpu": cpu["worker"], "cpu": cpu, "approved_at": approved_at,
            "accept_deadlocks": deadlocks, "unsealed_ms": unsealed_ms}


# How often the driver reads the unsealed window: rarely enough that its two queries cost the
# machine next to nothing.
UNSEALED_SAMPLE_SECONDS = 0.5


def oldest_unsealed_ms() -> float:
    """How long the oldest audit row no sealer has numbered yet has waited (0 when none
    waits): the chain's unsealed window, as /metrics exports it."""
    from django.db.models import Min
    from django.utils import timezone

    from haao.models import AuditEvent

    oldest = AuditEvent.objects.filter(seq__isnull=True).aggregate(t=Min("created_at"))["t"]
    return (timezone.now() - oldest).total_seconds() * 1000 if oldest else 0.0


def per_ticket(workdir: Path, projects: list[Any], approved_at: datetime) -> dict[str, Any]:
    """Sum each ticket's task timings (dispatch shared evenly); subtract model latency and
    the checks' own run time from the wall-time figure."""
    from agents.models import ModelCall
    from haao.models import AuditEvent, ProgressEvent
    from tickets.models import Attempt, CheckResult, Ticket

    rows = [json.loads(line) for path in workdir.glob("timings.*")
            for line in path.read_text().splitlines()]
    ticket_of = {str(a): str(t) for a, t in Attempt.objects.filter(
                 ticket__project__in=projects)
                 .values_list("pk", "ticket_id")}
    tickets = [str(pk) for pk in Ticket.objects.filter(project__in=projects)
               .values_list("pk", flat=True)]
    cpu: dict[str, float] = defaultdict(float)
    wall: dict[str, float] = defaultdict(float)
    shared = {"cpu": 0.0, "wall": 0.0}
    by_task: dict[str, Counter[str]] = defaultdict(Counter)
    seconds: dict[str, defaultdict[str, float]] = defaultdict(lambda: defaultdict(float))
    commands: Counter[str] = Counter()
    command_cpu: defaultdict[str, float] = defaultdict(float)
    statements: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        name = row["task"].removeprefix("haao.")
        statements[name].update(row.get("statements", {}))
        statements[OTHER_THREADS].update(row.get("other_threads", {}))
        if name != "decompose":  # other threads' CPU is the tickets' work, shared evenly
            by_task.setdefault(OTHER_THREADS, Counter())
            seconds[OTHER_THREADS]["cpu"] += row["other_cpu"]
            shared["cpu"] += row["other_cpu"]
        task_cpu = row["cpu"] + row["children_cpu"]
        by_task[name]["count"] += 1
        by_task[name]["queries"] += row["queries"]
        for key in ("wall", "cpu", "children_cpu", "query_seconds"):
            seconds[name][key] += row[key]
        commands.update(row["commands"])
        for command, spent in row.get("command_cpu", {}).items():
            command_cpu[command] += spent
        if name == "decompose":
            continue  # before the measured window
        kwargs = row["kwargs"]
        ticket = kwargs.get("ticket_id") or ticket_of.get(kwargs.get("attempt_id", ""))
        if ticket is None:
            shared["cpu"] += task_cpu
            shared["wall"] += row["wall"]
        else:
            cpu[ticket] += task_cpu
            wall[ticket] += row["wall"]
    n = len(tickets)
    latency: dict[str, float] = defaultdict(float)
    for ticket, ms in ModelCall.objects.filter(ticket__project__in=projects,
                                               role__in=("code", "audit")
                                               ).values_list("ticket_id", "latency_ms"):
        latency[str(ticket)] += ms / 1000
    checks: dict[str, float] = defaultdict(float)
    for ticket, ms in CheckResult.objects.filter(
            attempt__ticket__project__in=projects).values_list("attempt__ticket_id",
                                                              "duration_ms"):
        checks[str(ticket)] += ms / 1000
    cpu_ms = [1000 * (cpu[t] + shared["cpu"] / n) for t in tickets]
    wall_ms = [1000 * (wall[t] + shared["wall"] / n - latency[t] - checks[t]) for t in tickets]
    events = AuditEvent.objects.filter(created_at__gte=approved_at).count()
    progress = ProgressEvent.objects.filter(created_at__gte=approved_at).count()
    return {"cpu_ms": cpu_ms, "wall_ms": wall_ms, "by_task": by_task, "seconds": seconds,
            "commands": commands, "command_cpu": command_cpu, "statements": statements,
            "events_per_ticket": events / n,
            "progress_events_per_ticket": progress / n,
            "model_latency_ms": 1000 * statistics.median(latency[t] for t in tickets),
            "check_ms": 1000 * statistics.median(checks[t] for t in tickets)}


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def report(args: argparse.Namespace, run: dict[str, Any], split: dict[str, Any]) -> None:
    n = args.tickets
    print(f"\nWhere the worker time goes (per ticket; {n} tickets):")
    print(f"{'task':<12}{'runs':>6}{'wall ms':>10}{'cpu ms':>9}{'child ms':>10}"
          f"{'queries':>9}{'db ms':>8}")
    for name, counts in sorted(split["by_task"].items()):
        s = split["seconds"][name]
        print(f"{name:<12}{counts['count']:>6}{1000 * s['wall'] / n:>10.1f}"
              f"{1000 * s['cpu'] / n:>9.1f}{1000 * s['children_cpu'] / n:>10.1f}"
              f"{counts['queries'] / n:>9.1f}{1000 * s['query_seconds'] / n:>8.1f}")
    print("commands per ticket: " + ", ".join(
        f"{name}={count / n:.1f}" for name, count in split["commands"].most_common(12)))
    spent = sorted(split["command_cpu"].items(), key=lambda item: -item[1])
    print(f"their CPU per ticket ({1000 * sum(s for _, s in spent) / n:.1f} ms): " + ", ".join(
        f"{name}={1000 * seconds / n:.1f}" for name, seconds in spent[:12]))
    for name, shapes in sorted(split["statements"].items()):
        if shapes:
            print(f"\nStatements per ticket, {name} ({sum(shapes.values()) / n:.1f}):")
            for shape, count in shapes.most_common(args.statements):
                print(f"{count / n:>6.2f}  {shape[:150]}")
    if args.profile:
        print(f"\nProfile of worker 1 (--pool solo): {args.profile}")
        stats = pstats.Stats(args.profile)
        stats.sort_stats("cumulative").print_stats(r"/(agents|tickets|accounts)/", 30)
        stats.sort_stats("tottime").print_stats(15)
    print()
    print(f"tickets={n}")
    print(f"workers={args.workers}x--concurrency={args.concurrency}")
    print(f"projects={args.projects}")
    print(f"repository_files={args.files}")
    print(f"decompose_seconds={run['decompose_seconds']:.1f}")
    print(f"wall_seconds={run['wall']:.1f}")
    print(f"tickets_per_second={n / run['wall']:.2f}")
    print(f"worker_cpu_seconds={run['worker_cpu']:.1f}")
    print(f"worker_cpu_ms_per_ticket={1000 * run['worker_cpu'] / n:.1f}")
    print(f"machine_cpu_ms_per_ticket={1000 * run['cpu']['machine'] / n:.1f}")
    print(f"postgres_cpu_ms_per_ticket={1000 * run['cpu']['postgres'] / n:.1f}")
    print(f"redis_cpu_ms_per_ticket={1000 * run['cpu']['redis'] / n:.1f}")
    print(f"driver_cpu_ms_per_ticket={1000 * run['cpu']['driver'] / n:.1f}")
    print(f"machine_busy_fraction={run['cpu']['machine'] / run['wall'] / os.cpu_count():.2f}")
    print(f"task_cpu_ms_per_ticket_median={statistics.median(split['cpu_ms']):.1f}")
    print(f"task_cpu_ms_per_ticket_p95={percentile(split['cpu_ms'], 0.95):.1f}")
    print(f"task_wall_ms_per_ticket_median={statistics.median(split['wall_ms']):.1f}")
    print(f"model_latency_ms_per_ticket_median={split['model_latency_ms']:.1f}")
    print(f"check_ms_per_ticket_median={split['check_ms']:.1f}")
    print(f"audit_events_per_ticket={split['events_per_ticket']:.1f}")
    print(f"unsealed_oldest_ms_p95={percentile(run['unsealed_ms'], 0.95):.0f}")
    print(f"unsealed_oldest_ms_max={max(run['unsealed_ms']):.0f}")
    print(f"progress_events_per_ticket={split['progress_events_per_ticket']:.1f}")
    print(f"accept_deadlocks={run['accept_deadlocks']}")
    print(f"worker_deadlocks={run['worker_deadlocks']}")
    print(f"worker_task_errors={run['worker_task_errors']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tickets", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=1, help="pool size of each")
    parser.add_argument("--projects", type=int, default=1,
                        help="projects of the one organization the tickets are spread over")
    parser.add_argument("--files", type=int, default=0,
                        help="files added to each project's repository before the run")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per phase")
    parser.add_argument("--profile", default="", help="run worker 1 with --pool solo under "
                        "cProfile and write its stats to this file")
    parser.add_argument("--statements", type=int, default=0, metavar="N",
                        help="list each task's N most frequent statements (and the other "
                        "threads', e.g. the audit sealer's) per ticket")
    parser.add_argument("--logs", default="",
                        help="copy the worker logs and per-task timings to this folder")
    args = parser.parse_args()
    if args.tickets < 1:
        parser.error("--tickets must be at least 1")
    if not 1 <= args.projects <= 26:
        parser.error("--projects must be between 1 and 26")
    if args.files < 0:
        parser.error("--files must not be negative")
    if args.statements < 0:
        parser.error("--statements must not be negative")
    server_url, redis_url = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    if not server_url.startswith(("postgres://", "postgresql://")) or not redis_url:
        raise SystemExit("Set DATABASE_URL (a PostgreSQL server; the user needs CREATEDB) and "
                         "REDIS_URL (an empty Redis database, e.g. redis://127.0.0.1:6379/9).")
    from agents.sandbox import sandbox_available

    if not sandbox_available():
        raise SystemExit("bubblewrap cannot start a sandbox here; the checks need it")
    workdir = Path(tempfile.mkdtemp(prefix="haao-bench-loop-"))
    try:
        with empty_redis(redis_url), bench_database(server_url) as database_url:
            measure(args, workdir, database_url)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def django_migrated(workdir: Path, database_url: str) -> None:
    """Set up Django on the benchmark's database, production-like (DEBUG off: it would keep
    every query in memory), in this process and the workers it starts; migrate it."""
    os.environ.update({
        "DATABASE_URL": database_url, "DEBUG": "false", "HAAO_READ_DOTENV": "false",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "") if len(os.environ.get(
            "SECRET_KEY", "")) >= 50 else secrets.token_urlsafe(64),
        "HAAO_ENDPOINT_ALLOWLIST": "127.0.0.1", "HAAO_DATA_DIR": str(workdir / "data"),
        "HAAO_WORKSPACE_ROOT": str(workdir / "workspaces"), "PYTHONUNBUFFERED": "1",
        "DJANGO_SETTINGS_MODULE": "haao.settings"})
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def measure(args: argparse.Namespace, workdir: Path, database_url: str) -> None:
    django_migrated(workdir, database_url)
    cloud, local = start_models(args.tickets)
    workers = Workers(workdir=workdir, env={**os.environ, STATEMENTS_VARIABLE: "1"}
                      if args.statements else dict(os.environ))
    try:
        projects, owner = seed(workdir, cloud, local, projects=args.projects,
                               files=args.files)
        for index in range(1, args.workers + 1):
            workers.start(index, concurrency=args.concurrency,
                          profile=args.profile if index == 1 else "")
        workers.start_beat()
        run = drive(projects, owner, tickets=args.tickets, timeout=args.timeout,
                    workers=workers)
        workers.stop()  # flushes the timings and the profile
        logs = [path.read_text(errors="replace") for path in workdir.glob("*.log")]
        run["worker_deadlocks"] = sum(log.count("deadlock detected\n") for log in logs)
        run["worker_task_errors"] = sum(len(re.findall(r"ERROR/.*Task haao\.\S+ raised", log))
                                        for log in logs)
        report(args, run, per_ticket(workdir, projects, run["approved_at"]))
    finally:
        workers.stop()
        if args.logs:
            Path(args.logs).mkdir(parents=True, exist_ok=True)
            for path in [*workdir.glob("*.log"), *workdir.glob("timings.*")]:
                shutil.copy(path, Path(args.logs) / path.name)
        cloud.stop()
        local.stop()


if __name__ == "__main__":
    if sys.argv[1:2] == [WORKER_MODE]:
        run_worker(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        main()
