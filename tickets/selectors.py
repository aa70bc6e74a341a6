"""Reads for projects, requirements, tickets and their events, filtered by what the caller
may see."""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any

from django.conf import settings
from django.db.models import Max, OuterRef, Prefetch, QuerySet, Subquery
from guardian.shortcuts import get_objects_for_user

from accounts.models import Membership, Organization, User
from accounts.roles import Capability, role_can
from accounts.selectors import without_types
from haao.models import AuditEvent, ProgressEvent
from tickets.keys import PROJECT_KEY_RE, parse_requirement_key, parse_ticket_key
from tickets.models import (
    NEEDS_ADMIN,
    Attempt,
    CheckResult,
    Project,
    Requirement,
    RequirementStatus,
    Ticket,
    TicketStatus,
)


def projects_visible_to(*, membership: Membership) -> QuerySet[Project]:
    """Every project for admins and managers; granted ones for everyone else (one query)."""
    projects = Project.objects.for_org(membership.organization)
    if role_can(membership.role, Capability.VIEW_ALL_PROJECTS):
        return projects
    return get_objects_for_user(
        membership.user, ["tickets.view_project", "tickets.approve_project"], klass=projects,
        any_perm=True, accept_global_perms=False,
    )


def _decides(membership: Membership) -> str:
    """Where the member decides at the gates (accounts.roles): "all" projects, the "granted"
    ones (django-guardian's approve_project), or "none"."""
    if role_can(membership.role, Capability.DECIDE_IN_ALL_PROJECTS):
        return "all"
    return "granted" if role_can(membership.role, Capability.WRITE_REQUIREMENTS) else "none"


def can_approve_in(*, membership: Membership, project: Project) -> bool:
    """Whether the member decides at the gates of `project`."""
    decides = _decides(membership)
    if decides != "granted":
        return decides == "all"
    return membership.user.has_perm("tickets.approve_project", project)


def project_by_key(*, membership: Membership, key: str) -> Project | None:
    """The project called `key` if the caller may see it; None for a malformed key."""
    if not PROJECT_KEY_RE.match(key):
        return None
    return projects_visible_to(membership=membership).filter(key=key).first()


# --- Requirements ----------------------------------------------------------------------------

def requirements_of(*, project: Project) -> QuerySet[Requirement]:
    """A project's requirements, newest first."""
    return (Requirement.objects.for_org(project.organization).filter(project=project)
            .select_related("project__organization", "created_by", "approved_by")
            .order_by("-created_at"))


def requirement_by_key(*, membership: Membership, key: str) -> Requirement | None:
    """The requirement `PAY-R3` with its tickets in order and their dependencies, if the
    caller may see its project."""
    parsed = parse_requirement_key(key)
    if parsed is None:
        return None
    project_key, number = parsed
    dependencies = Ticket.objects.select_related("project").order_by("number")
    tickets = (Ticket.objects.select_related("project", "requirement")
               .prefetch_related(Prefetch("dependencies", queryset=dependencies))
               .order_by("order", "number"))
    return (Requirement.objects.for_org(membership.organization)
            .filter(project__in=projects_visible_to(membership=membership),
                    project__key=project_key, number=number)
            .select_related("project__organization", "created_by", "approved_by")
            .prefetch_related(Prefetch("tickets", queryset=tickets))
            .first())


# --- Tickets ---------------------------------------------------------------------------------

def tickets_visible_to(*, membership: Membership) -> QuerySet[Ticket]:
    """Tickets of the projects the caller may see, newest first, project and requirement
    joined.

    For a member granted some projects, their ids are read first (one small query) and the
    tickets filtered by that list: with the grants as a subquery PostgreSQL misjudged how
    many tickets match and read every match of a filter before sorting (docs/benchmarks.md,
    "Ticket list").
    """
    tickets = Ticket.objects.for_org(membership.organization)
    if not role_can(membership.role, Capability.VIEW_ALL_PROJECTS):
        visible = list(projects_visible_to(membership=membership).values_list("pk", flat=True))
        tickets = tickets.filter(project_id__in=visible)
    return tickets.select_related("project", "requirement").order_by("-created_at")


# What a list row shows; the spec and long texts stay in the database.
LIST_FIELDS = ("id", "number", "title", "status", "order", "complexity", "attempt_count",
               "retries_left", "created_at", "status_changed_at", "requirement_id",
               "project__id", "project__key")


def ticket_list(*, membership: Membership) -> QuerySet[Ticket]:
    """The caller's visible tickets for a list page: only the columns a row shows, one query
    whatever the page size.

    The requirement's number is a subquery of the row, not a join: PostgreSQL then looks it
    up for the rows of the page only, after sorting, instead of for every match.
    """
    number = (Requirement.objects.filter(pk=OuterRef("requirement_id")).order_by()
              .values("number")[:1])
    return (tickets_visible_to(membership=membership).select_related(None)
            .select_related("project").only(*LIST_FIELDS)
            .annotate(requirement_number=Subquery(number)))


