"""Attempts and their check results, as the engine records them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from haao.errors import Conflict
from tickets.models import (
    OUTPUT_TAIL_LIMIT,
    Attempt,
    AttemptOutcome,
    AttemptStage,
    CheckResult,
    ExecutorKind,
    Ticket,
)


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    command: list[str]
    expected_exit_code: int
    exit_code: int | None
    passed: bool
    duration_ms: int
    stdout: str = ""
    stderr: str = ""
    expectation: str = ""


def _tail(text: str) -> str:
    """The end of a long output, where test runners print their summary."""
    if len(text) <= OUTPUT_TAIL_LIMIT:
        return text
    return "[…]" + text[-OUTPUT_TAIL_LIMIT:]


def attempt_start(*, ticket: Ticket, number: int, executor: str, endpoint: str = "",
                  model: str = "", inference_endpoint: Any = None, queue: str = "",
                  stage: str = AttemptStage.CODING, policy_version: int | None = None
                  ) -> Attempt:
    """Claim attempt `number` of `ticket`; a second claim of the same number is refused."""
    if executor not in ExecutorKind.values:
        raise ValueError(f"unknown executor {executor!r}")
    try:
        with transaction.atomic():
            attempt = Attempt.objects.create(
                organization_id=ticket.organization_id, ticket=ticket, number=number,
                executor=executor, endpoint=endpoint[:200], model=model[:200],
                inference_endpoint=inference_endpoint, queue=queue, stage=stage,
                policy_version=policy_version)
            Ticket.objects.filter(pk=ticket.pk).update(attempt_count=F("attempt_count") + 1)
    except IntegrityError:
        raise Conflict(f"Attempt {number} of this ticket exists already.",
                       code="attempt_exists") from None
    return attempt


@dataclass(frozen=True)
class AttemptStart:
    """A ticket's next attempt, as the dispatcher chose it: who runs it, where, on which queue."""

    ticket: Ticket
    executor: str
    endpoint: Any  # agents.models.InferenceEndpoint
    queue: str


def attempts_start(*, starts: Sequence[AttemptStart], stage: str = AttemptStage.PENDING,
                   policy_version: int | None = None) -> list[Attempt]:
    """Claim the next attempt of each ticket, numbered after its `attempt_count`, with one
    multi-row insert. The caller holds the tickets' rows (select_for_update), so the numbers
    are current; a second claim of a number is still refused by UNIQUE(ticket, number)."""
    for start in starts:
        if start.executor not in ExecutorKind.values:
            raise ValueError(f"unknown executor {start.executor!r}")
    attempts = Attempt.objects.bulk_create([
        Attempt(organization_id=start.ticket.organization_id, ticket=start.ticket,
                number=start.ticket.attempt_count + 1, executor=start.executor,
                endpoint=start.endpoint.name[:200], model=start.endpoint.model[:200],
                inference_endpoint=start.endpoint, queue=start.queue, stage=stage,
                policy_version=policy_version)
        for start in starts])
    Ticket.objects.filter(pk__in=[start.ticket.pk for start in starts]).update(
        attempt_count=F("attempt_count") + 1)
    return attempts


def attempt_finish(
    *, attempt: Attempt, outcome: str, checks: Sequence[CheckOutcome] = (), diff: str = "",
    error: str = "", input_tokens: int = 0, output_tokens: int = 0,
    cache_write_tokens: int = 0, cache_read_tokens: int = 0, cost: Decimal = Decimal("0"),
    delivery: int | None = None, base_commit: str = "", commit: str = "",
) -> Attempt:
    """Record how an attempt ended, once; a second finish of the same attempt is refused.

    With `delivery`, only that claim of the attempt may finish it (a fenced-off worker that
    lost its lease gets Conflict and its results are dropped).
    """
    if outcome not in AttemptOutcome.values or outcome == AttemptOutcome.RUNNING:
        raise ValueError(f"unknown final outcome {outcome!r}")
    running = Attempt.objects.filter(pk=attempt.pk, outcome=AttemptOutcome.RUNNING)
    if delivery is not None:
        running = running.filter(deliveries=delivery)
    values = {"stage": AttemptStage.DONE, "lease_expires_at": None, "outcome": outcome,
              "finished_at": timezone.now(), "diff": diff, "error": error[:10_000],
              "input_tokens": input_tokens, "output_tokens": output_tokens,
              "cache_write_tokens": cache_write_tokens, "cache_read_tokens": cache_read_tokens,
              "cost": cost, "base_commit": base_commit, "commit": commit}
    with transaction.atomic():
        updated = running.update(**values)
        if not updated:
            raise Conflict("This attempt has finished already.", code="attempt_finished")
        CheckResult.objects.bulk_create([
            CheckResult(organization_id=attempt.organization_id, attempt=attempt, index=index,
                        name=check.name[:200], command=check.command,
                        expected_exit_code=check.expected_exit_code, exit_code=check.exit_code,
                        passed=check.passed, expectation=check.expectation[:500],
                        duration_ms=check.duration_ms, stdout_tail=_tail(check.stdout),
                        stderr_tail=_tail(check.stderr))
            for index, check in enumerate(checks)
        ])
    # What was just written, without reading the row again; the checks are read when asked.
    for name, value in values.items():
        setattr(attempt, name, value)
    attempt.__dict__.pop("_prefetched_objects_cache", None)
    return attempt


