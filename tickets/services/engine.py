"""What the engine's results mean for tickets: queueing, dispatch, outcomes, audits, merges.

HAAO's engine (agents.engine) calls these with facts (an attempt ended, an audit said no, a
merge conflicted); the decisions of the loop in DESIGN.md live here, and every state change
goes through tickets.state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from haao.audit import SYSTEM, Actor, Entry, audit_record, audit_records, progress_record
from tickets.models import (
    NEEDS_ADMIN,
    Attempt,
    AttemptOutcome,
    ExecutorKind,
    Project,
    Ticket,
    TicketStatus,
)
from tickets.services.attempts import AttemptStart, attempts_start
from tickets.services.requirements import requirement_conclude
from tickets.state import ticket_transition, tickets_transition

S = TicketStatus
# Tickets that hold one of the project's WIP places.
IN_PROGRESS = (S.RUNNING, S.RETRYING, S.ESCALATED, S.AUDITING)
# Tickets whose next attempt the dispatcher creates.
WAITING_FOR_ATTEMPT = (S.QUEUED, S.RETRYING, S.ESCALATED)
FEEDBACK_LIMIT = 10_000


@dataclass(frozen=True)
class Options:
    """What the engine can do for a ticket right now (from policy and the endpoints there are)."""

    escalation: bool
    audit: bool
    # The policy's effective values (agents.engine.options.options_for reads them).
    max_audit_failures: int
    max_cloud_attempts: int
    audit_cloud_work: bool
    no_escalation_why: str = ""
    no_audit_why: str = ""
    policy_version: int = 0


# Progress of an attempt: streamed live with the ticket's events, but not governance, so kept
# out of the audit log (haao.models.ProgressEvent). What was decided (dispatch, moves between
# endpoints, verdicts, money, merges) stays in the audit log.
PROGRESS_TYPES = frozenset({"attempt.started", "attempt.tokens", "attempt.answered",
                            "attempt.check", "attempt.finished", "attempt.waiting"})


def ticket_entry(*, ticket: Ticket, type: str, data: dict[str, Any],
                 attempt: int | None = None) -> Entry:
    """An event of the ticket's stream: on the ticket, in its project, naming it (and the
    attempt's number, when there is one)."""
    return Entry(type=type, target=ticket, target_label=ticket.key,
                 project_id=ticket.project_id,
                 data={"ticket": ticket.key, **({"attempt": attempt} if attempt else {}),
                       **data})


def progress(*, ticket: Ticket, type: str, data: dict[str, Any], actor: Actor = SYSTEM,
             attempt: Attempt | None = None) -> None:
    """One step of the loop, in the ticket's event stream: a progress event, or an audit
    event when it records a decision."""
    entry = ticket_entry(ticket=ticket, type=type, data=data,
                         attempt=attempt.number if attempt else None)
    record = progress_record if type in PROGRESS_TYPES else audit_record
    record(organization=ticket.project.organization, actor=actor, type=entry.type,
           target=entry.target, target_label=entry.target_label,
           project_id=entry.project_id, data=entry.data)


def _locked(ticket_id: Any) -> Ticket:
    # Only the ticket's row: locking the joined organization would deadlock with every insert
    # whose foreign key checks it (PostgreSQL locks all joined rows without `of`).
    # No key update: inserts whose foreign key points at the ticket need not wait for it.
    return (Ticket.objects.select_for_update(of=("self",), no_key=True)
            .select_related("project__organization").get(pk=ticket_id))


def _locked_batch(tickets: Any) -> list[Ticket]:
    """Lock the rows of `tickets` that nobody else holds now (a ticket being changed
    elsewhere is left for the next dispatch), in a stable order."""
    return list(tickets.select_for_update(of=("self",), no_key=True, skip_locked=True)
                .select_related("project__organization").order_by("order", "number"))


