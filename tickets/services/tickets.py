"""Gate 1 edits (spec, drop, reorder, add, approve) and Gate 2 decisions on tickets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import User
from haao.audit import Actor, audit_record
from haao.errors import ApplicationError, Conflict
from haao.limits import check_length
from tickets.keys import parse_ticket_key
from tickets.models import Project, Requirement, Ticket, TicketStatus
from tickets.spec import spec_clean
from tickets.state import GATE, require_right, ticket_transition

MAX_FEEDBACK = 10_000
MAX_CANCEL_REASON = 1000


def _next_ticket_number(project: Project) -> int:
    Project.objects.filter(pk=project.pk).update(ticket_seq=F("ticket_seq") + 1)
    return int(Project.objects.values_list("ticket_seq", flat=True).get(pk=project.pk))


def _resolve_dependencies(*, project: Project, refs: Sequence[str],
                          proposal: Sequence[Ticket] = ()) -> list[Ticket]:
    """Tickets named by `PAY-12` (same project) or `#n` (n-th ticket of the same proposal)."""
    resolved: list[Ticket] = []
    for ref in refs:
        if ref.startswith("#"):
            index = int(ref[1:]) - 1
            if not 0 <= index < len(proposal):
                raise ApplicationError(f"Dependency {ref} names no ticket of this proposal.",
                                       details={"dependencies": [ref]})
            resolved.append(proposal[index])
            continue
        parsed = parse_ticket_key(ref)
        ticket = None
        if parsed is not None and parsed[0] == project.key:
            ticket = Ticket.objects.for_org(project.organization).filter(
                project=project, number=parsed[1]).first()
        if ticket is None:
            raise ApplicationError(f"Dependency {ref} is not a ticket of project {project.key}.",
                                   details={"dependencies": [ref]})
        resolved.append(ticket)
    return resolved


def _refuse_cycles(project: Project, ticket: Ticket, dependencies: Sequence[Ticket]) -> None:
    """Refuse when `ticket` would (transitively) depend on itself."""
    edges: dict[Any, set[Any]] = {}
    through = Ticket.dependencies.through.objects.filter(from_ticket__project=project)
    for source, target in through.values_list("from_ticket_id", "to_ticket_id"):
        edges.setdefault(source, set()).add(target)
    edges[ticket.pk] = {dep.pk for dep in dependencies}
    stack, seen = list(edges[ticket.pk]), set()
    while stack:
        node = stack.pop()
        if node == ticket.pk:
            raise ApplicationError(f"{ticket.key} would depend on itself through its "
                                   "dependencies; remove the cycle.",
                                   code="dependency_cycle", details={"dependencies": ["cycle"]})
        if node not in seen:
            seen.add(node)
            stack.extend(edges.get(node, ()))


def ticket_create(*, requirement: Requirement, spec: dict[str, Any], actor: Actor,
                  order: int, proposal: Sequence[Ticket] = ()) -> Ticket:
    """A proposed ticket from a validated spec (used by decomposition and by Gate 1 "add")."""

    clean = spec_clean(spec)
    project = requirement.project
    with transaction.atomic():
        ticket = Ticket.objects.create(
            organization=project.organization, project=project, requirement=requirement,
            number=_next_ticket_number(project), title=clean["title"], spec=clean,
            complexity=clean["complexity"], order=order,
        )
        ticket.project = project
        dependencies = _resolve_dependencies(project=project, refs=clean["dependencies"],
                                             proposal=proposal)
        _refuse_cycles(project, ticket, dependencies)
        ticket.dependencies.set(dependencies)
        audit_record(organization=project.organization, actor=actor, type="ticket.proposed",
                     target=ticket, target_label=ticket.key, project_id=project.pk,
                     data={"title": ticket.title, "requirement": requirement.key})
    return ticket


def _lock_proposed(ticket: Ticket) -> Ticket:
    locked = (Ticket.objects.select_for_update(of=("self",))
              .select_related("project__organization")
              .get(pk=ticket.pk))
    if locked.status != TicketStatus.PROPOSED:
        raise Conflict(f"{locked.key} is {locked.status}; only proposed tickets can be edited.",
                       code="not_proposed")
    return locked


def ticket_spec_update(*, ticket: Ticket, spec: dict[str, Any], actor: User) -> Ticket:
    """Gate 1: replace a proposed ticket's spec; an invalid spec leaves the ticket unchanged."""

    clean = spec_clean(spec)
    with transaction.atomic():
        locked = _lock_proposed(ticket)
        require_right(project=locked.project, kind=GATE, actor=Actor.of(actor))
        dependencies = _resolve_dependencies(project=locked.project, refs=clean["dependencies"])
        _refuse_cycles(locked.project, locked, dependencies)
        changed = sorted(k for k in clean if clean.get(k) != locked.spec.get(k))
        Ticket.objects.filter(pk=locked.pk).update(spec=clean, title=clean["title"],
                                                   complexity=clean["complexity"])
        locked.dependencies.set(dependencies)
        audit_record(organization=locked.project.organization, actor=Actor.of(actor),
                     type="ticket.spec_edited", target=locked, target_label=locked.key,
                     project_id=locked.project_id, data={"changed": changed})
    locked.refresh_from_db()
    return locked