def attempt_claim(*, attempt: Attempt, stages: Sequence[str], to: str, lease_seconds: int,
                  worker: str = "", now: Any = None) -> Attempt | None:
    """Claim a running attempt for one step: compare-and-set its stage, start a lease, count
    the delivery. None when the step is done or another live worker holds it.

    Returns `attempt` with the claim written into it (its related rows as they were read),
    without reading it again when no other claim came since it was read."""
    now = now or timezone.now()
    free = Q(stage__in=stages) | Q(stage=to, lease_expires_at__lt=now)
    claimable = Attempt.objects.filter(pk=attempt.pk, outcome=AttemptOutcome.RUNNING).filter(free)
    values = {"stage": to, "lease_expires_at": now + timedelta(seconds=lease_seconds),
              "step_at": now, "worker": worker[:200]}
    if claimable.filter(deliveries=attempt.deliveries).update(
            deliveries=attempt.deliveries + 1, **values):
        values["deliveries"] = attempt.deliveries + 1
    elif claimable.update(deliveries=F("deliveries") + 1, **values):
        # Claimed and given back since it was read: count from the stored number.
        values["deliveries"] = (Attempt.objects.filter(pk=attempt.pk)
                                .values_list("deliveries", flat=True).get())
    else:
        return None
    for name, value in values.items():
        setattr(attempt, name, value)
    return attempt


def attempt_heartbeat(*, attempt: Attempt, lease_seconds: int) -> bool:
    """Renew the lease of the claim `attempt.deliveries`; False when it was lost."""
    return bool(Attempt.objects.filter(
        pk=attempt.pk, deliveries=attempt.deliveries, outcome=AttemptOutcome.RUNNING,
    ).update(lease_expires_at=timezone.now() + timedelta(seconds=lease_seconds)))


def attempt_answered(*, attempt: Attempt, answer: str) -> bool:
    """Store the model's answer and hand the attempt to the checks (`attempt` shows it
    too); False when fenced off."""
    values = {"answer": answer, "stage": AttemptStage.ANSWERED, "lease_expires_at": None,
              "step_at": timezone.now()}
    if not Attempt.objects.filter(
            pk=attempt.pk, deliveries=attempt.deliveries, outcome=AttemptOutcome.RUNNING,
            stage=AttemptStage.CODING).update(**values):
        return False
    for name, value in values.items():
        setattr(attempt, name, value)
    return True


def attempt_release(*, attempt: Attempt, endpoint: Any = None, model: str = "",
                    error: str = "") -> bool:
    """Give a claimed attempt back to the queue (its model was unreachable), optionally moved
    to another endpoint; False when fenced off."""
    values: dict[str, Any] = {"stage": AttemptStage.PENDING, "lease_expires_at": None,
                              "error": error[:10_000], "step_at": timezone.now()}
    if endpoint is not None:
        values.update(inference_endpoint=endpoint, endpoint=endpoint.name[:200],
                      model=(model or endpoint.model)[:200])
    return bool(Attempt.objects.filter(
        pk=attempt.pk, deliveries=attempt.deliveries, outcome=AttemptOutcome.RUNNING,
    ).update(**values))


def attempt_reroute(*, attempt: Attempt, endpoint: Any, queue: str) -> bool:
    """Move a waiting attempt to another endpoint (and its queue) before any model saw it."""
    return bool(Attempt.objects.filter(
        pk=attempt.pk, outcome=AttemptOutcome.RUNNING, stage=AttemptStage.PENDING,
    ).update(inference_endpoint=endpoint, endpoint=endpoint.name[:200],
             model=endpoint.model[:200], queue=queue))


def attempt_stalled(*, attempt: Attempt, worker_gone: bool = False) -> bool:
    """Hand an attempt whose lease expired (or, with `worker_gone`, whose worker is known to be
    gone) back to the step it was in; False if it moved on meanwhile."""
    back = {AttemptStage.CODING: AttemptStage.PENDING,
            AttemptStage.CHECKING: AttemptStage.ANSWERED}
    stage = back.get(AttemptStage(attempt.stage))
    if stage is None:
        return False
    still = Attempt.objects.filter(pk=attempt.pk, deliveries=attempt.deliveries,
                                   stage=attempt.stage, outcome=AttemptOutcome.RUNNING)
    if not worker_gone:
        still = still.filter(lease_expires_at__lt=timezone.now())
    return bool(still.update(stage=stage, lease_expires_at=None, step_at=timezone.now(),
                             lost=F("lost") + 1))


def attempt_nudged(*, attempt: Attempt) -> bool:
    """Note that a waiting step was handed to the queue again (its message may be lost)."""
    return bool(Attempt.objects.filter(pk=attempt.pk, stage=attempt.stage,
                                       outcome=AttemptOutcome.RUNNING)
                .update(step_at=timezone.now()))
