"""What the guardrails cost: redaction throughput, and the time the policy's checks add to a
cloud call and to an attempt's edits and commands.

- redaction: `redact_payload` over a Tech Lead request carrying code, a diff and check
  output (the planted-secrets sample plus ordinary code), at several sizes;
- cloud gate: `TechLeadClient._guard` (policy, the organization's keys, redaction, the caps'
  sums) for one audit request, against the same request's round trip to the scripted
  Anthropic server on loopback;
- edits and commands: the policy read and the path, size and program decisions of one
  attempt.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scratch import configure_django

ROOT = Path(__file__).resolve().parents[1]


def timed(action: Callable[[], Any], repeat: int) -> list[float]:
    """Milliseconds of each of `repeat` runs, after one warm-up run."""
    action()
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        runs.append((time.perf_counter() - started) * 1000)
    return runs


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.95) - 1)]


def request_text(size: int) -> str:
    """About `size` bytes of what an audit reads: code, a diff, check output, and secrets."""
    parts = [path.read_text() for path in sorted((ROOT / "samples" / "secrets").rglob("*"))
             if path.is_file() and path.name != "SECRETS.txt"]
    parts += [path.read_text() for path in sorted((ROOT / "agents").glob("*.py"))]
    text = "\n".join(parts)
    while len(text) < size:
        text += "\n" + text
    return text[:size]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="haao-bench-guardrails-") as name:
        configure_django(Path(name))
        run(args)


def run(args: argparse.Namespace) -> None:
    from django.core.management import call_command

    from accounts.models import Membership, Organization, User
    from accounts.roles import Role
    from agents import services
    from agents.techlead.client import CallContext, TechLeadClient
    from policies.enforcement import command_refusal, edits_refusal
    from policies.redaction import redact_payload
    from policies.selectors import policy_for
    from sample_models import AnthropicServer
    from sample_models import anthropic as anth
    from tickets.services import project_create

    figures: dict[str, str] = {}
    for size in (20_000, 200_000):
        payload = [{"role": "user", "content": [{"type": "text", "text": request_text(size)}]}]
        runs = timed(functools.partial(redact_payload, payload), args.repeat)
        _, found = redact_payload(payload)
        figures[f"redact_{size // 1000}kb_ms_median"] = f"{statistics.median(runs):.1f}"
        figures[f"redact_{size // 1000}kb_ms_p95"] = f"{p95(runs):.1f}"
        figures[f"redact_{size // 1000}kb_secrets"] = str(found.count)
        figures[f"redact_mb_per_s_at_{size // 1000}kb"] = \
            f"{size / 1e6 / (statistics.median(runs) / 1000):.2f}"

    call_command("migrate", verbosity=0)
    org = Organization.objects.create(name="Benchmark", slug="bench")
    admin = User.objects.create_user(email="admin@bench.test", password=None)
    Membership.objects.create(organization=org, user=admin, role=Role.ADMIN)
    project = project_create(organization=org, actor=admin, key="INV", name="Invoices")
    text = request_text(20_000)
    with AnthropicServer(answer=lambda request: anth.text_reply("Fine.")) as server:
        endpoint = services.endpoint_create(
            organization=org, actor=admin, api_key="sk-ant-bench",
            values={"name": "Claude", "kind": "anthropic", "base_url": server.url,
                    "model": "claude-sonnet-4-6", "role": "tech_lead"})
        client = TechLeadClient(endpoint)
        context = CallContext(organization=org, role="audit", key="bench", project=project)

        def params() -> dict[str, Any]:
            return {"model": endpoint.model, "max_tokens": 4000,
                    "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]}

        gate = timed(lambda: client._guard(context, params()), args.repeat)
        counter = iter(range(10**9))
        whole = timed(lambda: client.create(
            context=CallContext(organization=org, role="audit", key=f"b{next(counter)}",
                                project=project), **params()), args.repeat)
    figures["cloud_gate_20kb_ms_median"] = f"{statistics.median(gate):.1f}"
    figures["cloud_gate_20kb_ms_p95"] = f"{p95(gate):.1f}"
    figures["cloud_call_20kb_ms_median"] = f"{statistics.median(whole):.1f}"
    figures["cloud_gate_share_of_call"] = \
        f"{statistics.median(gate) / statistics.median(whole):.2f}"

    paths = [f"src/module_{n}.py" for n in range(10)]
    argv = ["python", "-m", "pytest", "-q"]

    def attempt_checks() -> None:
        policy = policy_for(project=project)
        edits_refusal(policy, paths)
        command_refusal(policy, argv)

    checks = timed(attempt_checks, args.repeat)
    figures["attempt_policy_checks_ms_median"] = f"{statistics.median(checks):.2f}"
    for name, value in figures.items():
        print(f"{name}={value}")


if __name__ == "__main__":
    main()
