"""Finding lost work: attempts whose worker died, steps whose message was lost, and stalls.

Run periodically by beat (`haao.recover`). Everything it re-enqueues is idempotent, so a
step that was merely slow is not harmed: its claim still stands and the new delivery
returns at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from agents.engine import enqueue, hooks, routing
from agents.engine.options import options_for
from agents.engine.steps import after_attempt, lease_seconds
from agents.engine.workers import held_by_lost_workers
from agents.execution import attempt_end
from agents.models import (
    DeliveryStatus,
    EndpointLease,
    InferenceEndpoint,
    IntegrationBranch,
    PullRequestState,
)
from haao.errors import Conflict
from policies.selectors import effective_policy
from tickets.models import (
    Attempt,
    AttemptOutcome,
    AttemptStage,
    Requirement,
    RequirementStatus,
    Ticket,
    TicketStatus,
)
from tickets.services.attempts import attempt_nudged, attempt_stalled
from tickets.services.engine import WAITING_FOR_ATTEMPT, ticket_attempt_finished

logger = logging.getLogger(__name__)

S = TicketStatus


@dataclass
class Recovered:
    """What one recovery pass did, for the log and for tests."""

    stalled: list[Any] = field(default_factory=list)
    poisoned: list[Any] = field(default_factory=list)
    undecided: list[Any] = field(default_factory=list)
    nudged: list[Any] = field(default_factory=list)
    audits: list[Any] = field(default_factory=list)
    merges: list[Any] = field(default_factory=list)
    decompositions: list[Any] = field(default_factory=list)
    projects: list[Any] = field(default_factory=list)
    deliveries: list[Any] = field(default_factory=list)
    pull_requests: list[Any] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any(vars(self).values())


def _resend(attempt: Attempt) -> None:
    """Send the step the attempt waits for (its model, or its checks) to its queue again."""
    if attempt.stage in (AttemptStage.PENDING, AttemptStage.CODING):
        enqueue.model_step(attempt_id=attempt.pk, queue=attempt.queue, on_commit=False)
    else:
        enqueue.check_step(attempt_id=attempt.pk, queue=routing.checks_queue(attempt),
                           on_commit=False)


def _poison(attempt: Attempt) -> bool:
    """Fail an attempt that lost its worker too often (it may be what kills them)."""
    attempt = (Attempt.objects.select_related("ticket__project__organization")
               .get(pk=attempt.pk))
    ticket = attempt.ticket
    try:
        done = attempt_end(attempt=attempt, outcome=AttemptOutcome.ERROR, error=(
            f"Its worker was lost {attempt.lost + 1} times during the {attempt.stage} step "
            "(killed, out of memory or restarted); HAAO stopped delivering it."))
    except Conflict:
        return False
    after_attempt(done, ticket=ticket)
    return True


def recover(*, now: Any = None) -> Recovered:
    """One pass over everything that should be moving but is not."""
    now = now or timezone.now()
    lease = timedelta(seconds=lease_seconds())
    done = Recovered()
    # 1. A claim whose lease ran out, or whose step was received by a worker that no longer
    # beats (agents.engine.workers): its worker is gone. The second is known at once, not a
    # lease later; a worker wrongly taken for gone is fenced by the new claim.
    claimed = list(Attempt.objects.filter(outcome=AttemptOutcome.RUNNING,
                                          stage__in=(AttemptStage.CODING, AttemptStage.CHECKING)))
    gone = held_by_lost_workers(attempt.pk for attempt in claimed
                                if attempt.lease_expires_at and attempt.lease_expires_at >= now)
    for attempt in claimed:
        expired = attempt.lease_expires_at is None or attempt.lease_expires_at < now
        if not expired and attempt.pk not in gone:
            continue
        if attempt.lost + 1 >= settings.HAAO_MAX_DELIVERIES:
            if _poison(attempt):
                done.poisoned.append(attempt.pk)
            continue
        stage = attempt.stage
        if attempt_stalled(attempt=attempt, worker_gone=not expired):
            attempt.stage = (AttemptStage.PENDING if stage == AttemptStage.CODING
                             else AttemptStage.ANSWERED)
            _resend(attempt)
            done.stalled.append(attempt.pk)
    # 1b. An attempt that finished while its ticket was never moved on (the worker died
    # between recording the end and deciding what follows): decide now. The decision is
    # idempotent, so a worker that is merely slow is not harmed.
    for ticket in (Ticket.objects.filter(status=S.RUNNING, status_changed_at__lt=now - lease)
                   .exclude(attempts__outcome=AttemptOutcome.RUNNING)
                   .select_related("project__organization")):
        latest = Attempt.objects.filter(ticket=ticket).order_by("-number").first()
        if latest is not None and ticket_attempt_finished(
                attempt=latest, options=options_for(project=ticket.project)) is not None:
            done.undecided.append(ticket.pk)
    # 2. A waiting step whose message died with the worker that received it (that worker no
    # longer beats, agents.engine.workers): send it again now. One waiting much longer than
    # a queue takes may be lost too (a broker restarted without persistence): send it again
    # then. Not sooner: under a backlog the queue holds it, and every copy sent costs a
    # delivery that finds nothing to do.
    resend = timedelta(seconds=settings.HAAO_RESEND_AFTER_SECONDS)
    steps = list(Attempt.objects.filter(outcome=AttemptOutcome.RUNNING,
                                        stage__in=(AttemptStage.PENDING, AttemptStage.ANSWERED))
                 .exclude(pk__in=done.stalled))  # sent again a moment ago, in 1.
    lost = held_by_lost_workers(attempt.pk for attempt in steps)
    for attempt in steps:
        if (attempt.step_at < now - resend or attempt.pk in lost) \
                and attempt_nudged(attempt=attempt):
            _resend(attempt)
            done.nudged.append(attempt.pk)
    # Endpoint slots whose lease ran out (their worker died) count for nothing already; the
    # rows go now.
    EndpointLease.objects.filter(expires_at__lt=now).delete()
    live = set(EndpointLease.objects.values_list("holder", flat=True))
    stale = Q(status_changed_at__lt=now - resend)
    # 3. Audits and merges that no worker is doing. An audit is sent again once it waited
    # longer than a queue takes, or at once when the worker that held its attempt's last step
    # is gone: that worker may have kept the audit to run in the same task
    # (agents.engine.hooks.audits_kept), so no message of it exists.
    audited = dict(Attempt.objects.filter(ticket__status=S.AUDITING)
                   .order_by("ticket_id", "number").values_list("ticket_id", "pk"))  # latest
    lost_audits = held_by_lost_workers(audited.values())
    orphaned = [ticket_id for ticket_id, attempt_id in audited.items()
                if attempt_id in lost_audits]
    for ticket in (Ticket.objects.filter(stale | Q(pk__in=orphaned), status=S.AUDITING)
                   .select_related("organization")):
        attempt_id = audited.get(ticket.pk)
        if attempt_id is not None and f"audit:{attempt_id}" not in live:
            enqueue.audit_step(ticket_id=ticket.pk, organization=ticket.organization,
                               on_commit=False)
            done.audits.append(ticket.pk)
    for ticket in Ticket.objects.filter(stale, status=S.ACCEPTED, merged_commit=""):
        latest = (Attempt.objects.filter(ticket=ticket, outcome=AttemptOutcome.PASSED)
                  .order_by("-number").first())
        if latest is not None:
            enqueue.merge(ticket_id=ticket.pk, queue=routing.checks_queue(latest),
                          on_commit=False)
            done.merges.append(ticket.pk)
    # 4. Decompositions that no worker is doing.
    for requirement in (Requirement.objects.filter(status=RequirementStatus.DECOMPOSING,
                                                   created_at__lt=now - resend)
                        .select_related("organization")):
        if f"decompose:{requirement.pk}" not in live:
            enqueue.decompose(requirement_id=requirement.pk,
                              organization=requirement.organization, on_commit=False)
            done.decompositions.append(requirement.pk)
    # 5. Projects with tickets waiting for an attempt (e.g. for a healthy endpoint).
    waiting = (Ticket.objects.filter(status__in=(*WAITING_FOR_ATTEMPT, S.APPROVED, S.REJECTED))
               .exclude(attempts__outcome=AttemptOutcome.RUNNING)
               .values_list("project_id", flat=True).distinct())
    for project_id in waiting:
        hooks.request_dispatch(project_id)
        done.projects.append(project_id)
    # 6. Deliveries due again (a failure's back-off passed), or whose message was lost.
    due = (IntegrationBranch.objects.filter(status=DeliveryStatus.FAILED, next_try_at__lte=now)
           | IntegrationBranch.objects.filter(status=DeliveryStatus.PENDING,
                                              updated_at__lt=now - resend))
    for branch in due.select_related("organization"):
        enqueue.deliver(branch_id=branch.pk, organization=branch.organization, on_commit=False)
        done.deliveries.append(branch.pk)
    # 7. Open pull requests not heard of for a while (the fallback when no webhook comes).
    poll = timedelta(seconds=settings.HAAO_PULL_REQUEST_POLL_SECONDS)
    for branch in (IntegrationBranch.objects.filter(
            pull_request_state=PullRequestState.OPEN,
            pull_request_checked_at__lt=now - poll).select_related("organization")):
        enqueue.poll_pull_request(branch_id=branch.pk, organization=branch.organization)
        done.pull_requests.append(branch.pk)
    if done:
        logger.info("Recovery: %s", {k: len(v) for k, v in vars(done).items() if v})
    return done


def check_endpoints() -> int:
    """Send a health check of every enabled endpoint to the queue that may reach it."""
    count = 0
    residency: dict[Any, bool] = {}
    for endpoint in InferenceEndpoint.objects.filter(enabled=True).select_related(
            "organization").only("pk", "dedicated_queue", "self_hosted", "organization"):
        organization = endpoint.organization
        if organization.pk not in residency:
            residency[organization.pk] = effective_policy(
                organization=organization, with_version=False).data_residency
        if endpoint.is_cloud and residency[organization.pk]:
            continue  # under the organization's data residency not even a ping goes out

        enqueue.check_endpoint(endpoint_id=endpoint.pk,
                               queue=endpoint.dedicated_queue or routing.CONTROL,
                               expires=settings.HAAO_ENDPOINT_HEALTH_INTERVAL)
        count += 1
    return count
