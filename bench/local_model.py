"""Real local coder on this machine: streamed tokens per second and an attempt's wall time.

    python bench/local_model.py [--runs 3] [--attempts 3] [--max-tokens 256]

Starts llama.cpp's server with SmolLM2-135M (the extra `localmodel`), asks it the sample
project's rounding ticket through HAAO's coder client, then runs whole attempts
through the engine's own steps (dispatch, the model step, the check step: coder call, edits,
the sample's tests in the sandbox, as a worker runs them) on a scratch SQLite database.
Figures are printed last, one `name=value` per line.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.scratch import configure_django  # noqa: E402  (needs the path above)

SAMPLE = ROOT / "samples" / "invoice-calc"


def sample_repository(scratch: Path) -> Path:
    repo = scratch / "invoice-calc"
    shutil.copytree(SAMPLE, repo, ignore=shutil.ignore_patterns(
        ".ruff_cache", "__pycache__", ".pytest_cache"))
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=Bench", "-c", "user.email=bench@example.com", "commit",
                  "-q", "-m", "invoice-calc"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    return repo


def ticket_spec(repo: Path) -> dict[str, Any]:
    content = (repo / "invoice_calc" / "totals.py").read_text()
    return {
        "schema_version": "1",
        "title": "Round invoice totals half-up to the cent",
        "objective": "round_money() rounds exact half cents down (0.125 -> 0.12). Make it "
                     "round half-up (0.125 -> 0.13) using Decimal.quantize with ROUND_HALF_UP.",
        "code_context": [{"path": "invoice_calc/totals.py", "line_start": 1,
                          "line_end": len(content.splitlines()), "content": content}],
        "allowed_paths": ["invoice_calc/totals.py"],
        "constraints": ["Keep amounts as Decimal; never convert to float."],
        "definition_of_done": [{"name": "unit tests",
                                "command": ["python", "-m", "pytest", "-q", "-p",
                                            "no:cacheprovider", "tests"],
                                "timeout_seconds": 120}],
        "dependencies": [],
        "complexity": 2,
    }


class Stamps:
    """An on_token callback that notes when each streamed piece arrived."""

    def __init__(self, into: list[float]) -> None:
        self.into = into

    def __call__(self, piece: str) -> None:
        self.into.append(time.perf_counter())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="streamed completions to time")
    parser.add_argument("--attempts", type=int, default=3, help="whole attempts to time")
    parser.add_argument("--max-tokens", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="haao-bench-local-") as name:
        scratch = Path(name)
        configure_django(scratch)
        run(args, scratch)


def run(args: argparse.Namespace, scratch: Path) -> None:
    from django.core.management import call_command

    from accounts.models import Membership, Organization, User
    from accounts.roles import Role
    from agents import services
    from agents.coder.client import complete
    from agents.coder.prompt import coder_messages
    from agents.localmodel import LocalModelUnavailable, missing_packages, start_local_model
    from agents.models import ModelCall
    from agents.sandbox import sandbox_available
    from tests.engine import InProcessEngine
    from tickets.models import Project, Requirement, Ticket

    if missing_packages():
        raise SystemExit(f"missing {', '.join(missing_packages())}: "
                         "pip install -e '.[localmodel]'")
    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)  # the engine's claims use the cache
    # Checks run unsandboxed only where bubblewrap cannot (the organization's opt-in).
    org = Organization.objects.create(name="Benchmark", slug="bench",
                                      allow_unsandboxed_checks=not sandbox_available())
    admin = User.objects.create_user(email="admin@bench.test", password=None)
    Membership.objects.create(organization=org, user=admin, role=Role.ADMIN)
    repo = sample_repository(scratch)
    # Measurement data, written around the services on purpose (as in bench/ticket_list.py).
    project = Project.objects.create(organization=org, key="INV", name="Invoices",
                                     repository=str(repo))
    requirement = Requirement.objects.create(organization=org, project=project, number=1,
                                             title="Round half-up", text="Issue #42",
                                             status="approved")
    spec = ticket_spec(repo)
    ticket = Ticket.objects.create(organization=org, project=project, requirement=requirement,
                                   number=1, title=spec["title"], spec=spec, status="queued",
                                   complexity=spec["complexity"])

    started = time.perf_counter()
    try:
        server = start_local_model()
    except LocalModelUnavailable as error:
        raise SystemExit(error.message) from None
    ready_ms = (time.perf_counter() - started) * 1000
    try:
        endpoint = services.endpoint_create(
            organization=org, actor=admin,
            values={"name": "SmolLM2", "kind": "openai_compatible", "flavor": "llama_cpp",
                    "base_url": f"{server.url}/v1", "model": server.model, "role": "coder"})
        messages = coder_messages(spec=spec)
        complete(endpoint=endpoint, messages=messages, max_tokens=8)  # load and warm up
        rates, first_token_ms, totals = [], [], []
        for _ in range(args.runs):
            stamps: list[float] = []
            begin = time.perf_counter()
            reply = complete(endpoint=endpoint, messages=messages, stream=True,
                             max_tokens=args.max_tokens, on_token=Stamps(stamps))
            end = time.perf_counter()
            # llama.cpp streams one token per chunk; decode speed is measured after the first.
            if len(stamps) > 1:
                rates.append((len(stamps) - 1) / (stamps[-1] - stamps[0]))
            first_token_ms.append((stamps[0] - begin) * 1000 if stamps else 0.0)
            totals.append(len(stamps) / (end - begin))
            print(f"stream: {len(stamps)} tokens in {(end - begin) * 1000:.0f} ms, "
                  f"finish={reply.finish_reason}", file=sys.stderr)
        plain = complete(endpoint=endpoint, messages=messages, max_tokens=args.max_tokens)
        walls, outcomes = [], []
        for number in range(1, args.attempts + 1):
            begin = time.perf_counter()
            # Each attempt as the loop runs it; the ticket is queued again in between.
            Ticket.objects.filter(pk=ticket.pk).update(status="queued", retries_left=3)
            with InProcessEngine() as engine:
                attempt = engine.attempt(ticket)
            walls.append((time.perf_counter() - begin) * 1000)
            outcomes.append(attempt.outcome)
            print(f"attempt {number}: {attempt.outcome} in {walls[-1]:.0f} ms "
                  f"({attempt.error[:120]!r})", file=sys.stderr)
        coder_ms = [c.latency_ms for c in ModelCall.objects.filter(ticket=ticket)]
    finally:
        server.stop()

    print(f"model={server.model}")
    print(f"sandboxed={str(sandbox_available()).lower()}")
    print(f"server_ready_ms={ready_ms:.0f}")
    print(f"prompt_tokens={plain.usage.input_tokens}")
    print(f"max_tokens={args.max_tokens}")
    print(f"stream_runs={args.runs}")
    print(f"first_token_median_ms={statistics.median(first_token_ms):.0f}")
    print(f"decode_tokens_per_s_median={statistics.median(rates):.1f}" if rates
          else "decode_tokens_per_s_median=0")
    print(f"stream_tokens_per_s_median={statistics.median(totals):.1f}")
    print(f"attempts={args.attempts}")
    print(f"attempt_wall_median_ms={statistics.median(walls):.0f}")
    print(f"attempt_coder_median_ms={statistics.median(coder_ms):.0f}")
    print(f"attempt_outcomes={','.join(outcomes)}")


if __name__ == "__main__":
    main()