def tickets_requeue(*, project: Project, retry_budget: int | None = None) -> list[Ticket]:
    """Approved tickets join the queue; rejected ones start a new cycle with fresh budgets.
    Each gets the policy's `retry_budget` (when given) as it joins. One transaction."""

    def fields(ticket: Ticket) -> dict[str, Any]:
        budget = ticket.retry_budget if retry_budget is None else retry_budget
        values: dict[str, Any] = {"retry_budget": budget, "retries_left": budget}
        if ticket.status == S.REJECTED:
            values.update({"audit_failures": 0, "cloud_attempts": 0})
        return values

    with transaction.atomic():
        waiting = _locked_batch(Ticket.objects.for_org(project.organization)
                                .filter(project=project, status__in=(S.APPROVED, S.REJECTED)))
        return tickets_transition(tickets=waiting, to=S.QUEUED, actor=SYSTEM, fields=fields)


def dependency_problems(*, ticket: Ticket) -> tuple[bool, str]:
    """(ready, why not): ready when every dependency is accepted and merged; the reason is
    set when a dependency can never be (it was cancelled)."""
    for dependency in ticket.dependencies.all():
        if dependency.status == S.CANCELLED:
            return False, f"Its dependency {ticket.project.key}-{dependency.number} was cancelled."
        if dependency.status != S.ACCEPTED or not dependency.merged_commit:
            return False, ""
    return True, ""


def ticket_block(*, ticket: Ticket, reason: str) -> Ticket:
    return ticket_transition(ticket=ticket, to=S.BLOCKED, actor=SYSTEM,
                             data={"reason": reason[:1000]}, fields={"block_reason": reason})


def tickets_dispatch(*, starts: list[AttemptStart],
                     policy_version: int | None = None) -> list[Attempt]:
    """Start the next attempt of each ticket on its chosen endpoint (under the organization's
    policy version `policy_version`) and mark them running, in one transaction: the tickets'
    rows locked (one someone else holds is skipped, for the next dispatch), their attempts
    and events each one multi-row insert, one compare-and-set per state.

    A ticket that is no longer waiting for an attempt, or has one running, is left out."""
    if not starts:
        return []
    chosen = {start.ticket.pk: start for start in starts}
    organization = starts[0].ticket.project.organization
    with transaction.atomic():
        running = Attempt.objects.filter(ticket_id__in=chosen, outcome=AttemptOutcome.RUNNING)
        locked = _locked_batch(Ticket.objects.for_org(organization)
                               .filter(pk__in=chosen, status__in=WAITING_FOR_ATTEMPT)
                               .exclude(pk__in=running.values("ticket_id")))
        if not locked:
            return []
        attempts = attempts_start(
            starts=[replace(chosen[ticket.pk], ticket=ticket) for ticket in locked],
            policy_version=policy_version)
        number = {attempt.ticket_id: attempt.number for attempt in attempts}
        cloud = [t.pk for t in locked if chosen[t.pk].executor == ExecutorKind.CLOUD]
        if cloud:
            Ticket.objects.filter(pk__in=cloud).update(cloud_attempts=F("cloud_attempts") + 1)
        tickets_transition(tickets=locked, to=S.RUNNING, actor=SYSTEM,
                           data=lambda ticket: {"attempt": number[ticket.pk]})
        audit_records(organization=organization, actor=SYSTEM, entries=[
            ticket_entry(ticket=ticket, type="ticket.dispatched", attempt=number[ticket.pk],
                         data={"executor": chosen[ticket.pk].executor,
                               "endpoint": chosen[ticket.pk].endpoint.name,
                               "model": chosen[ticket.pk].endpoint.model,
                               "queue": chosen[ticket.pk].queue,
                               "policy_version": policy_version})
            for ticket in locked])
    return attempts


