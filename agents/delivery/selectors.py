"""Reads for delivery: which tickets a branch carries, where a ticket's work went."""

from __future__ import annotations

from django.db.models import F, Prefetch

from agents.models import IntegrationBranch
from haao.models import AuditEvent
from tickets.models import (
    Attempt,
    AttemptOutcome,
    DeliveryMode,
    Project,
    Requirement,
    Ticket,
)
from tickets.selectors import audit_outcome

# A pull request lists at most this many tickets (a requirement rarely has more than ten).
PULL_REQUEST_TICKETS = 100


def branch_tickets(branch: IntegrationBranch) -> list[tuple[Ticket, Attempt | None, str]]:
    """The merged tickets a branch carries, each with its passed attempt (and its checks) and
    the audit's verdict in words."""
    tickets = Ticket.objects.for_org(branch.project.organization).filter(
        project=branch.project).exclude(merged_commit="").select_related("project")
    if branch.requirement_id:
        tickets = tickets.filter(requirement_id=branch.requirement_id)
    passed = Attempt.objects.filter(outcome=AttemptOutcome.PASSED).order_by("-number") \
        .prefetch_related("checks")
    found = list(tickets.order_by("merged_at").prefetch_related(
        Prefetch("attempts", queryset=passed, to_attr="passed_attempts"))[:PULL_REQUEST_TICKETS])
    verdicts: dict[str, str] = {}
    events = AuditEvent.objects.filter(
        organization_id=branch.organization_id, type="ticket.audited",
        target_id__in=[str(t.pk) for t in found]).order_by("seq")
    for event in events:
        outcome = audit_outcome(event)
        if outcome is not None:
            verdicts[event.target_id] = outcome.words[:len(outcome.verdict) + 200]
    return [(t, next(iter(t.passed_attempts), None), verdicts.get(str(t.pk), "not audited"))
            for t in found]


def ticket_delivery(ticket: Ticket) -> dict[str, str | int | None]:
    """Where an accepted ticket's work is: branch, commit, pull request."""
    if not ticket.merged_commit:
        return {}
    project = ticket.project
    branches = IntegrationBranch.objects.filter(project=project).select_related("project")
    if project.delivery == DeliveryMode.PULL_REQUEST and ticket.requirement_id:
        branch = branches.filter(requirement_id=ticket.requirement_id).first()
    else:
        branch = branches.filter(name=project.integration_branch).first()
    if branch is None:
        return {"commit": ticket.merged_commit}
    return branch_summary(branch) | {"commit": ticket.merged_commit}


def branch_summary(branch: IntegrationBranch) -> dict[str, str | int | None]:
    """A branch's delivery as the API and pages show it."""
    return {"id": str(branch.pk), "project": branch.project.key, "branch": branch.name,
            "head": branch.head, "status": branch.status,
            "delivered_commit": branch.delivered_commit, "failure": branch.failure,
            "next_try_at": branch.next_try_at.isoformat() if branch.next_try_at else None,
            "pull_request_number": branch.pull_request_number,
            "pull_request_url": branch.pull_request_url,
            "pull_request_state": branch.pull_request_state}


def requirement_delivery(requirement: Requirement) -> dict[str, str | int | None]:
    """Where a requirement's pull request stands, if it has one."""
    branch = (IntegrationBranch.objects.filter(requirement=requirement)
              .exclude(head=F("base")).select_related("project").first())
    return branch_summary(branch) if branch else {}


def project_branches(project: Project, *, limit: int = 20) -> list[dict[str, str | int | None]]:
    """HAAO's branches of a project, most recently moved first, as pages show them."""
    branches = (IntegrationBranch.objects.for_org(project.organization).filter(project=project)
                .exclude(head=F("base")).select_related("project")
                .order_by("-updated_at")[:limit])
    return [branch_summary(branch) for branch in branches]
