"""Reads behind a project's board: columns by ticket state, cards, WIP and live progress."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery

from agents.selectors import NO_COST, TicketCost, ticket_costs
from haao.models import ProgressEvent
from policies.selectors import policy_for
from tickets.keys import parse_ticket_key
from tickets.models import (
    Attempt,
    AttemptOutcome,
    Project,
    Requirement,
    RequirementStatus,
    Ticket,
    TicketStatus,
)
from tickets.portal.progress import Progress
from tickets.selectors import last_project_seq
from tickets.services.engine import IN_PROGRESS

S = TicketStatus
PER_COLUMN = 50

# Badge tones of ticket states and attempt outcomes (components/badge.html's tones).
STATE_TONES: dict[str, str] = {
    S.PROPOSED: "neutral", S.APPROVED: "neutral", S.QUEUED: "neutral", S.RUNNING: "info",
    S.RETRYING: "warning", S.ESCALATED: "accent", S.AUDITING: "info",
    S.AWAITING_ACCEPTANCE: "warning", S.ACCEPTED: "success", S.REJECTED: "danger",
    S.BLOCKED: "danger", S.CANCELLED: "neutral",
}
OUTCOME_TONES: dict[str, str] = {
    AttemptOutcome.RUNNING: "info", AttemptOutcome.PASSED: "success",
    AttemptOutcome.TESTS_FAILED: "danger", AttemptOutcome.INVALID_OUTPUT: "danger",
    AttemptOutcome.GUARDRAIL_VIOLATION: "danger", AttemptOutcome.TIMEOUT: "danger",
    AttemptOutcome.ERROR: "danger", AttemptOutcome.INFRASTRUCTURE: "warning",
}


@dataclass(frozen=True)
class Column:
    """One board column: the states it holds, in the loop's order."""

    slug: str
    label: str
    states: tuple[str, ...]
    help: str


# Proposed tickets wait at Gate 1 on their requirement's page, so the board starts at
# approved. Rejected work goes back to the queue with feedback (the engine requeues it), so
# it waits there; the in-progress column holds exactly the states that take a WIP place.
# Five columns fit a laptop screen without scrolling sideways.
COLUMNS: tuple[Column, ...] = (
    Column("queued", "Queued", (S.APPROVED, S.QUEUED, S.REJECTED),
           "Waiting for a WIP place; rejected work returns here with feedback"),
    Column("in_progress", "In progress", tuple(IN_PROGRESS),
           "Running, retrying, escalated or in audit"),
    Column("awaiting", "To accept", (S.AWAITING_ACCEPTANCE,),
           "Gate 2: awaiting acceptance or rejection"),
    Column("accepted", "Accepted", (S.ACCEPTED,), "Merged into the integration branch"),
    Column("stopped", "Stopped", (S.BLOCKED, S.CANCELLED),
           "Blocked work needs a person; cancelled is final"),
)
COLUMN_OF: dict[str, Column] = {state: column for column in COLUMNS for state in column.states}


@dataclass
class Card:
    """What a board card shows of one ticket."""

    ticket: Ticket
    attempt: int | None
    outcome: str | None
    progress: Progress | None = None
    cost: Decimal = Decimal("0")

    @property
    def column(self) -> Column | None:
        return COLUMN_OF.get(self.ticket.status)

    @property
    def status_tone(self) -> str:
        return STATE_TONES.get(self.ticket.status, "neutral")

    @property
    def outcome_label(self) -> str:
        return AttemptOutcome(self.outcome).label if self.outcome else ""

    @property
    def outcome_tone(self) -> str:
        return OUTCOME_TONES.get(self.outcome or "", "neutral")

    @property
    def in_progress(self) -> bool:
        return self.ticket.status in IN_PROGRESS


@dataclass
class BoardColumn:
    column: Column
    cards: list[Card]
    total: int

    @property
    def more(self) -> int:
        return max(self.total - len(self.cards), 0)


@dataclass
class Board:
    columns: list[BoardColumn]
    in_progress: int
    wip_limit: int
    last_seq: int
    states: dict[str, Any] = field(default_factory=dict)


def _cards_query(project: Project) -> QuerySet[Ticket]:
    latest = Attempt.objects.filter(ticket=OuterRef("pk")).order_by("-number")
    finished = latest.exclude(outcome=AttemptOutcome.RUNNING)
    return (Ticket.objects.for_org(project.organization).filter(project=project)
            .select_related("project")
            .only("id", "number", "title", "status", "complexity", "status_changed_at",
                  "spec", "project__id", "project__key", "attempt_count")
            .annotate(latest_number=Subquery(latest.values("number")[:1],
                                             output_field=IntegerField()),
                      finished_outcome=Subquery(finished.values("outcome")[:1]),
                      finished_number=Subquery(finished.values("number")[:1],
                                               output_field=IntegerField())))


