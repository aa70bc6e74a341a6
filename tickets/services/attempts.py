"""Attempts and their check results, as the engine records them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from haao.errors import Conflict
from tickets.models import (
    OUTPUT_TAIL_LIMIT,
    Attempt,
    AttemptOutcome,
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
                  model: str = "") -> Attempt:
    """Claim attempt `number` of `ticket`; a second claim of the same number is refused."""
    if executor not in ExecutorKind.values:
        raise ValueError(f"unknown executor {executor!r}")
    try:
        with transaction.atomic():
            attempt = Attempt.objects.create(
                organization_id=ticket.organization_id, ticket=ticket, number=number,
                executor=executor, endpoint=endpoint[:200], model=model[:200])
            Ticket.objects.filter(pk=ticket.pk).update(attempt_count=F("attempt_count") + 1)
    except IntegrityError:
        raise Conflict(f"Attempt {number} of this ticket exists already.",
                       code="attempt_exists") from None
    return attempt


def attempt_finish(
    *, attempt: Attempt, outcome: str, checks: Sequence[CheckOutcome] = (), diff: str = "",
    error: str = "", input_tokens: int = 0, output_tokens: int = 0,
    cache_write_tokens: int = 0, cache_read_tokens: int = 0, cost: Decimal = Decimal("0"),
) -> Attempt:
    """Record how an attempt ended, once; a second finish of the same attempt is refused."""
    if outcome not in AttemptOutcome.values or outcome == AttemptOutcome.RUNNING:
        raise ValueError(f"unknown final outcome {outcome!r}")
    with transaction.atomic():
        updated = Attempt.objects.filter(pk=attempt.pk, outcome=AttemptOutcome.RUNNING).update(
            outcome=outcome, finished_at=timezone.now(), diff=diff, error=error[:10_000],
            input_tokens=input_tokens, output_tokens=output_tokens,
            cache_write_tokens=cache_write_tokens, cache_read_tokens=cache_read_tokens,
            cost=cost)
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
    attempt.refresh_from_db()
    return attempt