def ticket_by_key(*, membership: Membership, key: str) -> Ticket | None:
    """The ticket `PAY-12` if the caller may see its project; None for a malformed key."""
    parsed = parse_ticket_key(key)
    if parsed is None:
        return None
    project_key, number = parsed
    return (tickets_visible_to(membership=membership)
            .filter(project__key=project_key, number=number)
            .select_related("project__organization", "approved_by", "decided_by")
            .first())


def ticket_detail(*, ticket: Ticket) -> Ticket:
    """`ticket` with its dependencies and attempts (each with its checks) loaded."""
    dependencies = Ticket.objects.select_related("project").order_by("number")
    attempts = Attempt.objects.order_by("number")
    checks = CheckResult.objects.order_by("index")
    return (Ticket.objects.for_org(ticket.project.organization).filter(pk=ticket.pk)
            .select_related("project__organization", "requirement", "approved_by",
                            "decided_by")
            .prefetch_related(Prefetch("dependencies", queryset=dependencies))
            .prefetch_related(Prefetch("attempts", queryset=attempts))
            .prefetch_related(Prefetch("attempts__checks", queryset=checks))
            .get())


# --- Events ----------------------------------------------------------------------------------

# A row of a project's or ticket's stream: an audit event or a progress event, numbered by the
# organization's sealer in one sequence.
StreamEvent = AuditEvent | ProgressEvent


def _stream(queries: Iterable[QuerySet[Any]], *, after: int, limit: int) -> list[StreamEvent]:
    """Up to `limit` sealed rows of the queries after `after`, in seq order."""
    pages = [list(query.filter(seq__gt=after).order_by("seq")[:limit]) for query in queries]
    return list(heapq.merge(*pages, key=attrgetter("seq")))[:limit]


def project_events(*, project: Project, after: int, limit: int,
                   hidden: Iterable[str] = ()) -> list[StreamEvent]:
    """Up to `limit` events of `project` with a sequence number above `after`, oldest first,
    without the event types starting with a `hidden` prefix (accounts.roles)."""
    return _stream([without_types(model.objects.for_org(project.organization)
                                  .filter(project_id=project.pk), hidden)
                    for model in (AuditEvent, ProgressEvent)], after=after, limit=limit)


def ticket_events(*, ticket: Ticket, after: int, limit: int) -> list[StreamEvent]:
    """Up to `limit` events of `ticket` with a sequence number above `after`, oldest first."""
    return _stream([model.objects.for_org(ticket.project.organization)
                    .filter(target_type=Ticket._meta.label_lower, target_id=str(ticket.pk))
                    for model in (AuditEvent, ProgressEvent)], after=after, limit=limit)


def last_project_seq(*, project: Project) -> int:
    """The sequence number of the project's newest sealed event, 0 when it has none."""
    return max(int(model.objects.for_org(project.organization).filter(project_id=project.pk)
                   .aggregate(last=Max("seq"))["last"] or 0)
               for model in (AuditEvent, ProgressEvent))


# --- Decisions waiting for a person ----------------------------------------------------------

@dataclass(frozen=True)
class Decision:
    """Something waiting for a person who decides in its project, with what unblocks it.

    kind: "requirement" (Gate 1), "ticket" (Gate 2), "blocked" (a blocked ticket) or
    "failed" (a requirement whose decomposition failed); `reason` says why it is stuck.
    """

    kind: str
    key: str
    title: str
    organization: Organization
    project: Project
    since: datetime
    reason: str = ""

    @property
    def path(self) -> str:
        section = "requirements" if self.kind in ("requirement", "failed") else "tickets"
        return f"/o/{self.organization.slug}/{section}/{self.key}/"

    @property
    def needs_admin(self) -> bool:
        return self.kind == "blocked" and self.reason.startswith(NEEDS_ADMIN)

    @property
    def label(self) -> str:
        return {"requirement": "Gate 1 · approve tickets", "ticket": "Gate 2 · accept work",
                "failed": "Decomposition failed"}.get(self.kind, "Blocked")

    @property
    def action(self) -> str:
        """What unblocks it, as the link to the page where that is done reads."""
        if self.needs_admin:
            cause = self.reason.removeprefix(NEEDS_ADMIN).lstrip(": ")
            return f"Ask an admin: {cause}"
        return {"requirement": "Review and approve", "ticket": "Accept or reject",
                "failed": "Read why, then submit it again from the project",
                "blocked": "Edit and retry"}[self.kind]

    @property
    def action_path(self) -> str:
        if self.kind == "blocked":
            return f"{self.path}#gate"
        if self.kind == "failed":
            return f"{self.path}#proposal"
        return self.path