def _progress(project: Project, tickets: list[Ticket]) -> dict[Any, Progress]:
    """Progress of the latest attempt of each in-progress ticket, from its events."""
    running = [t for t in tickets if t.status in IN_PROGRESS]
    if not running:
        return {}
    progress = {
        t.pk: Progress(attempt=getattr(t, "latest_number", None) or 0,
                       checks_total=len(t.spec.get("definition_of_done", []))
                       if isinstance(t.spec, dict) else 0)
        for t in running
    }
    events = (ProgressEvent.objects.for_org(project.organization)
              .filter(project_id=project.pk, target_type=Ticket._meta.label_lower,
                      target_id__in=[str(t.pk) for t in running],
                      type__in=["attempt.check", "attempt.tokens"])
              .order_by("id").values_list("target_id", "type", "data"))
    by_id = {str(pk): value for pk, value in progress.items()}
    for target_id, type_, data in events:
        item = by_id.get(target_id)
        if item is None or not isinstance(data, dict) or data.get("attempt") != item.attempt:
            continue
        item.apply(type_, data)
    return progress


def _card(ticket: Ticket, progress: dict[Any, Progress], costs: dict[Any, TicketCost]) -> Card:
    # The outcome shown is the latest finished attempt's; a running one shows its progress.
    return Card(ticket=ticket, attempt=getattr(ticket, "finished_number", None),
                outcome=getattr(ticket, "finished_outcome", None),
                progress=progress.get(ticket.pk), cost=costs.get(ticket.pk, NO_COST).cost)


def board_states() -> dict[str, Any]:
    """What the page script needs to move a card: each state's label, tone and column."""
    return {
        "states": {state.value: {"label": state.label, "tone": STATE_TONES[state.value],
                                 "column": COLUMN_OF[state.value].slug
                                 if state.value in COLUMN_OF else None}
                   for state in TicketStatus},
        "outcomes": {outcome.value: {"label": outcome.label,
                                     "tone": OUTCOME_TONES[outcome.value]}
                     for outcome in AttemptOutcome},
        "in_progress": list(IN_PROGRESS),
    }


def project_board(*, project: Project, per_column: int = PER_COLUMN) -> Board:
    """The board of `project`: each column's newest `per_column` cards and its total."""
    # Read the last seq first: events written while the board is read are replayed by the
    # live stream (moving a card to where it is already is harmless); none are skipped.
    last_seq = last_project_seq(project=project)
    totals = dict(Ticket.objects.for_org(project.organization).filter(project=project)
                  .values_list("status").annotate(n=Count("pk")).values_list("status", "n"))
    query = _cards_query(project)
    shown = [(column, list(query.filter(status__in=column.states)
                           .order_by("-status_changed_at", "-number")[:per_column]))
             for column in COLUMNS]
    costs = ticket_costs(organization=project.organization,
                         tickets=[t for _, tickets in shown for t in tickets])
    columns: list[BoardColumn] = []
    for column, tickets in shown:
        progress = _progress(project, tickets)
        columns.append(BoardColumn(column=column,
                                   cards=[_card(t, progress, costs) for t in tickets],
                                   total=sum(totals.get(s, 0) for s in column.states)))
    return Board(columns=columns, in_progress=sum(totals.get(s, 0) for s in IN_PROGRESS),
                 wip_limit=policy_for(project=project).wip_limit, last_seq=last_seq,
                 states=board_states())


def project_card(*, project: Project, key: str) -> Card | None:
    """The card of ticket `key` if it belongs to `project`; None for a malformed key."""
    parsed = parse_ticket_key(key)
    if parsed is None or parsed[0] != project.key:
        return None
    ticket = _cards_query(project).filter(number=parsed[1]).first()
    if ticket is None:
        return None
    return _card(ticket, _progress(project, [ticket]),
                 ticket_costs(organization=project.organization, tickets=[ticket]))


def ticket_counts(*, projects: QuerySet[Project]) -> dict[Any, dict[str, int]]:
    """Tickets per state of each project, in one grouped query."""
    counts: dict[Any, dict[str, int]] = {}
    rows = (Ticket.objects.filter(project__in=projects.values("pk"))
            .values_list("project_id", "status").annotate(n=Count("pk"))
            .values_list("project_id", "status", "n"))
    for project_id, status, n in rows:
        counts.setdefault(project_id, {})[status] = n
    return counts


def requirements_with_counts(*, project: Project) -> QuerySet[Requirement]:
    """A project's requirements, newest first, each with how many tickets await Gate 1."""
    return (Requirement.objects.for_org(project.organization).filter(project=project)
            .select_related("project", "created_by")
            .annotate(proposed_count=Count("tickets", filter=Q(tickets__status=S.PROPOSED)),
                      ticket_count=Count("tickets"))
            .order_by("-created_at"))


REQUIREMENT_TONES: dict[str, str] = {
    RequirementStatus.DECOMPOSING: "info", RequirementStatus.PROPOSED: "warning",
    RequirementStatus.APPROVED: "success", RequirementStatus.FAILED: "danger",
    RequirementStatus.CANCELLED: "neutral",
}
