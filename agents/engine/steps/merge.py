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
    """Merge an accepted ticket's passed attempt into the integration branch, once."""
    ticket = one_or_none(Ticket.objects.select_related("project__organization", "decided_by"),
                         pk=ticket_id)
    if ticket is None or ticket.status != S.ACCEPTED or ticket.merged_commit:
        return
    attempt = (Attempt.objects.filter(ticket=ticket, outcome=AttemptOutcome.PASSED)
               .order_by("-number").first())
    if attempt is None:
        progress(ticket=ticket, type="ticket.merge_failed",
                 data={"reason": "It has no passed attempt to merge."})
        return
    claim = f"haao:merging:{ticket.pk}"
    if not cache.add(claim, worker_name(), timeout=lease_seconds()):
        return  # another delivery is merging it; the merge is idempotent anyway
    try:
        _merge(ticket, attempt)
    finally:
        cache.delete(claim)


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
