"""The merge step: accepted work joins its integration branch."""

from __future__ import annotations

import logging
from typing import Any

from django.core.cache import cache

from agents.delivery.branches import (
    branch_merge_ticket,
)
from agents.engine import enqueue
from agents.engine.steps.common import (
    lease_seconds,
    worker_name,
)
from agents.workspaces.remote import STEP_FETCH_SECONDS, workspace_of
from haao.rows import one_or_none
from tickets.models import (
    Attempt,
    AttemptOutcome,
    DeliveryMode,
    Ticket,
    TicketStatus,
)
from tickets.services.engine import (
    progress,
    ticket_merge_conflicted,
)

logger = logging.getLogger(__name__)
S = TicketStatus


def merge_step(*, ticket_id: Any) -> None:
    """Merge an accepted ticket's passed attempt into its integration branch, once.

    A project's merges run as a train: one worker at a time holds the project, merges a
    ticket, lets go and takes the next accepted ticket still waiting, oldest acceptance
    first, so merges never race each other for a branch (the loser of a race merges
    again). A step that finds the project held leaves its ticket to the holder, which looks
    for waiting tickets after it lets go."""
    ticket = one_or_none(Ticket.objects.select_related("project__organization", "decided_by"),
                         pk=ticket_id)
    if ticket is None or ticket.status != S.ACCEPTED or ticket.merged_commit:
        return
    project = ticket.project
    train = f"haao:merge-train:{project.pk}"
    tried: set[Any] = set()
    failed: Exception | None = None
    waiting: Ticket | None = ticket
    while waiting is not None:
        if not cache.add(train, worker_name(), timeout=lease_seconds()):
            break  # the holder takes it after it lets go
        try:
            tried.add(waiting.pk)
            error = _merge_ticket(waiting)
            if error is not None and waiting.pk == ticket.pk:
                failed = error
        finally:
            cache.delete(train)
        # Looked for after letting go: a ticket whose step found the project held was
        # accepted before that, so it is seen here.
        waiting = (Ticket.objects.for_org(project.organization).select_related("decided_by")
                   .filter(project=project, status=S.ACCEPTED, merged_commit="")
                   .exclude(pk__in=tried).order_by("status_changed_at").first())
        if waiting is not None:
            waiting.project = project
    if failed is not None:
        raise failed


def _merge_ticket(ticket: Ticket) -> Exception | None:
    """Merge one ticket of the train; the error that stopped it, logged, so the train goes on
    (the ticket's own step raises it; recovery sends a stuck merge again)."""
    attempt = (Attempt.objects.filter(ticket=ticket, outcome=AttemptOutcome.PASSED)
               .order_by("-number").first())
    if attempt is None:
        progress(ticket=ticket, type="ticket.merge_failed",
                 data={"reason": "It has no passed attempt to merge."})
        return None
    try:
        _merge(ticket, attempt)
    except Exception as error:
        logger.exception("Merging %s failed", ticket.key)
        return error
    return None


def _merge(ticket: Ticket, attempt: Attempt) -> None:
    project = ticket.project
    repo = workspace_of(project, max_age=STEP_FETCH_SECONDS)
    decided = ticket.decided_by.email if ticket.decided_by else "a product owner"
    message = (f"{ticket.key}: {ticket.title}\n\nAccepted by {decided} in HAAO. Attempt "
               f"{attempt.number} by {attempt.model or attempt.executor}.\n")
    branch, result = branch_merge_ticket(ticket=ticket, attempt=attempt, repo=repo,
                                         message=message)
    if result.merged:
        enqueue.dispatch(project_id=project.pk, on_commit=True)
        if project.delivery != DeliveryMode.NONE:
            enqueue.deliver(branch_id=branch.pk, organization=project.organization)
        return
    ticket_merge_conflicted(ticket=ticket, summary=result.summary)
