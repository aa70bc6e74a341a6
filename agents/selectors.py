"""Reads for inference endpoints and the model-call ledger (totals for cost reports)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import Count, DecimalField, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce

from accounts.models import Organization
from agents.models import EndpointKind, EndpointRole, InferenceEndpoint, ModelCall
from haao.errors import ApplicationError
from haao.reads import read_once
from policies.enforcement import Budget, Refusal, month_start, over_budget
from policies.selectors import EffectivePolicy
from tickets.models import Attempt, Ticket


def dedicated_queue_held_elsewhere(*, queue: str, organization: Organization) -> bool:
    """Whether another organization's endpoint names `queue` as its dedicated queue: queue
    names are global on the broker, so one organization's name is nobody else's."""
    return bool(queue) and InferenceEndpoint.objects.filter(dedicated_queue=queue).exclude(
        organization=organization).exists()


def endpoints_of(*, organization: Organization) -> QuerySet[InferenceEndpoint]:
    """The organization's endpoints by name."""
    return InferenceEndpoint.objects.for_org(organization).order_by("name")


def endpoint_by_id(*, organization: Organization, endpoint_id: Any) -> InferenceEndpoint | None:
    """The endpoint with this id in this organization; None for another's or a malformed id."""
    try:
        pk = endpoint_id if isinstance(endpoint_id, uuid.UUID) else uuid.UUID(str(endpoint_id))
    except ValueError:
        return None
    return endpoints_of(organization=organization).filter(pk=pk).first()


_ZERO = Value(Decimal("0"), output_field=DecimalField(max_digits=14, decimal_places=6))


# --- What a ticket cost -----------------------------------------------------------------------

@dataclass(frozen=True)
class TicketCost:
    """A ticket's ledger rows summed: its coder calls, retries, escalation and audits."""

    calls: int = 0
    cost: Decimal = Decimal("0")
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0

    @property
    def tokens(self) -> int:
        return (self.input_tokens + self.output_tokens + self.cache_write_tokens
                + self.cache_read_tokens)


NO_COST = TicketCost()


def ticket_costs(*, organization: Organization, tickets: Iterable[Any] | None = None,
                 calls: QuerySet[ModelCall] | None = None) -> dict[Any, TicketCost]:
    """What each ticket cost, by ticket id, in one grouped query: the home of a ticket's cost
    (API, ticket page, board, reports and pull requests all read it here).

    `tickets` (tickets or their ids; None for every ticket of `calls`) limits the tickets;
    `calls` (default: the organization's whole ledger) limits the rows, e.g. to a report's
    period. A ticket without calls is absent: read it with `.get(pk, NO_COST)`.
    """
    rows = (calls.filter(organization=organization) if calls is not None
            else ModelCall.objects.for_org(organization)).exclude(ticket=None)
    if tickets is not None:
        rows = rows.filter(ticket__in=[getattr(t, "pk", t) for t in tickets])
    grouped = (rows.order_by().values("ticket_id")
               .annotate(calls=Count("pk"), cost=Coalesce(Sum("cost"), _ZERO),
                         input_tokens=Coalesce(Sum("input_tokens"), 0),
                         output_tokens=Coalesce(Sum("output_tokens"), 0),
                         cache_write_tokens=Coalesce(Sum("cache_write_tokens"), 0),
                         cache_read_tokens=Coalesce(Sum("cache_read_tokens"), 0)))
    return {row.pop("ticket_id"): TicketCost(**{**row, "cost": Decimal(row["cost"])})
            for row in grouped}


def ticket_cost(*, ticket: Any) -> TicketCost:
    """What one ticket cost (see `ticket_costs`)."""
    return ticket_costs(organization=ticket.organization, tickets=[ticket]).get(
        ticket.pk, NO_COST)


@dataclass(frozen=True)
class Totals:
    """What a ticket cost: its attempts, and the ledger's rows of it (coder calls, retries,
    escalation and audits) summed; money stays a Decimal."""

    attempts: int
    cost: Decimal
    input_tokens: int
    output_tokens: int
    cache_write_tokens: int
    cache_read_tokens: int

    @property
    def tokens(self) -> int:
        return (self.input_tokens + self.output_tokens + self.cache_write_tokens
                + self.cache_read_tokens)


