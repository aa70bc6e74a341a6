"""What follows a ticket state change: the next step is enqueued after the change commits.

Registered once at start-up (agents.apps); tickets.state runs these after commit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.core.cache import cache

from accounts.models import Organization
from agents.engine import enqueue, routing, workers
from tickets.models import Attempt, AttemptOutcome, Project, Requirement, Ticket, TicketStatus
from tickets.signals import project_setup_changed, requirement_created
from tickets.state import Transition, on_enter

logger = logging.getLogger(__name__)

S = TicketStatus
# While a dispatch of a project waits in the queue, more changes need no second one: it
# reads the state when it starts. The mark expires, so a lost message costs seconds only.
DISPATCH_MARK_SECONDS = 10
# A dispatch starts this long after the first change that asks for it, so the changes of a
# busy project (tickets leaving and joining the queue) share one run: one batch, not one
# run per change.
DISPATCH_GATHER_SECONDS = 0.2


def dispatch_mark(project_id: Any) -> str:
    return f"haao:dispatch-pending:{project_id}"


def request_dispatch(project_id: Any) -> None:
    """Enqueue a dispatch of the project unless one is already waiting to start."""
    if cache.add(dispatch_mark(project_id), 1, timeout=DISPATCH_MARK_SECONDS):
        enqueue.dispatch(project_id=project_id, on_commit=False,
                         countdown=DISPATCH_GATHER_SECONDS)


@on_enter(S.APPROVED, S.QUEUED, S.RETRYING, S.ESCALATED, S.AWAITING_ACCEPTANCE, S.BLOCKED,
          S.CANCELLED, S.REJECTED)
def dispatch_after(change: Transition) -> None:
    """A ticket waits for an attempt, or left the project's WIP: dispatch the project."""
    request_dispatch(change.project_id)


@on_enter(S.RUNNING)
def start_model_step(change: Transition) -> None:
    attempt = (Attempt.objects.filter(ticket_id=change.ticket_id,
                                      outcome=AttemptOutcome.RUNNING)
               .order_by("-number").first())
    if attempt is not None:
        enqueue.model_step(attempt_id=attempt.pk, queue=attempt.queue, on_commit=False)


# The audits a running task has said it will run itself (audits_kept): its organization and
# the changes that sent tickets to their audit; None outside one.
_kept: ContextVar[tuple[Organization, list[Transition]] | None] = ContextVar(
    "haao_kept_audits", default=None)


@contextmanager
def audits_kept(organization: Organization) -> Iterator[list[Transition]]:
    """Within this block, an audit of `organization`'s work that this worker would take from
    its queue is not sent through the broker but kept, as the change that sent its ticket to
    the audit, for the caller to run next in the same task (agents.engine.steps.model).
    Recovery sends it again at once if this worker dies first: the worker holds the
    attempt's step (agents.engine.workers)."""
    kept: list[Transition] = []
    token = _kept.set((organization, kept))
    try:
        yield kept
    finally:
        _kept.reset(token)


@on_enter(S.AUDITING)
def start_audit(change: Transition) -> None:
    kept = _kept.get()
    if kept is not None:
        organization, changes = kept
        if organization.pk == change.organization_id and workers.takes(
                routing.queue_for(organization=organization, kind=routing.CLOUD)):
            changes.append(change)
            return
    ticket = Ticket.objects.select_related("organization").filter(pk=change.ticket_id).first()
    if ticket is not None:
        enqueue.audit_step(ticket_id=ticket.pk, organization=ticket.organization,
                           on_commit=False)


@on_enter(S.ACCEPTED)
def start_merge(change: Transition) -> None:
    attempt = (Attempt.objects.filter(ticket_id=change.ticket_id,
                                      outcome=AttemptOutcome.PASSED)
               .order_by("-number").first())
    queue = routing.checks_queue(attempt) if attempt is not None else routing.CHECKS
    enqueue.merge(ticket_id=change.ticket_id, queue=queue, on_commit=False)


def start_decomposition(*, requirement_id: Any, **_: Any) -> None:
    requirement = (Requirement.objects.select_related("organization")
                   .filter(pk=requirement_id).first())
    if requirement is not None:
        enqueue.decompose(requirement_id=requirement.pk, organization=requirement.organization,
                          on_commit=False)


def start_setup_check(*, project_id: Any, **_: Any) -> None:
    """A project was created or its repository, branch or commands changed: check its setup."""
    project = Project.objects.select_related("organization").filter(pk=project_id).first()
    if project is not None:
        enqueue.setup_check(project_id=project.pk, organization=project.organization,
                            on_commit=False)


def register() -> None:
    """Start decomposition on new requirements and the setup check on project changes
    (tickets.signals); the state hooks above register on import."""
    requirement_created.connect(start_decomposition, dispatch_uid="agents.decompose")
    project_setup_changed.connect(start_setup_check, dispatch_uid="agents.setup_check")
