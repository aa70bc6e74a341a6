"""Reads for inference endpoints and the model-call ledger (totals for cost reports)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Count, DecimalField, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce

from accounts.models import Organization
from agents.models import CallOutcome, InferenceEndpoint, ModelCall


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


def endpoint_has_calls(*, endpoint: InferenceEndpoint) -> bool:
    return ModelCall.objects.for_org(endpoint.organization).filter(endpoint=endpoint).exists()


@dataclass(frozen=True)
class UsageTotals:
    calls: int
    failed_calls: int
    input_tokens: int
    output_tokens: int
    cache_write_tokens: int
    cache_read_tokens: int
    cost: Decimal
    cloud_cost: Decimal
    local_cost: Decimal


_ZERO = Value(Decimal("0"), output_field=DecimalField(max_digits=14, decimal_places=6))


def model_calls_of(*, organization: Organization, since: datetime | None = None,
                   until: datetime | None = None, project: Any = None,
                   ticket: Any = None) -> QuerySet[ModelCall]:
    """The organization's calls, optionally in [since, until) and of one project or ticket."""
    calls = ModelCall.objects.for_org(organization)
    if since is not None:
        calls = calls.filter(created_at__gte=since)
    if until is not None:
        calls = calls.filter(created_at__lt=until)
    if project is not None:
        calls = calls.filter(project=project)
    if ticket is not None:
        calls = calls.filter(ticket=ticket)
    return calls


def _totals(calls: QuerySet[ModelCall]) -> dict[str, Any]:
    return calls.aggregate(
        calls=Count("pk"),
        failed_calls=Count("pk", filter=~Q(outcome=CallOutcome.OK)),
        input_tokens=Coalesce(Sum("input_tokens"), 0),
        output_tokens=Coalesce(Sum("output_tokens"), 0),
        cache_write_tokens=Coalesce(Sum("cache_write_tokens"), 0),
        cache_read_tokens=Coalesce(Sum("cache_read_tokens"), 0),
        total_cost=Coalesce(Sum("cost"), _ZERO),
        cloud_cost=Coalesce(Sum("cost", filter=Q(is_cloud=True)), _ZERO),
        local_cost=Coalesce(Sum("cost", filter=Q(is_cloud=False)), _ZERO),
    )


def usage_totals(*, organization: Organization, since: datetime | None = None,
                 until: datetime | None = None, project: Any = None,
                 ticket: Any = None) -> UsageTotals:
    """Calls, tokens and cost (all, cloud, local) of the organization in one query."""
    calls = model_calls_of(organization=organization, since=since, until=until,
                           project=project, ticket=ticket)
    totals = _totals(calls)
    totals["cost"] = totals.pop("total_cost")
    return UsageTotals(**totals)


def usage_by_endpoint(*, organization: Organization, since: datetime | None = None,
                      until: datetime | None = None) -> list[dict[str, Any]]:
    """Calls, tokens and `total_cost` per endpoint, most expensive first."""
    calls = model_calls_of(organization=organization, since=since, until=until)
    rows = (calls.values("endpoint_id", "endpoint_name", "is_cloud")
            .annotate(calls=Count("pk"), input_tokens=Coalesce(Sum("input_tokens"), 0),
                      output_tokens=Coalesce(Sum("output_tokens"), 0),
                      total_cost=Coalesce(Sum("cost"), _ZERO))
            .order_by("-total_cost", "endpoint_name"))
    return list(rows)