def ticket_add(*, requirement: Requirement, spec: dict[str, Any], actor: User) -> Ticket:
    """Gate 1: a product owner adds a ticket by hand to a requirement under review."""
    if requirement.status != "proposed":
        raise Conflict("Tickets can be added only while the requirement awaits approval.")
    last = Ticket.objects.filter(requirement=requirement).order_by("-order").first()
    require_right(project=requirement.project, kind=GATE, actor=Actor.of(actor))
    return ticket_create(requirement=requirement, spec=spec, actor=Actor.of(actor),
                         order=(last.order + 1) if last else 1)


def tickets_reorder(*, requirement: Requirement, keys: Sequence[str], actor: User) -> None:
    """Gate 1: set the order of a requirement's tickets; `keys` must name each exactly once."""
    if requirement.status != "proposed":
        raise Conflict("Tickets can be reordered only while the requirement awaits approval.",
                       code="not_proposed")
    tickets = {t.key: t for t in Ticket.objects.filter(requirement=requirement)
               .select_related("project")}
    if sorted(keys) != sorted(tickets):
        raise ApplicationError("Name every ticket of the requirement exactly once.",
                               details={"keys": sorted(tickets)})
    require_right(project=requirement.project, kind=GATE, actor=Actor.of(actor))
    with transaction.atomic():
        for position, key in enumerate(keys, start=1):
            Ticket.objects.filter(pk=tickets[key].pk).update(order=position)
        audit_record(organization=requirement.project.organization, actor=Actor.of(actor),
                     type="requirement.reordered", target=requirement,
                     target_label=requirement.key, project_id=requirement.project_id,
                     data={"order": list(keys)})


def ticket_approve(*, ticket: Ticket, actor: User) -> Ticket:
    return ticket_transition(ticket=ticket, to=TicketStatus.APPROVED, actor=Actor.of(actor),
                             fields={"approved_by": actor, "approved_at": timezone.now()})


def ticket_accept(*, ticket: Ticket, actor: User) -> Ticket:
    """Gate 2: accept the work; the merge into the integration branch follows after commit."""
    return ticket_transition(ticket=ticket, to=TicketStatus.ACCEPTED, actor=Actor.of(actor),
                             fields={"decided_by": actor, "decided_at": timezone.now()})


def ticket_reject(*, ticket: Ticket, actor: User, feedback: str) -> Ticket:
    """Gate 2: reject with feedback, which the next attempt receives."""
    feedback = (feedback or "").strip()
    if not feedback:
        raise ApplicationError("Say what is wrong: feedback is required to reject.",
                               details={"feedback": ["required"]})
    check_length(feedback, field="feedback", label="Feedback", limit=MAX_FEEDBACK)
    if "\x00" in feedback:
        raise ApplicationError("Feedback must be plain text (no NUL bytes).",
                               details={"feedback": ["invalid"]})
    return ticket_transition(ticket=ticket, to=TicketStatus.REJECTED, actor=Actor.of(actor),
                             data={"feedback": feedback},
                             fields={"feedback": feedback, "decided_by": actor,
                                     "decided_at": timezone.now()})


def ticket_cancel(*, ticket: Ticket, actor: User, reason: str = "") -> Ticket:
    """Stop a ticket for good; the reason goes into the event log as given."""
    check_length(reason, field="reason", label="The reason", limit=MAX_CANCEL_REASON)
    return ticket_transition(ticket=ticket, to=TicketStatus.CANCELLED, actor=Actor.of(actor),
                             data={"reason": reason})


def ticket_retry(*, ticket: Ticket, actor: User) -> Ticket:
    """A person sends a blocked ticket back to the queue with fresh budgets (retries, audits
    and the Tech Lead's attempts)."""
    return ticket_transition(ticket=ticket, to=TicketStatus.QUEUED, actor=Actor.of(actor),
                             fields={"retries_left": ticket.retry_budget, "block_reason": "",
                                     "audit_failures": 0, "cloud_attempts": 0})