def _after_failure(ticket: Ticket, *, reason: str, cloud: bool, options: Options,
                   fields: dict[str, Any] | None = None) -> Ticket:
    """A try failed (checks, model output or audit): retry, escalate, or block for a person."""
    fields = dict(fields or {})
    if not cloud and ticket.retries_left > 0:
        fields["retries_left"] = ticket.retries_left - 1
        return ticket_transition(ticket=ticket, to=S.RETRYING, actor=SYSTEM,
                                 data={"reason": reason[:1000],
                                       "retries_left": ticket.retries_left - 1},
                                 fields=fields)
    if options.escalation and ticket.cloud_attempts < options.max_cloud_attempts:
        escalated = ticket_transition(ticket=ticket, to=S.ESCALATED, actor=SYSTEM,
                                      data={"reason": reason[:1000]}, fields=fields)
        progress(ticket=ticket, type="ticket.escalated",
                 data={"reason": reason[:1000], "cloud_attempts": ticket.cloud_attempts})
        return escalated
    if cloud:
        why = "The Tech Lead's attempt failed too"
    elif options.escalation:
        why = "The Tech Lead's attempts are spent as well"
    else:
        why = ("The retry budget is spent and "
               + (options.no_escalation_why or "escalation is not possible"))
    fields["block_reason"] = f"{why}: {reason}"[:5000]
    return ticket_transition(ticket=ticket, to=S.BLOCKED, actor=SYSTEM,
                             data={"reason": fields["block_reason"][:1000]}, fields=fields)


def ticket_attempt_finished(*, attempt: Attempt, options: Options) -> Ticket | None:
    """Move the ticket on after its attempt ended: audit, acceptance, retry, escalate, block.
    Inside the caller's transaction when there is one (no savepoint: what fails in here
    fails the whole step)."""
    with transaction.atomic(savepoint=False):
        ticket = _locked(attempt.ticket_id)
        if attempt.outcome == AttemptOutcome.RUNNING:
            # Not ended by the caller: how it ended, if it has (an ended attempt never
            # changes again, so one the caller ended or read as ended is current).
            attempt.refresh_from_db()
        if ticket.status != S.RUNNING or attempt.outcome == AttemptOutcome.RUNNING:
            return None  # cancelled meanwhile, or this was decided already
        if Attempt.objects.filter(ticket=ticket, number__gt=attempt.number).exists():
            return None
        if attempt.outcome == AttemptOutcome.PASSED:
            cloud_work = attempt.executor == ExecutorKind.CLOUD
            audit = options.audit and (options.audit_cloud_work or not cloud_work)
            target = S.AUDITING if audit else S.AWAITING_ACCEPTANCE
            data: dict[str, Any] = {"attempt": attempt.number}
            if not audit:
                why = options.no_audit_why if not options.audit else \
                    "the policy audits only the local coders' work"
                data["audit"] = f"skipped: {why}" if why else "skipped"
            return ticket_transition(ticket=ticket, to=target, actor=SYSTEM, data=data)
        if attempt.outcome == AttemptOutcome.INFRASTRUCTURE:
            return _needs_admin(ticket, attempt)
        reason = f"attempt {attempt.number} {attempt.get_outcome_display().lower()}"
        if attempt.error:
            reason += f": {attempt.error.splitlines()[0][:500]}"
        return _after_failure(ticket, reason=reason, options=options,
                              cloud=attempt.executor == ExecutorKind.CLOUD)


def _needs_admin(ticket: Ticket, attempt: Attempt) -> Ticket:
    """The machine failed, not the code: block at once for an admin, like a policy refusal
    another try cannot fix; no retry, escalation or cloud call is spent on it."""
    cause = attempt.error.strip() or "the worker could not run the checks"
    reason = f"{NEEDS_ADMIN}: {cause}"[:5000]
    progress(ticket=ticket, type="ticket.needs_admin", attempt=attempt,
             data={"cause": cause[:2000]})
    return ticket_transition(ticket=ticket, to=S.BLOCKED, actor=SYSTEM,
                             data={"reason": reason[:1000]}, fields={"block_reason": reason})


