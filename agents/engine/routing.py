"""Where work runs: queues by kind of work, endpoint choice by load, and endpoint slots.

A few shared queues (not one per tenant, which starves on Redis):

- `control`: dispatch, recovery and health checks; short database work;
- `cloud`: calls to the Tech Lead (decompose, audit, solve);
- `local`: calls to local coder models;
- `checks`: applying edits, running Definitions of Done in the sandbox, merging.

An organization whose coder endpoints are *dedicated* sends all of its repository and model
work to its endpoint's own queue instead, which only its own worker consumes, on its own
machine: its code and model traffic never pass through HAAO's shared workers.

Each endpoint's `max_concurrency` is enforced here with lease rows (`EndpointLease`), so
the limit holds across every worker and machine.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from django.db import connection, models, transaction
from django.db.models import Count, Q
from django.utils import timezone

from accounts.models import Organization
from agents.models import (
    EndpointKind,
    EndpointLease,
    EndpointRole,
    HealthStatus,
    InferenceEndpoint,
)
from agents.selectors import NoTechLeadEndpoint, tech_lead_endpoint_of
from haao.reads import read_once
from tickets.models import Attempt, AttemptOutcome, AttemptStage

CONTROL = "control"
CLOUD = "cloud"
LOCAL = "local"
CHECKS = "checks"
SHARED_QUEUES = (CONTROL, CLOUD, LOCAL, CHECKS)


def coder_endpoints(*, organization: Organization) -> list[InferenceEndpoint]:
    """The organization's enabled local coders; only its dedicated ones if it has any.
    Read once per task (haao.reads)."""
    endpoints = read_once(("coders", organization.pk), lambda: list(
        InferenceEndpoint.objects.for_org(organization).filter(
            enabled=True, role=EndpointRole.CODER, kind=EndpointKind.OPENAI_COMPATIBLE)
        .order_by("name")))
    dedicated = [endpoint for endpoint in endpoints if endpoint.dedicated_queue]
    return dedicated or list(endpoints)


def dedicated_queue_of(*, organization: Organization) -> str:
    """The queue of the organization's own worker, or "" when it uses the shared ones."""
    for endpoint in coder_endpoints(organization=organization):
        if endpoint.dedicated_queue:
            return endpoint.dedicated_queue
    return ""


def queue_for(*, organization: Organization, kind: str) -> str:
    """The queue for `kind` of work (CLOUD, LOCAL, CHECKS) of `organization`."""
    return dedicated_queue_of(organization=organization) or kind


def attempt_queue(endpoint: InferenceEndpoint) -> str:
    """The queue of the model step of an attempt on `endpoint`."""
    if endpoint.dedicated_queue:
        return endpoint.dedicated_queue
    return CLOUD if endpoint.kind == EndpointKind.ANTHROPIC else LOCAL


def checks_queue(attempt: Attempt) -> str:
    """The queue that applies and checks an attempt (and later merges it)."""
    if attempt.queue and attempt.queue not in SHARED_QUEUES:
        return attempt.queue
    return CHECKS


def _loads(endpoints: list[InferenceEndpoint]) -> dict[Any, int]:
    """Unfinished model steps assigned to each endpoint (waiting or calling)."""
    rows = (Attempt.objects.filter(inference_endpoint__in=endpoints,
                                   outcome=AttemptOutcome.RUNNING,
                                   stage__in=(AttemptStage.PENDING, AttemptStage.CODING))
            .values("inference_endpoint").annotate(n=Count("id")))
    return {row["inference_endpoint"]: row["n"] for row in rows}


class CoderPicker:
    """Picks coders for a batch of attempts: the healthy coders and their loads are read on
    the first pick, once, and each pick counts, so a batch spreads over the coders as single
    picks would (a batch that needs no coder reads nothing)."""

    def __init__(self, *, organization: Organization, exclude: tuple[Any, ...] = (),
                 self_hosted_only: bool = False) -> None:
        self.organization, self.exclude = organization, exclude
        self.self_hosted_only = self_hosted_only
        self.healthy: list[InferenceEndpoint] | None = None
        self.loads: dict[Any, int] = {}
        self.none_left = False  # the last pick found no coder

    def pick(self) -> InferenceEndpoint | None:
        """The healthy coder with the most room (fewest assigned steps per slot); None if
        there is none."""
        if self.healthy is None:
            self.healthy = [
                endpoint for endpoint in coder_endpoints(organization=self.organization)
                if endpoint.health_status != HealthStatus.FAILING
                and endpoint.pk not in self.exclude
                and (endpoint.self_hosted or not self.self_hosted_only)]
            self.loads = _loads(self.healthy) if self.healthy else {}
        self.none_left = not self.healthy
        if not self.healthy:
            return None
        chosen = min(self.healthy,
                     key=lambda e: (self.loads.get(e.pk, 0) / e.max_concurrency, e.name))
        self.loads[chosen.pk] = self.loads.get(chosen.pk, 0) + 1
        return chosen


