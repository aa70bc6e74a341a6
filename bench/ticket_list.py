"""Latency and query count of the ticket list API (`GET /api/v1/orgs/<org>/tickets/`) on
PostgreSQL with many tickets.

    DATABASE_URL=postgres://user@host:port/anything python bench/ticket_list.py \
        [--tickets 100000] [--projects 50] [--organizations 1] [--requests 500] \
        [--quick] [--reuse]

Creates the database `haao_bench` on the server DATABASE_URL names (the database in the
URL itself is only used to connect), migrates it, seeds `--organizations` organizations of
`--tickets` tickets each (the first is measured; the others share its tables and indexes,
as other tenants do), then calls the
endpoint in-process through Django's test client with a real API token. It refuses an
existing non-empty `haao_bench` unless --reuse, which measures the data already there
(seeding only when it holds no benchmark organization yet). Figures are printed last, one
`name=value` per line.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BENCH_DB = "haao_bench"
ORG_SLUG = "bench"
PAGE_SIZE = 50
BATCH = 5000
WORDS = ["invoice", "totals", "csv", "export", "login", "cache", "retry", "report", "parser",
         "timeout", "webhook", "currency", "rounding", "search", "index", "upload", "audit",
         "session", "billing", "schema"]
VERBS = ["Fix", "Add", "Round", "Validate", "Refactor", "Speed up", "Log", "Test"]
# Roughly how tickets spread over states in a busy organization.
STATE_WEIGHTS = {"accepted": 40, "cancelled": 5, "proposed": 10, "approved": 5, "queued": 10,
                 "running": 3, "retrying": 2, "escalated": 1, "auditing": 2,
                 "awaiting_acceptance": 10, "rejected": 4, "blocked": 8}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--projects", type=int, default=50)
    parser.add_argument("--organizations", type=int, default=1,
                        help="organizations of --tickets tickets each; the first is measured")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--quick", action="store_true",
                        help="1,000 tickets and 50 requests: a smoke run for CI")
    parser.add_argument("--reuse", action="store_true",
                        help="measure an existing haao_bench database instead of refusing it")
    args = parser.parse_args()
    if args.quick:
        args.tickets, args.requests = 1000, 50
    if args.tickets < 1 or not 1 <= args.projects <= 999 or args.requests < 1 \
            or not 1 <= args.organizations <= 100:
        parser.error("--tickets and --requests must be positive, --projects 1-999, "
                     "--organizations 1-100")
    return args


def prepare_database(url: str, reuse: bool) -> str:
    """Create (or, with --reuse, accept) the benchmark database; its URL for Django."""
    import psycopg

    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql", "pgsql"):
        raise SystemExit("DATABASE_URL must name a PostgreSQL server (postgres://…).")
    server = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(server, autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                    [BENCH_DB]).fetchone()
        if exists is None:
            connection.execute(f'CREATE DATABASE "{BENCH_DB}"')
    bench = urlunsplit(parts._replace(scheme="postgresql", path=f"/{BENCH_DB}"))
    if exists is not None and not reuse:
        with psycopg.connect(bench) as connection:
            tables = connection.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchone()
        if tables and tables[0]:
            raise SystemExit(f"The database {BENCH_DB} exists and is not empty; drop it or pass "
                             "--reuse to measure what it holds.")
    return bench


def configure_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    # A benchmark's own settings: never a developer's .env, no HTTPS redirect for the
    # in-process client; keys only matter for secrets, which this data has none of.
    os.environ["HAAO_READ_DOTENV"] = "false"
    os.environ["HAAO_HTTPS"] = "false"
    os.environ["DEBUG"] = "false"
    os.environ["ALLOWED_HOSTS"] = "testserver"
    os.environ.setdefault("SECRET_KEY", "benchmark-only-secret-key-" + "x" * 40)
    os.environ.setdefault("HAAO_ENCRYPTION_KEYS", "6vQ1d3Zs9m8Zb1g8Qk4j0oE1uXyP1YbqfQ0rJ5m6Z0A=")
    os.environ.setdefault("HAAO_DATA_DIR", "/tmp/haao-bench-data")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "haao.settings")
    import django

    django.setup()


def seed(tickets: int, projects: int, *, slug: str = ORG_SLUG, seed_value: int = 20261124,
         analyze: bool = True) -> None:
    """One organization, `projects` projects, `tickets` tickets over a year.

    Data for measurement only: rows are bulk-inserted, bypassing the services (no audit
    events, no state machine), because creating 100,000 tickets one by one through
    `requirement_propose` would take hours and measure nothing about the list.
    """
    from django.db import transaction
    from django.utils import timezone

    from accounts.models import Membership, Organization, User
    from tickets.models import Project, Requirement, Ticket

    rng = random.Random(seed_value)
    spec = {"schema_version": "1", "title": "x", "objective": "Benchmark ticket.",
            "code_context": [], "allowed_paths": ["src/app.py"], "constraints": [],
            "definition_of_done": [{"name": "tests", "command": ["pytest", "-q"],
                                    "expected_exit_code": 0, "timeout_seconds": 60}],
            "dependencies": [], "complexity": 2}
    states, weights = zip(*STATE_WEIGHTS.items(), strict=True)
    start = timezone.now() - timedelta(days=365)
    step = timedelta(days=365) / tickets
    with transaction.atomic():
        org = Organization.objects.create(name=f"Benchmark {slug}", slug=slug)
        for role in ("admin", "member"):
            user = User.objects.create_user(email=f"{role}@{slug}.test", password=None)
            Membership.objects.create(organization=org, user=user, role=role)
        keys = [f"B{index:03d}" for index in range(1, projects + 1)]
        project_rows = Project.objects.bulk_create(
            [Project(organization=org, key=key, name=f"Project {key}") for key in keys])
        per_project = -(-tickets // projects)
        requirement_size = 20
        requirements: list[Requirement] = []
        for project in project_rows:
            for number in range(1, per_project // requirement_size + 2):
                requirements.append(Requirement(
                    organization=org, project=project, number=number, title=f"Need {number}",
                    text="Benchmark requirement.", status="approved",
                    created_at=start))
        Requirement.objects.bulk_create(requirements, batch_size=BATCH)
        by_project: dict[Any, list[Requirement]] = {}
        for requirement in requirements:
            by_project.setdefault(requirement.project_id, []).append(requirement)
        counters = dict.fromkeys((p.pk for p in project_rows), 0)
        batch: list[Ticket] = []
        for index in range(tickets):
            project = project_rows[index % projects]
            counters[project.pk] += 1
            number = counters[project.pk]
            title = (f"{rng.choice(VERBS)} {rng.choice(WORDS)} {rng.choice(WORDS)} "
                     f"in module {rng.randrange(1000)}")
            created = start + step * index
            batch.append(Ticket(
                organization=org, project=project,
                requirement=by_project[project.pk][(number - 1) // requirement_size],
                number=number, title=title, spec={**spec, "title": title},
                status=rng.choices(states, weights)[0], status_changed_at=created,
                order=(number - 1) % requirement_size + 1, complexity=rng.randint(1, 5),
                created_at=created))
            if len(batch) == BATCH:
                Ticket.objects.bulk_create(batch)
                batch.clear()
        Ticket.objects.bulk_create(batch)
        for project in project_rows:
            Project.objects.filter(pk=project.pk).update(ticket_seq=counters[project.pk])
    if not analyze:
        return
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def token_for(role: str) -> str:
    from django.utils import timezone

    from accounts import services
    from accounts.models import Organization, User

    org = Organization.objects.get(slug=ORG_SLUG)
    user = User.objects.get(email=f"{role}@{ORG_SLUG}.test")
    _, raw = services.api_token_create(organization=org, user=user, name="bench",
                                       scopes={"read"},
                                       expires_at=timezone.now() + timedelta(days=1))
    return raw


def queries(projects: list[str]) -> list[dict[str, Any]]:
    """The request mix: unfiltered, by state, by project, by title, and combinations."""
    rng = random.Random(7)
    mix: list[dict[str, Any]] = []
    for _ in range(64):
        project = rng.choice(projects)
        mix += [
            {},
            {"state": "queued"},
            {"state": ["running", "retrying", "escalated"]},
            {"project": project},
            {"project": project, "state": "awaiting_acceptance"},
            {"q": rng.choice(WORDS)},
            {"q": rng.choice(WORDS), "state": "blocked"},
            {"requirement": f"{project}-R{rng.randint(1, 3)}"},
        ]
    rng.shuffle(mix)
    return mix


def measure(client: Any, path: str, mix: list[dict[str, Any]], requests: int) -> list[float]:
    samples = []
    for index in range(requests):
        params = {**mix[index % len(mix)], "page_size": PAGE_SIZE}
        started = time.perf_counter()
        response = client.get(path, params)
        samples.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"GET {path} {params} answered {response.status_code}: "
                             f"{response.content[:300]!r}")
    return samples


def count_queries(client: Any, path: str, page_size: int) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        response = client.get(path, {"page_size": page_size})
    assert response.status_code == 200 and len(response.json()["results"]) <= page_size
    return len(captured)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    args = parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        raise SystemExit("Set DATABASE_URL to a PostgreSQL server, e.g. "
                         "postgres://postgres@127.0.0.1:5432/postgres")
    configure_django(prepare_database(url, args.reuse))
    from django.core.management import call_command
    from django.test import Client
    from guardian.shortcuts import assign_perm

    from accounts.models import Membership, Organization
    from tickets.models import Project, Ticket

    call_command("migrate", verbosity=0)
    if not Organization.objects.filter(slug=ORG_SLUG).exists():
        started = time.perf_counter()
        for index in range(args.organizations, 0, -1):  # the measured one last: newest rows
            seed(args.tickets, args.projects, slug=ORG_SLUG if index == 1 else
                 f"{ORG_SLUG}-{index}", seed_value=20261124 + index, analyze=index == 1)
        print(f"seeded {args.organizations} x {args.tickets} tickets in "
              f"{time.perf_counter() - started:.1f} s", file=sys.stderr)
    org = Organization.objects.get(slug=ORG_SLUG)
    total = Ticket.objects.for_org(org).count()
    keys = list(Project.objects.for_org(org).values_list("key", flat=True))
    path = f"/api/v1/orgs/{ORG_SLUG}/tickets/"
    mix = queries(keys)
    figures: dict[str, Any] = {"tickets": total, "projects": len(keys),
                               "tickets_all_organizations": Ticket.objects.count(),
                               "requests": args.requests}
    # A member sees only the projects granted to them: every other one.
    member = Membership.objects.for_org(org).get(role="member").user
    for project in Project.objects.for_org(org).order_by("key")[::2]:
        assign_perm("tickets.view_project", member, project)
    for role in ("admin", "member"):
        client = Client(HTTP_AUTHORIZATION=f"Bearer {token_for(role)}")
        measure(client, path, mix, 20)  # warm connections and caches
        samples = measure(client, path, mix, args.requests)
        prefix = "list" if role == "admin" else "member_list"
        figures[f"{prefix}_p50_ms"] = f"{statistics.median(samples):.1f}"
        figures[f"{prefix}_p95_ms"] = f"{percentile(samples, 0.95):.1f}"
        if role == "admin":
            figures["queries_page_10"] = count_queries(client, path, 10)
            figures["queries_page_100"] = count_queries(client, path, 100)
    for name, value in figures.items():
        print(f"{name}={value}")


if __name__ == "__main__":
    main()