def ticket_audit_skipped(*, ticket: Ticket, attempt: Attempt, reason: str) -> Ticket:
    """Passed work goes to acceptance unaudited, saying why (e.g. no Tech Lead endpoint)."""
    return ticket_transition(ticket=ticket, to=S.AWAITING_ACCEPTANCE, actor=SYSTEM,
                             data={"attempt": attempt.number, "audit": f"skipped: {reason}"})


def _with_feedback(current: str, addition: str) -> str:
    text = f"{current}\n\n{addition}" if current else addition
    return text[-FEEDBACK_LIMIT:]


def ticket_audited(*, attempt: Attempt, passed: bool, summary: str,
                   findings: Iterable[dict[str, Any]], actor: Actor,
                   options: Options) -> Ticket | None:
    """Record the Tech Lead's verdict on the attempt and move the ticket on."""
    findings = list(findings)
    with transaction.atomic():
        ticket = _locked(attempt.ticket_id)
        if ticket.status != S.AUDITING:
            return None
        latest = (Attempt.objects.filter(ticket=ticket).order_by("-number")
                  .values_list("pk", flat=True).first())
        if latest != attempt.pk:
            return None
        progress(ticket=ticket, type="ticket.audited", attempt=attempt, actor=actor,
                 data={"passed": passed, "summary": summary[:2000],
                       "findings": findings[:50]})
        if passed:
            return ticket_transition(ticket=ticket, to=S.AWAITING_ACCEPTANCE, actor=SYSTEM,
                                     data={"attempt": attempt.number, "audit": "passed"})
        lines = [f"The Tech Lead's audit of attempt {attempt.number} failed: {summary}"]
        lines += [f"- [{f.get('severity', '?')}] {f.get('path') or ''} {f.get('message', '')}"
                  .replace("  ", " ") for f in findings[:30]]
        fields = {"feedback": _with_feedback(ticket.feedback, "\n".join(lines)),
                  "audit_failures": ticket.audit_failures + 1}
        if ticket.audit_failures + 1 >= options.max_audit_failures:
            reason = (f"The audit failed {ticket.audit_failures + 1} times; the last said: "
                      f"{summary}")[:5000]
            fields["block_reason"] = reason
            return ticket_transition(ticket=ticket, to=S.BLOCKED, actor=SYSTEM,
                                     data={"reason": reason[:1000]}, fields=fields)
        return _after_failure(ticket, reason=f"audit failed: {summary}"[:1000],
                              cloud=attempt.executor == ExecutorKind.CLOUD,
                              options=options, fields=fields)


def ticket_merged(*, ticket: Ticket, commit: str, branch: str = "") -> bool:
    """Record the integration commit of an accepted ticket, once (inside the merge's
    transaction: no savepoint of its own)."""
    with transaction.atomic(savepoint=False):
        updated = Ticket.objects.filter(pk=ticket.pk, status=S.ACCEPTED,
                                        merged_commit="").update(
            merged_commit=commit, merged_at=timezone.now())
        if updated:
            progress(ticket=ticket, type="ticket.merged",
                     data={"commit": commit,
                           "branch": branch or ticket.project.integration_branch})
            requirement_conclude(requirement_id=ticket.requirement_id)
    return bool(updated)


def ticket_merge_conflicted(*, ticket: Ticket, summary: str) -> Ticket:
    """The accepted work no longer merges: back to the queue with the conflict as feedback."""
    with transaction.atomic():
        locked = _locked(ticket.pk)
        progress(ticket=locked, type="ticket.merge_conflict", data={"summary": summary[:4000]})
        return ticket_transition(
            ticket=locked, to=S.QUEUED, actor=SYSTEM, data={"reason": "merge conflict"},
            fields={"feedback": _with_feedback(
                locked.feedback, "Your accepted change no longer merges into the integration "
                                 f"branch; redo it on top of the current code.\n{summary}"),
                "retries_left": locked.retry_budget, "audit_failures": 0,
                "cloud_attempts": 0})