def pick_coder(*, organization: Organization, exclude: tuple[Any, ...] = (),
               self_hosted_only: bool = False) -> InferenceEndpoint | None:
    """The healthy coder with the most room (fewest assigned steps per slot); None if none.
    Under data residency (`self_hosted_only`) only coders on the organization's machines."""
    return CoderPicker(organization=organization, exclude=exclude,
                       self_hosted_only=self_hosted_only).pick()


def tech_lead(*, organization: Organization, role: str = EndpointRole.TECH_LEAD,
              self_hosted_only: bool = False) -> InferenceEndpoint | None:
    """The enabled Anthropic endpoint for `role` (auditor falls back to the Tech Lead)."""

    try:
        return tech_lead_endpoint_of(organization=organization, role=role,
                                     self_hosted_only=self_hosted_only)
    except NoTechLeadEndpoint:
        return None


# One statement takes a slot: it counts the endpoint's live leases after the endpoint's row is
# locked, inserts when there is room, and takes over the holder's own lease once it ran out.
_TAKE_SLOT = """
    INSERT INTO agents_endpointlease (organization_id, endpoint_id, holder, expires_at)
    SELECT %s, %s, %s, %s
    WHERE (SELECT COUNT(*) FROM agents_endpointlease
           WHERE endpoint_id = %s AND expires_at >= %s) < %s
    ON CONFLICT (holder) DO UPDATE SET endpoint_id = excluded.endpoint_id,
        expires_at = excluded.expires_at, organization_id = excluded.organization_id
    WHERE agents_endpointlease.expires_at < %s
    RETURNING id"""


def slot_acquire(*, endpoint: InferenceEndpoint, holder: str, seconds: int) -> bool:
    """Take one of the endpoint's slots for `holder`; False when all are taken or `holder`
    holds one already (another delivery of the same step is running). A lease that ran out
    counts for nothing, and one of `holder`'s own (its worker died) is taken over."""
    now = timezone.now()
    organization = _db_value("organization", endpoint.organization_id)
    endpoint_id = _db_value("endpoint", endpoint.pk)
    until, now = _db_value("expires_at", now + timedelta(seconds=seconds)), \
        _db_value("expires_at", now)
    with transaction.atomic():
        # The endpoint row is the lock that serializes counting and taking its slots. The
        # insert is a statement of its own, so it counts every slot taken before the lock.
        list(InferenceEndpoint.objects.select_for_update().filter(pk=endpoint.pk)
             .values_list("pk"))
        with connection.cursor() as cursor:
            cursor.execute(_TAKE_SLOT, [organization, endpoint_id, holder, until,
                                        endpoint_id, now, endpoint.max_concurrency, now])
            return cursor.fetchone() is not None


def _db_value(name: str, value: Any) -> Any:
    """`value` of the lease's field `name` as the ORM would pass it to this database."""
    field = cast("models.Field[Any, Any]", EndpointLease._meta.get_field(name))
    return field.get_db_prep_value(value, connection)


def slot_renew(*, holder: str, seconds: int) -> None:
    EndpointLease.objects.filter(holder=holder).update(
        expires_at=timezone.now() + timedelta(seconds=seconds))


def slot_release(*, holder: str) -> None:
    EndpointLease.objects.filter(holder=holder).delete()


def dedicated_queues() -> list[str]:
    """Every dedicated queue configured, for a single-machine worker to consume."""
    return sorted(set(InferenceEndpoint.objects.filter(enabled=True)
                      .filter(~Q(dedicated_queue="")).values_list("dedicated_queue", flat=True)))
