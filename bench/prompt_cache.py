"""Share of the Tech Lead's input tokens read from the prompt cache over repeated decompositions.

Five requirements of the same project are decomposed against the scripted Anthropic server
with its prompt-cache simulation (1024-token minimum, as for Sonnet). The instructions, the
tool schema and the repository map are the cached prefix; only the requirement differs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scratch import configure_django

REQUIREMENTS = [
    ("Round totals correctly", "0.125 must total 0.13 on invoices, as on paper."),
    ("Refuse big discounts", "A percentage discount above 100 must be refused with a clear "
                             "error instead of a negative total."),
    ("Exempt food from tax", "Line items of the category 'food' pay the reduced rate."),
    ("Show the tax per category", "Invoice totals must list the tax of each category."),
    ("Validate quantities", "A negative quantity on a line item must be refused."),
    ("Round tax per line", "Tax is rounded per line before it is summed."),
    ("Currency on totals", "Totals carry the invoice's currency code."),
]


def proposal_for(checkout: Path) -> Callable[..., dict[str, Any]]:
    """For another project: one ticket quoting the first lines of its first Python file."""
    from agents.techlead.repo_map import tracked_files
    from tests.samples import invoice_ticket

    path = next((name for name in tracked_files(checkout) if name.endswith(".py")
                 and (checkout / name).read_text(encoding="utf-8").strip()), None)
    if path is None:
        raise SystemExit(f"{checkout} has no non-empty Python file to quote")
    lines = len((checkout / path).read_text(encoding="utf-8").splitlines())
    ticket = invoice_ticket(
        title=f"Tidy {path}", allowed_paths=[path],
        code_context=[{"path": path, "line_start": 1, "line_end": min(lines, 20)}])
    return lambda prompt="", tool=None: {"tickets": [ticket]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5, choices=range(1, len(REQUIREMENTS) + 1),
                        metavar=f"1..{len(REQUIREMENTS)}")
    parser.add_argument("--project", type=Path, default=None,
                        help="a directory to decompose instead of samples/invoice-calc")
    parser.add_argument("--model", default="claude-sonnet-4-6")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="haao-bench-cache-") as name:
        scratch = Path(name)
        configure_django(scratch)
        run(args, scratch)


def run(args: argparse.Namespace, scratch: Path) -> None:
    from django.core.management import call_command
    from django.db.models import Sum

    from accounts.models import Membership, Organization, User
    from accounts.roles import Role
    from agents import pricing, services
    from agents.models import ModelCall
    from agents.techlead.client import TechLeadClient
    from agents.techlead.decompose import decompose
    from sample_models import AnthropicServer, SampleTechLead
    from tests.samples import SAMPLE_PROJECT, git_checkout, invoice_proposal
    from tickets.services import project_create, requirement_create

    call_command("migrate", verbosity=0)
    org = Organization.objects.create(name="Benchmark", slug="bench")
    admin = User.objects.create_user(email="admin@bench.test", password=None)
    Membership.objects.create(organization=org, user=admin, role=Role.ADMIN)
    project = project_create(organization=org, actor=admin, key="INV", name="Invoices")
    checkout = git_checkout(args.project or SAMPLE_PROJECT, scratch / "checkout")
    answer = invoice_proposal if args.project is None else proposal_for(checkout)
    with AnthropicServer(prompt_cache=True,
                         answer=SampleTechLead(propose_tickets=answer)) as server:
        endpoint = services.endpoint_create(
            organization=org, actor=admin, api_key="sk-ant-bench",
            values={"name": "Claude", "kind": "anthropic", "base_url": server.url,
                    "model": args.model, "role": "tech_lead"})
        client = TechLeadClient(endpoint)
        started = time.perf_counter()
        for title, text in REQUIREMENTS[:args.runs]:
            requirement = requirement_create(project=project, actor=admin, title=title,
                                             text=text)
            decompose(requirement=requirement, repo_path=checkout, endpoint=endpoint,
                      client=client)
        elapsed = time.perf_counter() - started
        requests = len(server.requests_to("/v1/messages"))
    totals = ModelCall.objects.filter(organization=org).aggregate(
        input=Sum("input_tokens"), output=Sum("output_tokens"),
        write=Sum("cache_write_tokens"), read=Sum("cache_read_tokens"), cost=Sum("cost"))
    calls = ModelCall.objects.filter(organization=org).count()
    prompt = totals["input"] + totals["write"] + totals["read"]
    share = Decimal(totals["read"]) / Decimal(prompt) if prompt else Decimal(0)
    price = pricing.price_for(args.model)
    uncached = pricing.cost_of(price, prompt, totals["output"])
    print(f"project={args.project or 'samples/invoice-calc'}")
    print(f"decompositions={args.runs}")
    print(f"http_requests={requests}")
    print(f"input_tokens={totals['input']}")
    print(f"cache_write_tokens={totals['write']}")
    print(f"cache_read_tokens={totals['read']}")
    print(f"output_tokens={totals['output']}")
    print(f"cost_usd={Decimal(totals['cost']).quantize(pricing.MICRO)}")
    print(f"cost_without_cache_usd={uncached}")
    print(f"seconds={elapsed:.2f}")
    print(f"calls={calls}")
    print(f"cache_read_share={share:.3f}")
    if share < Decimal("0.70"):
        raise SystemExit(f"cache_read_share {share:.3f} is below the goal of 0.70")


if __name__ == "__main__":
    main()
