"""Live events: from a worker's commit to 200 open browser sockets, on Redis and PostgreSQL.

The web process serves `haao.asgi` as `manage.py serve` runs it (haao.web) with the Redis
channel layer; `--clients` WebSocket clients (websockets' sans-I/O protocol on bare asyncio
transports, in this process) follow one project's stream as one logged-in member. A
separate writer process, like a Celery worker, calls `audit_record` in its own transactions
and notes the monotonic time each commit returned; every client notes when each event
arrived. Two phases:

- latency: `--events` events at `--rate` per second; p50/p95 of receive - commit over every
  (client, event) pair;
- throughput: `--burst` events written as fast as one writer can; events/s = burst / (last
  event received by the last client - first commit).

The clients ask for batched messages (`batch=1`), as the portal's live.js does;
`--per-event` measures sockets that take one message per event.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.loop import admin_connection, empty_redis
from haao.web import web_command

ROOT = Path(__file__).resolve().parents[1]

# Sockets opened before waiting for them to catch up.
CONNECT_BATCH = 100
WRITER_MODE = "_writer"
SEED_MODE = "_seed"
ORG, KEY = "bench", "LIVE"


# --- The writer process: a worker's audit events ----------------------------------------------

def run_writer(count: int, rate: float, out: str) -> None:
    import django

    django.setup()
    from django.db import transaction

    from accounts.models import Organization
    from haao.audit import SYSTEM, audit_record
    from tickets import live
    from tickets.models import Project

    org = Organization.objects.get(slug=ORG)
    project = Project.objects.for_org(org).get(key=KEY)
    commits: list[tuple[int, float]] = []
    interval = 1 / rate if rate > 0 else 0.0
    started = time.monotonic()
    for n in range(count):
        if interval:
            time.sleep(max(0.0, started + n * interval - time.monotonic()))
        with transaction.atomic():
            event = audit_record(organization=org, actor=SYSTEM, type="bench.step",
                                 target=project, data={"n": n}, project_id=project.pk)
        committed = time.monotonic()  # and sealed: the commit's own sealer numbered it
        event.refresh_from_db(fields=["seq"])
        commits.append((event.seq or 0, committed))
    live.notifier().flush(10)
    Path(out).write_text(json.dumps(commits))


# --- The clients --------------------------------------------------------------------------------

class Client(asyncio.Protocol):
    """One socket, as light as a client can be: websockets' sans-I/O protocol (the handshake,
    frames, answering the server's pings) on a bare asyncio transport. The clients share the
    machine with the server, so what they spend per message is taken from it; autobahn's
    client cost 40-45 µs a message, enough to fall behind at 20,000 messages a second."""

    def __init__(self, clients: Clients, index: int, url: str, origin: str,
                 cookie: str) -> None:
        from websockets.client import ClientProtocol
        from websockets.typing import Origin
        from websockets.uri import parse_uri

        self.clients, self.index = clients, index
        self.protocol = ClientProtocol(parse_uri(url), origin=Origin(origin), max_size=None)
        self.request = self.protocol.connect()
        self.request.headers["Cookie"] = cookie
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.protocol.send_request(self.request)
        self._flush()

    def data_received(self, data: bytes) -> None:
        from websockets.frames import Frame, Opcode

        now = time.monotonic()
        self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                self.clients.received(self.index, json.loads(event.data), now)
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.clients.closed += 1

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.protocol.send_close(1000)
            self._flush()

    def _flush(self) -> None:
        data = self.protocol.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(data))


class Clients:
    """`count` sockets on one stream; `arrivals[i]` maps seq → monotonic arrival time."""

    def __init__(self, count: int, *, batched: bool = True) -> None:
        self.count = count
        self.batched = batched
        self.messages = 0
        self.arrivals: list[dict[int, float]] = [{} for _ in range(count)]
        self.caught_up = 0
        self.closed = 0
        self.all_caught_up = asyncio.Event()
        self.protocols: list[Client] = []

    def received(self, index: int, message: dict[str, Any], now: float) -> None:
        self.messages += 1
        if message["type"] == "event":
            self.arrivals[index][message["event"]["seq"]] = now
        elif message["type"] == "events":
            arrivals = self.arrivals[index]
            for event in message["events"]:
                arrivals[event["seq"]] = now
        elif message["type"] == "caught_up":
            self.caught_up += 1
            if self.caught_up == self.count:
                self.all_caught_up.set()

    async def connect(self, port: int, cookie: str, after: int) -> None:
        loop = asyncio.get_running_loop()
        url = (f"ws://127.0.0.1:{port}/ws/o/{ORG}/projects/{KEY}/events/?after={after}"
               + ("&batch=1" if self.batched else ""))
        origin = f"http://127.0.0.1:{port}"
        for index in range(self.count):
            _, protocol = await loop.create_connection(
                functools.partial(Client, self, index, url, origin, cookie), "127.0.0.1", port)
            self.protocols.append(protocol)
            if len(self.protocols) % CONNECT_BATCH == 0:
                await self._caught_up(len(self.protocols))
        await asyncio.wait_for(self.all_caught_up.wait(), 60)

    async def _caught_up(self, count: int) -> None:
        """Until `count` sockets are open and caught up, as browsers opening the page over a
        few seconds (a thousand handshakes at once outran the server's handshake timeout)."""
        deadline = time.monotonic() + 60
        while self.caught_up < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {self.caught_up} of {count} sockets caught up in 60 s "
                                 f"({self.closed} closed)")
            await asyncio.sleep(0.02)

    async def wait_for(self, seqs: list[int], timeout: float) -> None:
        """Until every client has every seq in `seqs` (or fail naming how many are missing)."""
        wanted = set(seqs)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(wanted <= arrivals.keys() for arrivals in self.arrivals):
                return
            await asyncio.sleep(0.02)
        missing = sum(len(wanted - arrivals.keys()) for arrivals in self.arrivals)
        raise SystemExit(f"{missing} (client, event) pairs never arrived "
                         f"({self.closed} sockets closed)")

    def close(self) -> None:
        for protocol in self.protocols:
            protocol.close()


