"""The ticket state machine: one table of allowed transitions, one door that moves tickets.

`ticket_transition` (one ticket) and `tickets_transition` (a batch, for the engine) are the only
code that writes `Ticket.status`. They check the edge and the actor's right, compare-and-set
the row, write the audit event in the same transaction and run the registered side effects
only after commit.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import Membership
from haao.audit import Actor, Entry, audit_record, audit_records
from haao.errors import ApplicationError, Conflict, Forbidden
from haao.models import ActorType
from tickets.models import Project, Ticket, TicketStatus
from tickets.selectors import can_approve_in

S = TicketStatus

# Who may take an edge: a person deciding at a gate (admin, or a product owner granted on the
# project), or HAAO's engine (the system or a model acting through it).
GATE = "gate"
ENGINE = "engine"

TRANSITIONS: dict[tuple[str, str], str] = {
    (S.PROPOSED, S.APPROVED): GATE,
    (S.PROPOSED, S.CANCELLED): GATE,
    (S.APPROVED, S.QUEUED): ENGINE,
    (S.APPROVED, S.CANCELLED): GATE,
    (S.QUEUED, S.RUNNING): ENGINE,
    (S.QUEUED, S.BLOCKED): ENGINE,
    (S.QUEUED, S.CANCELLED): GATE,
    (S.RUNNING, S.RETRYING): ENGINE,
    (S.RUNNING, S.ESCALATED): ENGINE,
    (S.RUNNING, S.AUDITING): ENGINE,
    (S.RUNNING, S.AWAITING_ACCEPTANCE): ENGINE,
    (S.RUNNING, S.BLOCKED): ENGINE,
    (S.RUNNING, S.QUEUED): ENGINE,  # a lost worker's attempt goes back to the queue
    (S.RUNNING, S.CANCELLED): GATE,
    (S.RETRYING, S.RUNNING): ENGINE,
    (S.RETRYING, S.BLOCKED): ENGINE,
    (S.RETRYING, S.CANCELLED): GATE,
    (S.ESCALATED, S.RUNNING): ENGINE,
    (S.ESCALATED, S.AUDITING): ENGINE,
    (S.ESCALATED, S.AWAITING_ACCEPTANCE): ENGINE,
    (S.ESCALATED, S.BLOCKED): ENGINE,
    (S.ESCALATED, S.CANCELLED): GATE,
    (S.AUDITING, S.AWAITING_ACCEPTANCE): ENGINE,
    (S.AUDITING, S.RETRYING): ENGINE,
    (S.AUDITING, S.ESCALATED): ENGINE,
    (S.AUDITING, S.BLOCKED): ENGINE,
    (S.AUDITING, S.CANCELLED): GATE,
    (S.AWAITING_ACCEPTANCE, S.ACCEPTED): GATE,
    (S.AWAITING_ACCEPTANCE, S.REJECTED): GATE,
    (S.AWAITING_ACCEPTANCE, S.QUEUED): ENGINE,
    (S.ACCEPTED, S.QUEUED): ENGINE,  # the accepted work no longer merges: redo it
    (S.AWAITING_ACCEPTANCE, S.CANCELLED): GATE,
    (S.REJECTED, S.QUEUED): ENGINE,
    (S.REJECTED, S.CANCELLED): GATE,
    (S.BLOCKED, S.QUEUED): GATE,  # a person retries a blocked ticket
    (S.BLOCKED, S.CANCELLED): GATE,
}
# Accepted is final once merged; only a merge conflict sends accepted work back.
TERMINAL = frozenset({S.CANCELLED})


class IllegalTransition(ApplicationError):
    code = "illegal_transition"
    status = 409


@dataclass(frozen=True)
class Transition:
    """What happened, handed to side effects after commit."""

    ticket_id: Any
    organization_id: Any
    project_id: Any  # the ticket's, so what follows need not read the ticket for it
    from_status: str
    to_status: str
    actor: Actor
    data: dict[str, Any] = field(default_factory=dict)


SideEffect = Callable[[Transition], None]
_side_effects: dict[str, list[SideEffect]] = defaultdict(list)


def on_enter(*statuses: str) -> Callable[[SideEffect], SideEffect]:
    """Register a side effect to run after commit when a ticket enters one of `statuses`."""

    def register(function: SideEffect) -> SideEffect:
        for status in statuses:
            _side_effects[status].append(function)
        return function

    return register


def require_right(*, project: Project, kind: str, actor: Actor) -> None:
    """Refuse unless `actor` may take an edge of `kind` (GATE or ENGINE) in `project`."""
    if kind == ENGINE:
        if actor.type == ActorType.USER:
            raise Forbidden("Only HAAO's engine moves a ticket along this edge.")
        return
    if actor.type != ActorType.USER or actor.user is None:
        raise Forbidden("Only a person may decide at a gate.")
    membership = (Membership.objects.for_org(project.organization)
                  .filter(user=actor.user).select_related("user").first())
    if membership is None or not can_approve_in(membership=membership, project=project):
        raise Forbidden("You may not decide on this project's tickets; an admin can grant you "
                        "approval on the project.")


def _edge(current: str, to: str) -> str:
    """Who may take the edge from `current` to `to` (GATE or ENGINE); refused if none."""
    if to not in S.values:
        raise ApplicationError(f"'{to}' is not a ticket state.")
    kind = TRANSITIONS.get((current, to))
    if kind is None:
        raise IllegalTransition(f"A ticket cannot go from {current} to {to}.",
                                details={"from": current, "to": to})
    return kind


def _after_commit(done: Transition) -> None:
    """Run the side effects registered for the state `done` entered, once the change commits."""
    for effect in _side_effects.get(done.to_status, []):
        transaction.on_commit(functools.partial(effect, done), robust=True)


def ticket_transition(
    *,
    ticket: Ticket,
    to: str,
    actor: Actor,
    data: dict[str, Any] | None = None,
    fields: dict[str, Any] | None = None,
) -> Ticket:
    """Move `ticket` to `to`: check, compare-and-set, audit, and side effects after commit.

    `fields` are other columns written in the same update (e.g. who decided and when).
    """
    current = ticket.status
    require_right(project=ticket.project, kind=_edge(current, to), actor=actor)
    now = timezone.now()
    values = {"status": to, "status_changed_at": now, **(fields or {})}
    # Most changes are made inside a caller's transaction: no savepoint of their own (two
    # statements less each), so the refusal below is raised after the block, which wrote
    # nothing, and the caller's transaction stays usable for whoever catches it.
    with transaction.atomic(savepoint=False):
        updated = Ticket.objects.filter(pk=ticket.pk, status=current).update(**values)
        if updated:
            event_data = {"from": current, "to": to, **(data or {})}
            audit_record(organization=ticket.project.organization, actor=actor,
                         type="ticket.transition", target=ticket, target_label=ticket.key,
                         data=event_data, project_id=ticket.project_id)
            _after_commit(Transition(ticket.pk, ticket.organization_id, ticket.project_id,
                                     current, to, actor, event_data))
    if not updated:
        actual = Ticket.objects.filter(pk=ticket.pk).values_list("status", flat=True).first()
        raise Conflict(f"{ticket.key} changed meanwhile: it is {actual or 'gone'} now, "
                       f"not {current}.", code="stale_state",
                       details={"expected": current, "actual": actual})
    for name, value in values.items():
        setattr(ticket, name, value)
    return ticket


def tickets_transition(
    *,
    tickets: Sequence[Ticket],
    to: str,
    actor: Actor,
    data: Callable[[Ticket], dict[str, Any]] | None = None,
    fields: Callable[[Ticket], dict[str, Any]] | None = None,
) -> list[Ticket]:
    """Move a batch of one organization's tickets to `to`, as ticket_transition moves one: the
    same edges and rights, a compare-and-set per group of tickets that share their state and
    fields, one multi-row insert of their events, side effects after commit.

    Call it inside a transaction that holds the tickets' rows (select_for_update): then every
    compare-and-set holds, and any that does not (a caller that did not lock) raises Conflict
    and nothing of the batch is stored."""
    if not tickets:
        return []
    checked: set[tuple[Any, str]] = set()
    for ticket in tickets:
        kind = _edge(ticket.status, to)
        if (ticket.project_id, kind) not in checked:
            require_right(project=ticket.project, kind=kind, actor=actor)
            checked.add((ticket.project_id, kind))
    now = timezone.now()
    extras = {ticket.pk: fields(ticket) if fields else {} for ticket in tickets}
    event_data = {ticket.pk: {"from": ticket.status, "to": to,
                              **(data(ticket) if data else {})} for ticket in tickets}
    groups: dict[tuple[str, tuple[tuple[str, Any], ...]], list[Ticket]] = defaultdict(list)
    for ticket in tickets:
        groups[(ticket.status, tuple(sorted(extras[ticket.pk].items())))].append(ticket)
    entries: list[Entry] = []
    with transaction.atomic():
        for (current, extra), group in groups.items():
            values = {"status": to, "status_changed_at": now, **dict(extra)}
            updated = Ticket.objects.filter(pk__in=[t.pk for t in group],
                                            status=current).update(**values)
            if updated != len(group):
                raise Conflict(f"{len(group) - updated} of the tickets changed meanwhile.",
                               code="stale_state")
        for ticket in tickets:
            entries.append(Entry(type="ticket.transition", target=ticket,
                                 target_label=ticket.key, data=event_data[ticket.pk],
                                 project_id=ticket.project_id))
            _after_commit(Transition(ticket.pk, ticket.organization_id, ticket.project_id,
                                     ticket.status, to, actor, event_data[ticket.pk]))
            ticket.status, ticket.status_changed_at = to, now
            for name, value in extras[ticket.pk].items():
                setattr(ticket, name, value)
        audit_records(organization=tickets[0].project.organization, actor=actor,
                      entries=entries)
    return list(tickets)
