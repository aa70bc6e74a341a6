"""Requirements: submitted by a product owner, decomposed into proposed tickets, approved."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import User
from haao.audit import SYSTEM, Actor, audit_record
from haao.errors import ApplicationError, Conflict
from haao.limits import too_long
from haao.models import ActorType
from tickets.models import (
    DeliveryMode,
    Project,
    Requirement,
    RequirementStatus,
    Ticket,
    TicketStatus,
)
from tickets.services.tickets import ticket_create
from tickets.signals import requirement_created, send_on_commit
from tickets.state import GATE, Transition, on_enter, require_right, ticket_transition

MAX_TITLE = 200
MAX_TEXT = 20_000

def _cleaned(title: str, text: str) -> tuple[str, str]:
    title, text = (title or "").strip(), (text or "").strip()
    problems: dict[str, list[str]] = {}
    for field, label, value, limit in (("title", "The title", title, MAX_TITLE),
                                       ("text", "The text", text, MAX_TEXT)):
        if not value:
            problems[field] = [f"{label} is required."]
        elif len(value) > limit:
            problems[field] = [too_long(label, limit, len(value))]
    if "\x00" in title + text:
        problems.setdefault("text", []).append("The text must not contain NUL bytes.")
    if problems:
        raise ApplicationError(next(iter(problems.values()))[0], details=problems)
    return title, text


def requirement_create(*, project: Project, actor: User, title: str, text: str) -> Requirement:
    """A product owner's request for `project`; decomposition starts after commit."""
    title, text = _cleaned(title, text)
    require_right(project=project, kind=GATE, actor=Actor.of(actor))
    with transaction.atomic():
        return _create(project=project, title=title, text=text, actor=Actor.of(actor))


def requirement_from_issue(*, project: Project, number: int, url: str, title: str,
                           text: str) -> Requirement | None:
    """A forge issue labelled for HAAO becomes a requirement, once per issue (a webhook sent
    twice or a label added again creates nothing); Gate 1 still decides what runs."""
    title, text = _cleaned(title[:200], (text or title)[:MAX_TEXT])
    with transaction.atomic():
        if Requirement.objects.filter(project=project, issue_number=number).exists():
            return None
        return _create(project=project, title=title, text=text,
                       actor=Actor(ActorType.SYSTEM, f"forge issue #{number}"),
                       issue_number=number, issue_url=url[:1024])


def _create(*, project: Project, title: str, text: str, actor: Actor,
            issue_number: int | None = None, issue_url: str = "") -> Requirement:
    Project.objects.filter(pk=project.pk).update(requirement_seq=F("requirement_seq") + 1)
    number = Project.objects.values_list("requirement_seq", flat=True).get(pk=project.pk)
    requirement = Requirement.objects.create(
        organization=project.organization, project=project, number=number, title=title,
        text=text, created_by=actor.user, issue_number=issue_number, issue_url=issue_url)
    audit_record(organization=project.organization, actor=actor,
                 type="requirement.created", target=requirement, target_label=requirement.key,
                 project_id=project.pk,
                 data={"title": title, **({"issue": issue_url} if issue_url else {})})
    send_on_commit(requirement_created, requirement_id=requirement.pk)
    return requirement


def requirement_propose(*, requirement: Requirement, specs: Sequence[dict[str, Any]],
                        actor: Actor) -> list[Ticket]:
    """Store the decomposition as proposed tickets, all or none; `#n` dependencies resolve
    within the proposal. An invalid spec stores nothing."""
    if not specs:
        raise ApplicationError("A decomposition must propose at least one ticket.")
    with transaction.atomic():
        locked = Requirement.objects.select_for_update().get(pk=requirement.pk)
        if locked.status != RequirementStatus.DECOMPOSING:
            raise Conflict(f"{locked.key} is {locked.status}, not decomposing.")
        locked.project = requirement.project
        created: list[Ticket] = []
        for position, spec in enumerate(specs, start=1):
            try:
                created.append(ticket_create(requirement=locked, spec=spec, actor=actor,
                                             order=position, proposal=created))
            except ApplicationError as error:
                error.message = f"Ticket #{position}: {error.message}"
                error.args = (error.message,)
                raise
        Requirement.objects.filter(pk=locked.pk).update(status=RequirementStatus.PROPOSED)
        audit_record(organization=locked.project.organization, actor=actor,
                     type="requirement.proposed", target=locked, target_label=locked.key,
                     project_id=locked.project_id, data={"tickets": [t.key for t in created]})
    requirement.status = RequirementStatus.PROPOSED
    return created