# --- Set-up -------------------------------------------------------------------------------------

@contextlib.contextmanager
def bench_database(url: str) -> Iterator[str]:
    """A fresh database on the server of `url`, dropped afterwards."""
    name = f"haao_bench_live_{os.getpid()}"
    with admin_connection(url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
    finally:
        with admin_connection(url) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_seed(out: str) -> None:
    """Migrate, then the organization, a member's session cookie and the stream's last seq."""
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.test import Client

    from accounts.models import Membership, Organization, User
    from accounts.roles import Role
    from haao.models import AuditEvent
    from tickets.services import project_create

    call_command("migrate", verbosity=0)
    org = Organization.objects.create(name="Benchmark", slug=ORG)
    admin = User.objects.create_user(email="admin@bench.test", password=None)
    Membership.objects.create(organization=org, user=admin, role=Role.ADMIN)
    project_create(organization=org, actor=admin, key=KEY, name="Live events")
    client = Client()
    client.force_login(admin)
    name = settings.SESSION_COOKIE_NAME
    last = (AuditEvent.objects.for_org(org).filter(seq__isnull=False).order_by("-seq")
            .values_list("seq", flat=True))
    Path(out).write_text(json.dumps({"cookie": f"{name}={client.cookies[name].value}",
                                     "after": int(last.first() or 0)}))


def start_server(port: int, log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("ab")
    server = subprocess.Popen(
        web_command("127.0.0.1", port), cwd=ROOT, env=dict(os.environ), stdout=handle,
        stderr=handle, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return server
        if server.poll() is not None:
            raise SystemExit(f"the web process exited:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    raise SystemExit("the web process did not listen within 60 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write(workdir: Path, count: int, rate: float, name: str) -> list[tuple[int, float]]:
    out = workdir / f"{name}.json"
    subprocess.run([sys.executable, __file__, WRITER_MODE, str(count), str(rate), str(out)],
                   cwd=ROOT, env=dict(os.environ), check=True, timeout=600)
    return [(int(seq), float(at)) for seq, at in json.loads(out.read_text())]


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


# --- The run ------------------------------------------------------------------------------------

async def measure(args: argparse.Namespace, workdir: Path, cookie: str, after: int,
                  port: int, server: subprocess.Popen[bytes]) -> dict[str, Any]:
    clients = Clients(args.clients, batched=not args.per_event)
    await clients.connect(port, cookie, after)
    try:
        cpu_before, clients_cpu_before = cpu_seconds(server.pid), time.process_time()
        messages_before = clients.messages
        commits = await asyncio.to_thread(write, workdir, args.events, args.rate, "latency")
        await clients.wait_for([seq for seq, _ in commits], 60)
        server_cpu = cpu_seconds(server.pid) - cpu_before
        clients_cpu = time.process_time() - clients_cpu_before
        messages = clients.messages - messages_before
        latencies = [(arrivals[seq] - at) * 1000 for arrivals in clients.arrivals
                     for seq, at in commits]
        burst = await asyncio.to_thread(write, workdir, args.burst, 0, "burst")
        await clients.wait_for([seq for seq, _ in burst], 120)
        first_commit = burst[0][1]
        last_arrival = max(arrivals[seq] for arrivals in clients.arrivals for seq, _ in burst)
        write_seconds = burst[-1][1] - first_commit
        burst_latencies = [(arrivals[seq] - at) * 1000 for arrivals in clients.arrivals
                           for seq, at in burst]
    finally:
        clients.close()
    return {
        "clients": args.clients,
        "batched": not args.per_event,
        "events": args.events,
        "rate": args.rate,
        "events_per_message": round(args.events * args.clients / max(1, messages), 2),
        "latency_p50_ms": round(statistics.median(latencies), 1),
        "latency_p95_ms": round(percentile(latencies, 0.95), 1),
        "latency_max_ms": round(max(latencies), 1),
        "server_cpu_ms_per_event": round(server_cpu * 1000 / args.events, 2),
        # The clients share the machine; in use they are browsers elsewhere.
        "clients_cpu_ms_per_event": round(clients_cpu * 1000 / args.events, 2),
        "burst_events": args.burst,
        "burst_written_per_second": round(args.burst / write_seconds, 1),
        "events_per_second": round(args.burst / (last_arrival - first_commit), 1),
        "deliveries_per_second": round(args.burst * args.clients / (last_arrival - first_commit)),
        "burst_latency_p50_ms": round(statistics.median(burst_latencies), 1),
        "burst_latency_p95_ms": round(percentile(burst_latencies, 0.95), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--events", type=int, default=200, help="events of the latency phase")
    parser.add_argument("--rate", type=float, default=20, help="their events per second")
    parser.add_argument("--burst", type=int, default=1000, help="events of the throughput phase")
    parser.add_argument("--per-event", action="store_true",
                        help="sockets without batch=1: one message per event")
    args = parser.parse_args()
    if min(args.clients, args.events, args.burst) < 1 or args.rate <= 0:
        parser.error("--clients, --events and --burst must be at least 1, --rate above 0")
    server_url, redis_url = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    if not server_url.startswith(("postgres://", "postgresql://")) or not redis_url:
        raise SystemExit("Set DATABASE_URL (a PostgreSQL server; the user needs CREATEDB) and "
                         "REDIS_URL (an empty Redis database, e.g. redis://127.0.0.1:6379/9).")
    workdir = Path(tempfile.mkdtemp(prefix="haao-bench-live-"))
    try:
        with empty_redis(redis_url), bench_database(server_url) as database_url:
            run(args, workdir, database_url)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run(args: argparse.Namespace, workdir: Path, database_url: str) -> None:
    # Django stays out of this process: it would only weigh on the clients, and the
    # clients are bare asyncio. Seeding, serving and writing are child processes.
    os.environ.update({
        "DATABASE_URL": database_url, "DEBUG": "false", "HAAO_READ_DOTENV": "false",
        "HAAO_HTTPS": "false", "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
        "SECRET_KEY": os.environ.get("SECRET_KEY", "") if len(os.environ.get(
            "SECRET_KEY", "")) >= 50 else secrets.token_urlsafe(64),
        "HAAO_DATA_DIR": str(workdir / "data"), "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "HAAO_ENCRYPTION_KEYS": os.environ.get(
            "HAAO_ENCRYPTION_KEYS", "6vQ1d3Zs9m8Zb1g8Qk4j0oE1uXyP1YbqfQ0rJ5m6Z0A="),
        "PYTHONUNBUFFERED": "1", "DJANGO_SETTINGS_MODULE": "haao.settings"})
    seeded = workdir / "seed.json"
    subprocess.run([sys.executable, __file__, SEED_MODE, str(seeded)], cwd=ROOT,
                   env=dict(os.environ), check=True, timeout=600)
    seed = json.loads(seeded.read_text())
    port = free_port()
    os.environ["HAAO_BASE_URL"] = f"http://127.0.0.1:{port}"  # the sockets' allowed origin
    server = start_server(port, workdir / "web.log")
    try:
        figures = asyncio.run(measure(args, workdir, seed["cookie"], seed["after"], port,
                                      server))
    finally:
        stop(server)
    log = (workdir / "web.log").read_text(errors="replace")
    problems = [line for line in log.splitlines() if "Traceback" in line or "live:" in line]
    if problems:
        print(f"the web process logged {len(problems)} problem(s), the first: {problems[0]}",
              file=sys.stderr)
    for name, value in figures.items():
        print(f"{name}={value}")


if __name__ == "__main__":
    if sys.argv[1:2] == [WRITER_MODE]:
        run_writer(int(sys.argv[2]), float(sys.argv[3]), sys.argv[4])
    elif sys.argv[1:2] == [SEED_MODE]:
        run_seed(sys.argv[2])
    else:
        main()