@dataclass(frozen=True)
class Waiting:
    """The newest decisions waiting for a user, how many there are, and whether they decide."""

    decisions: list[Decision]
    total: int
    may_decide: bool


def projects_decided_by(*, membership: Membership) -> QuerySet[Project]:
    """The projects where the member decides at the gates: all for admins, granted ones for
    product owners, none for anyone else."""
    projects = Project.objects.for_org(membership.organization)
    decides = _decides(membership)
    if decides != "granted":
        return projects if decides == "all" else projects.none()
    return get_objects_for_user(membership.user, "tickets.approve_project", klass=projects,
                                accept_global_perms=False)


# What waits for a person who decides, by state: at a gate, or stuck until they act.
_WAITING_REQUIREMENTS = {RequirementStatus.PROPOSED: "requirement",
                         RequirementStatus.FAILED: "failed"}
_WAITING_TICKETS = {TicketStatus.AWAITING_ACCEPTANCE: "ticket", TicketStatus.BLOCKED: "blocked"}


def decisions_waiting_for(*, user: User, organization: Organization | None = None,
                          limit: int = 20) -> Waiting:
    """What `user` may decide or unblock, newest first, in `organization` or in every
    organization they belong to: requirements at Gate 1 or whose decomposition failed,
    tickets at Gate 2 or blocked.

    One query for the memberships, then four per organization where the user decides
    (two counts, two lists of at most `limit`), whatever the number of items.
    """
    memberships = Membership.objects.filter(user=user).select_related("organization", "user")
    if organization is not None:
        memberships = memberships.filter(organization=organization)
    decisions: list[Decision] = []
    total = 0
    may_decide = False
    for membership in memberships:
        org = membership.organization
        if membership.role != "admin" and not role_can(membership.role,
                                                       Capability.WRITE_REQUIREMENTS):
            continue
        may_decide = True
        projects = projects_decided_by(membership=membership).values("pk")
        requirements = (Requirement.objects.for_org(org)
                        .filter(project__in=projects, status__in=_WAITING_REQUIREMENTS))
        tickets = (Ticket.objects.for_org(org)
                   .filter(project__in=projects, status__in=_WAITING_TICKETS))
        total += requirements.count() + tickets.count()
        decisions += [Decision(_WAITING_REQUIREMENTS[RequirementStatus(r.status)], r.key,
                               r.title, org, r.project, r.created_at, r.failure)
                      for r in requirements.select_related("project")
                      .order_by("-created_at")[:limit]]
        decisions += [Decision(_WAITING_TICKETS[TicketStatus(t.status)], t.key, t.title, org,
                               t.project, t.status_changed_at, t.block_reason)
                      for t in tickets.select_related("project")
                      .order_by("-status_changed_at")[:limit]]
    decisions.sort(key=lambda decision: decision.since, reverse=True)
    return Waiting(decisions=decisions[:limit], total=total, may_decide=may_decide)


def webhook_url(project: Project) -> str:
    """The absolute address where the project's forge sends its events."""
    return f"{settings.BASE_URL}/hooks/forge/{project.pk}/"


@dataclass(frozen=True)
class AuditOutcome:
    """The Tech Lead's audit of one attempt, as the ticket's events recorded it."""

    attempt: int | None
    verdict: str  # "passed", "failed" or "skipped"
    reason: str
    findings: list[dict[str, Any]]

    @property
    def words(self) -> str:
        return f"{self.verdict}: {self.reason}" if self.reason else self.verdict


def audit_outcome(event: StreamEvent) -> AuditOutcome | None:
    """The audit an event records: the verdict (`ticket.audited`), or a skipped audit (a
    transition to acceptance saying why); None for any other event."""
    data = event.data if isinstance(event.data, dict) else {}
    attempt = data.get("attempt") if isinstance(data.get("attempt"), int) else None
    if event.type == "ticket.audited":
        findings = [f for f in data.get("findings") or [] if isinstance(f, dict)]
        return AuditOutcome(attempt=attempt, verdict="passed" if data.get("passed") else "failed",
                            reason=str(data.get("summary") or ""), findings=findings)
    said = data.get("audit")
    if (event.type == "ticket.transition" and isinstance(said, str)
            and said.startswith("skipped")):
        return AuditOutcome(attempt=attempt, verdict="skipped",
                            reason=said.removeprefix("skipped").lstrip(": "), findings=[])
    return None


def latest_audit(events: list[StreamEvent], *, attempt: int) -> AuditOutcome | None:
    """The last audit of attempt number `attempt` among a ticket's events, if any."""
    found = None
    for event in events:
        outcome = audit_outcome(event)
        if outcome is not None and outcome.attempt == attempt:
            found = outcome
    return found
