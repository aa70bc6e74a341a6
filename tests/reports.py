"""A month of an organization's work with hand-computed costs: what the cost report suites
(agents/tests/test_reports.py, tests/e2e/test_reports_browser.py) check the report against."""

from __future__ import annotations

from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.utils import timezone

from agents import ledger, services
from agents.models import InferenceEndpoint
from haao.audit import SYSTEM, audit_record
from policies.enforcement import month_start
from tests.factories import ProjectFactory, RequirementFactory, TicketFactory
from tickets.models import Attempt

MICRO = Decimal("0.000001")
# The reference cloud model (claude-sonnet-4-5) and the local endpoint's own rates, USD/MTok.
SONNET = {"input": Decimal(3), "output": Decimal(15), "cache_write": Decimal("3.75"),
          "cache_read": Decimal("0.3")}
LOCAL = {"input": Decimal("0.05"), "output": Decimal("0.20")}


def usd(tokens: dict[str, int], rates: dict[str, Decimal]) -> Decimal:
    total = sum((rates[name] * count for name, count in tokens.items()), Decimal(0))
    return (total / 1_000_000).quantize(MICRO, rounding=ROUND_HALF_UP)


def share(amount: Decimal, count: int) -> Decimal:
    return (amount / count).quantize(MICRO, rounding=ROUND_HALF_UP)


class Seed:
    """Acme's month: one requirement of three tickets in PAY, one ticket in OPS, calls of
    every kind, one call last month, and Globex's calls, which must never show."""

    def __init__(self, cast) -> None:
        org, now = cast.org, timezone.now()
        self.cast, self.now = cast, now
        self.claude = services.endpoint_create(
            organization=org, actor=cast.admin, api_key="sk-ant-test",
            values={"name": "Claude", "kind": "anthropic", "base_url": "http://93.184.215.14",
                    "model": "claude-sonnet-4-5", "role": "tech_lead"})
        self.gpu = services.endpoint_create(
            organization=org, actor=cast.admin,
            values={"name": "GPU box", "kind": "openai_compatible", "flavor": "vllm",
                    "base_url": "http://93.184.215.14:8000/v1", "model": "qwen2.5-coder-7b",
                    "role": "coder", "price_input": "0.05", "price_output": "0.20"})
        self.ops = ProjectFactory(organization=org, key="OPS", name="Operations")
        self.requirement = RequirementFactory(project=cast.project, number=1)
        self.t1, self.t2, self.t3 = (
            TicketFactory(project=cast.project, requirement=self.requirement, number=n,
                          status=status, decided_at=now if status == "accepted" else None)
            for n, status in ((1, "accepted"), (2, "accepted"), (3, "blocked")))
        self.t4 = TicketFactory(project=self.ops, requirement__project=self.ops, number=1,
                                status="accepted", decided_at=now)
        # Accepted last month: outside this month's report.
        TicketFactory(project=cast.project, requirement=self.requirement, number=5,
                      status="accepted", decided_at=month_start(now) - timedelta(days=2))
        self.calls = [
            # (endpoint, role, ticket, tokens)
            (self.claude, "decompose", None, {"input": 10_000, "output": 2_000,
                                              "cache_write": 4_000}),
            (self.gpu, "code", self.t1, {"input": 6_000, "output": 1_500}),
            (self.gpu, "code", self.t2, {"input": 6_000, "output": 1_500}),
            (self.gpu, "code", self.t2, {"input": 7_500, "output": 1_500}),
            (self.claude, "solve", self.t2, {"input": 8_000, "output": 2_000,
                                             "cache_read": 2_000}),
            (self.claude, "audit", self.t1, {"input": 7_000, "output": 600}),
            (self.gpu, "code", self.t3, {"input": 2_000, "output": 500}),
            (self.gpu, "code", self.t4, {"input": 5_000, "output": 1_000}),
            (self.gpu, "health", None, {"input": 10, "output": 1}),
        ]
        for endpoint, role, ticket, tokens in self.calls:
            self.record(endpoint, role, ticket, tokens, at=now,
                        requirement=self.requirement if role == "decompose" else None,
                        project=cast.project if role == "decompose" else None)
        self.record(self.gpu, "code", self.t1, {"input": 1_000, "output": 100},
                    at=month_start(now) - timedelta(days=1))
        globex = InferenceEndpoint.objects.create(
            organization=cast.other_org, name="Globex Claude", kind="anthropic",
            base_url="http://93.184.215.14", model="claude-sonnet-4-5", role="tech_lead")
        ledger.model_call_record(organization=cast.other_org, endpoint=globex, role="code",
                                   outcome="ok", input_tokens=1_000_000, output_tokens=9,
                                   at=now)
        for ticket, executors in ((self.t1, "l"), (self.t2, "llc"), (self.t3, "l"),
                                  (self.t4, "l")):
            for number, kind in enumerate(executors, 1):
                Attempt.objects.create(organization=org, ticket=ticket, number=number,
                                       executor="cloud" if kind == "c" else "local",
                                       outcome="passed", stage="done")
        for ticket, passed in ((self.t1, True), (self.t2, False)):
            audit_record(organization=org, actor=SYSTEM, type="ticket.audited", target=ticket,
                         project_id=ticket.project_id, data={"passed": passed})
        for ticket, to in ((self.t2, "rejected"), (self.t1, "accepted"), (self.t2, "accepted"),
                           (self.t4, "accepted")):
            audit_record(organization=org, actor=SYSTEM, type="ticket.transition",
                         target=ticket, project_id=ticket.project_id,
                         data={"from": "awaiting_acceptance", "to": to})

    def record(self, endpoint, role, ticket, tokens, *, at, **kwargs) -> None:
        ledger.model_call_record(
            organization=self.cast.org, endpoint=endpoint, role=role, outcome="ok",
            ticket=ticket, at=at, input_tokens=tokens.get("input", 0),
            output_tokens=tokens.get("output", 0),
            cache_write_tokens=tokens.get("cache_write", 0),
            cache_read_tokens=tokens.get("cache_read", 0), **kwargs)

    def of_project(self, project) -> dict[str, Decimal]:
        """The figures of one project: its tickets' calls and its requirement's decomposition."""
        return self.expected(lambda endpoint, role, ticket: (
            ticket.project_id == project.pk if ticket is not None
            else role == "decompose" and project.pk == self.cast.project.pk))

    def expected(self, keep=lambda endpoint, role, ticket: True) -> dict[str, Decimal]:
        """Spend, local, cloud and all-cloud cost of this month's calls, by hand."""
        local = cloud = Decimal(0)
        local_tokens = {"input": 0, "output": 0}
        for endpoint, role, ticket, tokens in self.calls:
            if not keep(endpoint, role, ticket):
                continue
            if endpoint is self.claude:
                cloud += usd(tokens, SONNET)
            else:
                local += usd(tokens, LOCAL)
                for name in local_tokens:
                    local_tokens[name] += tokens.get(name, 0)
        all_cloud = cloud + usd(local_tokens, SONNET)
        return {"cost": local + cloud, "local_cost": local, "cloud_cost": cloud,
                "all_cloud_cost": all_cloud, "savings": all_cloud - local - cloud}
