"""The model-call ledger: every call's tokens and cost, recorded once, and the prices they are
recorded at."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Organization
from agents import pricing
from agents.models import (
    CallOutcome,
    CallRole,
    EndpointKind,
    InferenceEndpoint,
    ModelCall,
)
from haao.audit import Actor, audit_record
from haao.errors import Conflict, field_error

MAX_TOKENS = 2**31 - 1


def endpoint_price(*, endpoint: InferenceEndpoint, at: datetime | None = None) -> pricing.Price:
    """The rates of a call to `endpoint` at `at`: the table's for Anthropic unless overridden."""
    if endpoint.kind != EndpointKind.ANTHROPIC:
        local_in = endpoint.price_input or Decimal(0)
        return pricing.Price(input=local_in, output=endpoint.price_output or Decimal(0),
                             cache_write=local_in, cache_read=local_in, source="endpoint")
    rate_in, rate_out = endpoint.price_input, endpoint.price_output
    if rate_in is not None and rate_out is not None:
        return pricing.Price.from_input_output(rate_in, rate_out, source="endpoint")
    table = pricing.price_for(endpoint.model, at=at)  # unknown model: an error, never 0
    if rate_in is None and rate_out is None:
        return table
    if rate_in is not None:
        return pricing.Price.from_input_output(rate_in, table.output, source="endpoint")
    return pricing.Price(table.input, rate_out or Decimal(0), table.cache_write,
                         table.cache_read, source="endpoint",
                         effective_from=table.effective_from)


# --- Recording a call ----------------------------------------------------------------------

def _tokens(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKENS:
        raise field_error(field, "Expected a whole number of at least 0.")
    return value


def _same_org(organization: Organization, **objects: Any) -> None:
    for field, obj in objects.items():
        if obj is not None and obj.organization_id != organization.pk:
            raise field_error(field, "It belongs to another organization.")


def model_call_record(
    *, organization: Organization, endpoint: InferenceEndpoint, role: str, outcome: str,
    model: str = "", input_tokens: int = 0, output_tokens: int = 0,
    cache_write_tokens: int = 0, cache_read_tokens: int = 0, latency_ms: int = 0,
    request_id: str = "", error: str = "", redactions: int = 0, project: Any = None,
    requirement: Any = None, ticket: Any = None, attempt: Any = None,
    idempotency_key: str | None = None, at: datetime | None = None,
) -> ModelCall:
    """One ledger row, costed at the price in force at `at`; a repeated key returns the first."""
    if role not in CallRole.values:
        raise field_error("role", f"Choose one of: {', '.join(CallRole.values)}.")
    if outcome not in CallOutcome.values:
        raise field_error("outcome", f"Choose one of: {', '.join(CallOutcome.values)}.")
    counts = {name: _tokens(name, value) for name, value in (
        ("input_tokens", input_tokens), ("output_tokens", output_tokens),
        ("cache_write_tokens", cache_write_tokens), ("cache_read_tokens", cache_read_tokens),
        ("latency_ms", latency_ms), ("redactions", redactions))}
    _same_org(organization, endpoint=endpoint, project=project, requirement=requirement,
              ticket=ticket, attempt=attempt)
    # A call of an attempt is a call of its ticket (an audit may be handed only the attempt):
    # the ticket's cost, `agents.selectors.ticket_costs`, sums the rows naming the ticket.
    if attempt is not None and ticket is None:
        ticket = attempt.ticket
    if ticket is not None and project is None:
        project = ticket.project
    if idempotency_key is not None and not 0 < len(idempotency_key) <= 200:
        raise field_error("idempotency_key", "Use 1-200 characters.")
    when = at or timezone.now()
    model = model or endpoint.model
    price = endpoint_price(endpoint=endpoint, at=when)
    cost = pricing.cost_of(price, counts["input_tokens"], counts["output_tokens"],
                           counts["cache_write_tokens"], counts["cache_read_tokens"])
    try:
        with transaction.atomic():
            call = ModelCall.objects.create(
                organization=organization, endpoint=endpoint, endpoint_name=endpoint.name,
                is_cloud=endpoint.is_cloud, model=model[:200], role=role, outcome=outcome,
                error=error[:1000], request_id=request_id[:200], cost=cost,
                price=price.snapshot(), project=project, requirement=requirement,
                ticket=ticket, attempt=attempt, idempotency_key=idempotency_key,
                created_at=when, **counts)
            audit_record(organization=organization, actor=Actor.model(call.model),
                         type="model_call.recorded", target=call,
                         project_id=project.pk if project is not None else None,
                         data={"endpoint": endpoint.name, "role": role, "outcome": outcome,
                               "input_tokens": call.input_tokens,
                               "output_tokens": call.output_tokens,
                               "cost": str(cost), "latency_ms": call.latency_ms})
    except IntegrityError:
        # The key was recorded before (a delivery of the same task run again, or a concurrent
        # one that won the race): that row stands. Asked only then, so a new call is one
        # insert.
        existing = ModelCall.objects.filter(idempotency_key=idempotency_key).first()
        if idempotency_key is None or existing is None:
            raise
        return _same_call(existing, organization)
    return call


def _same_call(existing: ModelCall, organization: Organization) -> ModelCall:
    if existing.organization_id != organization.pk:
        raise Conflict("This idempotency key was used by another organization.",
                       details={"idempotency_key": ["taken"]})
    return existing