def ticket_totals(*, ticket: Ticket) -> Totals:
    """The ticket's attempts and its cost as `ticket_cost` sums it."""
    spent = ticket_cost(ticket=ticket)
    attempts = Attempt.objects.for_org(ticket.project.organization).filter(
        ticket=ticket).count()
    return Totals(attempts=attempts, cost=spent.cost, input_tokens=spent.input_tokens,
                  output_tokens=spent.output_tokens,
                  cache_write_tokens=spent.cache_write_tokens,
                  cache_read_tokens=spent.cache_read_tokens)


# --- Cloud spend against the policy's caps ----------------------------------------------------

def cloud_budgets(policy: EffectivePolicy, *, organization: Organization, ticket: Any = None,
                  requirement: Any = None) -> list[Budget]:
    """The caps that apply to a cloud call for this ticket or requirement, with the cloud
    spend against each, summed from the ledger in one query."""
    requirement_id = requirement.pk if requirement is not None else \
        getattr(ticket, "requirement_id", None)
    wanted = []  # (rule, cap, what, the calls that count)
    if ticket is not None and policy.ticket_cloud_cap_usd is not None:
        wanted.append(("ticket_cloud_cap_usd", policy.ticket_cloud_cap_usd, "this ticket",
                       Q(ticket=ticket)))
    if requirement_id is not None and policy.requirement_cloud_cap_usd is not None:
        wanted.append(("requirement_cloud_cap_usd", policy.requirement_cloud_cap_usd,
                       "this requirement",
                       Q(requirement_id=requirement_id) | Q(ticket__requirement_id=requirement_id)))
    if policy.monthly_cloud_cap_usd is not None:
        wanted.append(("monthly_cloud_cap_usd", policy.monthly_cloud_cap_usd,
                       "the organization this month", Q(created_at__gte=month_start())))
    if not wanted:
        return []
    sums = ModelCall.objects.for_org(organization).filter(is_cloud=True).aggregate(
        **{rule: Sum("cost", filter=calls) for rule, _, _, calls in wanted})
    return [Budget(rule, cap, sums[rule] or Decimal("0"), what)
            for rule, cap, what, _ in wanted]


def spend_refusal(policy: EffectivePolicy, *, organization: Organization, estimate: Decimal,
                  ticket: Any = None, requirement: Any = None) -> Refusal | None:
    """Whether a cloud call that may cost up to `estimate` would go over a cap."""
    return over_budget(cloud_budgets(policy, organization=organization, ticket=ticket,
                                     requirement=requirement), estimate)


# --- The Tech Lead's endpoint ------------------------------------------------------------------

class NoTechLeadEndpoint(ApplicationError):
    """The organization has no enabled Anthropic endpoint for this role."""

    code = "no_tech_lead_endpoint"


def tech_lead_endpoint_of(*, organization: Organization, role: str = EndpointRole.TECH_LEAD,
                          self_hosted_only: bool = False) -> InferenceEndpoint:
    """The organization's enabled Anthropic endpoint for `role`, else its Tech Lead's; under
    data residency (`self_hosted_only`) only one that runs on the organization's machines."""
    candidates = [endpoint for endpoint in _anthropic_endpoints(organization)
                  if endpoint.self_hosted or not self_hosted_only]
    endpoint = next((e for e in candidates if e.role == role), None)
    if endpoint is None and role != EndpointRole.TECH_LEAD:
        endpoint = next((e for e in candidates if e.role == EndpointRole.TECH_LEAD), None)
    if endpoint is None:
        if self_hosted_only:
            raise NoTechLeadEndpoint(
                "Data residency is on, and the organization has no enabled self-hosted "
                "endpoint with the Tech Lead role; an admin adds one (a server of its own "
                "that speaks the Anthropic Messages API) under Inference endpoints.")
        raise NoTechLeadEndpoint(
            "The organization has no enabled Anthropic endpoint with the Tech Lead role; an "
            "admin adds one under Inference endpoints.")
    return endpoint


def _anthropic_endpoints(organization: Organization) -> list[InferenceEndpoint]:
    """The organization's enabled Anthropic endpoints by name: one query for every role and
    residency asked, read once per task (haao.reads)."""
    return read_once(("anthropic", organization.pk), lambda: list(
        InferenceEndpoint.objects.for_org(organization)
        .filter(enabled=True, kind=EndpointKind.ANTHROPIC).order_by("name")))