def requirement_fail(*, requirement: Requirement, reason: str, actor: Actor) -> None:
    with transaction.atomic():
        updated = Requirement.objects.filter(
            pk=requirement.pk, status=RequirementStatus.DECOMPOSING
        ).update(status=RequirementStatus.FAILED, failure=reason[:5000])
        if updated:
            audit_record(organization=requirement.project.organization, actor=actor,
                         type="requirement.failed", target=requirement,
                         target_label=requirement.key, project_id=requirement.project_id,
                         data={"reason": reason[:1000]})


def requirement_approve(*, requirement: Requirement, actor: User) -> list[Ticket]:
    """Gate 1: approve every proposed ticket of the requirement at once."""
    require_right(project=requirement.project, kind=GATE, actor=Actor.of(actor))
    now = timezone.now()
    with transaction.atomic():
        updated = Requirement.objects.filter(
            pk=requirement.pk, status=RequirementStatus.PROPOSED
        ).update(status=RequirementStatus.APPROVED, approved_by=actor, approved_at=now)
        if not updated:
            raise Conflict(f"{requirement.key} is not awaiting approval.", code="not_proposed")
        tickets = list(Ticket.objects.filter(requirement=requirement,
                                             status=TicketStatus.PROPOSED)
                       .select_related("project__organization").order_by("order"))
        if not tickets:
            raise Conflict("Every proposed ticket was dropped: nothing to approve.")
        for ticket in tickets:
            ticket_transition(ticket=ticket, to=TicketStatus.APPROVED, actor=Actor.of(actor),
                              fields={"approved_by": actor, "approved_at": now})
        audit_record(organization=requirement.project.organization, actor=Actor.of(actor),
                     type="requirement.approved", target=requirement,
                     target_label=requirement.key, project_id=requirement.project_id,
                     data={"tickets": [t.key for t in tickets]})
    requirement.status = RequirementStatus.APPROVED
    return tickets


def _unfinished(requirement_id: Any) -> bool:
    """Whether a ticket of the requirement is neither accepted and merged nor cancelled."""
    tickets = Ticket.objects.filter(requirement_id=requirement_id)
    return (tickets.exclude(status__in=(TicketStatus.ACCEPTED, TicketStatus.CANCELLED)).exists()
            or tickets.filter(status=TicketStatus.ACCEPTED, merged_commit="").exists())


def requirement_deliver(*, requirement: Requirement, branch: str, pull_request: str,
                        commit: str) -> bool:
    """The requirement's pull request was merged: its final state, once every ticket of it is
    done (accepted and merged, or cancelled). Compare-and-set from approved, so once."""
    with transaction.atomic():
        if _unfinished(requirement.pk):
            return False
        return _finish(requirement, RequirementStatus.DELIVERED,
                       {"branch": branch, "pull_request": pull_request, "commit": commit})


def _finish(requirement: Requirement, to: str, data: dict[str, Any]) -> bool:
    """Approved → `to` by compare-and-set, with its event; False when another got there."""
    if not Requirement.objects.filter(pk=requirement.pk,
                                      status=RequirementStatus.APPROVED).update(status=to):
        return False
    audit_record(organization=requirement.organization, actor=SYSTEM,
                 type=f"requirement.{to}", target=requirement, target_label=requirement.key,
                 project_id=requirement.project_id,
                 data={"requirement": requirement.key, **data})
    return True


def requirement_conclude(*, requirement_id: Any) -> str | None:
    """Give an approved requirement whose tickets are all done the final state that waits for
    no forge: cancelled when every ticket was cancelled, delivered once the accepted ones are
    merged into HAAO's branch, unless a pull request is to carry them (its merge delivers,
    `requirement_deliver`); the project's pushed branch has a delivery state of its own.
    Returns the new state, or None when nothing changed. Inside the caller's transaction
    when there is one, without a savepoint: it raises nothing it expects."""
    with transaction.atomic(savepoint=False):
        requirement = (Requirement.objects.select_related("project", "organization")
                       .filter(pk=requirement_id, status=RequirementStatus.APPROVED).first())
        if requirement is None or _unfinished(requirement_id):
            return None
        if not Ticket.objects.filter(requirement_id=requirement_id,
                                     status=TicketStatus.ACCEPTED).exists():
            to = RequirementStatus.CANCELLED
        elif requirement.project.delivery != DeliveryMode.PULL_REQUEST:
            to = RequirementStatus.DELIVERED
        else:
            return None
        reason = ("every ticket was cancelled" if to == RequirementStatus.CANCELLED
                  else "every ticket was accepted or cancelled")
        return to if _finish(requirement, to, {"reason": reason}) else None


@on_enter(TicketStatus.CANCELLED)
def _conclude_after_cancel(change: Transition) -> None:
    """A cancelled ticket may have been its requirement's last unfinished one."""
    requirement_id = (Ticket.objects.filter(pk=change.ticket_id)
                      .values_list("requirement_id", flat=True).first())
    if requirement_id is not None:
        requirement_conclude(requirement_id=requirement_id)
