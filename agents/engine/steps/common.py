"""What every step shares: the worker's name and lease, the heartbeat, loading a claimed
attempt, and what follows an attempt's end."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from agents.engine import routing
from agents.engine.options import options_for
from haao.errors import Conflict
from haao.rows import one_or_none
from policies.enforcement import (
    Refusal,
    refusal_record,
)
from policies.selectors import EffectivePolicy
from tickets.models import (
    Attempt,
    AttemptOutcome,
    Ticket,
    TicketStatus,
)
from tickets.services.attempts import (
    attempt_finish,
    attempt_heartbeat,
)
from tickets.services.engine import (
    progress,
    ticket_attempt_finished,
    ticket_block,
)

logger = logging.getLogger(__name__)

S = TicketStatus


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def lease_seconds() -> int:
    return int(settings.HAAO_ATTEMPT_LEASE_SECONDS)


@contextmanager
def heartbeat(*, attempt: Attempt | None = None, holder: str = "") -> Iterator[None]:
    """Renew the attempt's lease and the endpoint slot while the body runs. A claim lost to
    another delivery needs no signal here: the claim fences every later write."""
    stop = threading.Event()
    seconds = lease_seconds()

    def beat() -> None:
        try:
            while not stop.wait(max(1.0, seconds / 3)):
                if attempt is not None:
                    attempt_heartbeat(attempt=attempt, lease_seconds=seconds)
                if holder:
                    routing.slot_renew(holder=holder, seconds=seconds)
        except Exception:  # a database hiccup: the lease may expire, recovery takes over
            logger.exception("Heartbeat of %s failed", holder or attempt)
        finally:
            connection.close()

    thread = threading.Thread(target=beat, name="haao-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def load_attempt(attempt_id: Any) -> Attempt | None:
    """The attempt with its ticket, project, organization and endpoint, in one query."""
    attempt = one_or_none(Attempt.objects.select_related("ticket__project__organization",
                                                         "inference_endpoint"), pk=attempt_id)
    if attempt is None:
        logger.warning("Attempt %s does not exist.", attempt_id)
        return None
    # One organization row, not the same row joined three times.
    organization = attempt.ticket.project.organization
    if attempt.organization_id == attempt.ticket.organization_id == organization.pk:
        attempt.organization = attempt.ticket.organization = organization
    return attempt


def cancelled(attempt: Attempt) -> bool:
    """End the waiting attempt of a ticket that was cancelled meanwhile, without running it."""
    if attempt.ticket.status != S.CANCELLED:
        return False
    with contextlib.suppress(Conflict):  # a running step of it finishes by itself
        attempt_finish(attempt=attempt, outcome=AttemptOutcome.ERROR,
                       error="The ticket was cancelled before this step ran.")
    return True


def quietly(action: Callable[..., Any], **kwargs: Any) -> Any:
    """Run a state change that another worker may have made first; None if it did."""
    try:
        return action(**kwargs)
    except Conflict:
        return None


def refuse(ticket: Ticket, refusal: Refusal, policy: EffectivePolicy, *, point: str) -> None:
    """Record the refusal on the ticket and block it for a person, in one transaction."""
    with transaction.atomic():
        refusal_record(organization=ticket.project.organization, refusal=refusal,
                       policy=policy, ticket=ticket, point=point)
        quietly(ticket_block, ticket=ticket,
                 reason=f"Refused by policy ({refusal.rule}): {refusal.message}")


# Refusals another try cannot fix: the ticket waits for a person instead of retrying.
BLOCKING_RULES = frozenset({"allowed_programs", "data_residency", "ticket_cloud_cap_usd",
                            "requirement_cloud_cap_usd", "monthly_cloud_cap_usd"})


def after_attempt(attempt: Attempt, *, ticket: Ticket, refusal: Refusal | None = None,
                  policy: EffectivePolicy | None = None) -> None:
    """Record the attempt's end as an event and move its ticket on, in one transaction: a
    refusal another try cannot fix blocks it; otherwise `policy` (read again when not given)
    decides what follows."""
    with transaction.atomic():
        progress(ticket=ticket, type="attempt.finished", attempt=attempt,
                 data={"outcome": attempt.outcome, "error": attempt.error[:500],
                       "input_tokens": attempt.input_tokens,
                       "output_tokens": attempt.output_tokens, "cost": str(attempt.cost)})
        if refusal is not None and refusal.rule in BLOCKING_RULES:
            quietly(ticket_block, ticket=ticket,
                     reason=f"Refused by policy ({refusal.rule}): {refusal.message}")
            return
        ticket_attempt_finished(attempt=attempt, options=options_for(
            project=ticket.project, ticket_id=ticket.pk, policy=policy))
