"""The model step: a local coder (or, for an escalated ticket, the Tech Lead) writes the
edits; the answer is stored before the checks."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings

from agents.coder.client import CoderFailure
from agents.engine import enqueue, hooks, routing, workers
from agents.engine.steps.audit import audit_attempt, audit_step
from agents.engine.steps.checks import check_answer
from agents.engine.steps.common import (
    after_attempt,
    cancelled,
    heartbeat,
    lease_seconds,
    load_attempt,
    worker_name,
)
from agents.execution import (
    attempt_end,
    coder_answer_get,
    coder_reply_record,
    failure_outcome,
)
from agents.health import HealthResult, endpoint_health_record
from agents.models import (
    CallOutcome,
    HealthStatus,
    InferenceEndpoint,
)
from agents.techlead.client import InvalidAnswer, TechLeadError
from agents.techlead.solve import solve
from haao.audit import Actor
from haao.errors import ApplicationError
from policies.enforcement import (
    GuardrailRefused,
    Refusal,
)
from policies.selectors import policy_for
from tickets.models import (
    Attempt,
    AttemptOutcome,
    AttemptStage,
    ExecutorKind,
    Ticket,
)
from tickets.services.attempts import (
    attempt_answered,
    attempt_claim,
    attempt_release,
    attempt_reroute,
)
from tickets.services.engine import (
    progress,
)
from tickets.spec import spec_clean

logger = logging.getLogger(__name__)

# The endpoint, not the code, failed: the attempt waits or moves instead of failing.
UNREACHABLE = frozenset({CallOutcome.CONNECTION_ERROR, CallOutcome.SERVER_ERROR,
                         CallOutcome.RATE_LIMITED})
# At most one token-progress event per attempt in this many seconds.
TOKEN_EVENT_SECONDS = 1.0
# At most this much of the text written since the previous token event goes into the next.
TOKEN_EVENT_TEXT = 4000


def _wait_or_move(attempt: Attempt, endpoint: InferenceEndpoint | None) -> None:
    """The attempt's endpoint cannot take it now: move it to a healthy one, or try later."""
    organization = attempt.ticket.project.organization
    if attempt.executor == ExecutorKind.LOCAL and (
            endpoint is None or not endpoint.enabled
            or endpoint.health_status == HealthStatus.FAILING):
        residency = policy_for(project=attempt.ticket.project).data_residency
        other = routing.pick_coder(organization=organization,
                                   exclude=(endpoint.pk,) if endpoint else (),
                                   self_hosted_only=residency)
        if other is not None:
            queue = routing.attempt_queue(other)
            if attempt_reroute(attempt=attempt, endpoint=other, queue=queue):
                progress(ticket=attempt.ticket, type="attempt.moved", attempt=attempt,
                         data={"from": endpoint.name if endpoint else "", "to": other.name})
                enqueue.model_step(attempt_id=attempt.pk, queue=queue, on_commit=False)
            return
    enqueue.model_step(attempt_id=attempt.pk, queue=attempt.queue, on_commit=False,
                       countdown=settings.HAAO_ENDPOINT_WAIT_SECONDS)


def _token_events(attempt: Attempt) -> Callable[[str], None]:
    """At most one `attempt.tokens` event a second while the model writes, with the counts so
    far and the text written since the previous one (what the portal shows as it streams)."""
    state: dict[str, Any] = {"pieces": 0, "chars": 0, "last": time.monotonic(), "text": []}

    def on_token(piece: str) -> None:
        state["pieces"] += 1
        state["chars"] += len(piece)
        state["text"].append(piece)
        now = time.monotonic()
        if now - state["last"] >= TOKEN_EVENT_SECONDS:
            state["last"] = now
            text = "".join(state["text"])
            state["text"] = []
            data = {"tokens": state["pieces"], "characters": state["chars"],
                    "text": text[-TOKEN_EVENT_TEXT:]}
            if len(text) > TOKEN_EVENT_TEXT:
                data["skipped"] = len(text) - TOKEN_EVENT_TEXT
            progress(ticket=attempt.ticket, type="attempt.tokens", attempt=attempt,
                     actor=Actor.model(attempt.model), data=data)

    return on_token


def model_step(*, attempt_id: Any) -> None:
    """Ask the attempt's model for edits and hand the answer to the checks."""
    attempt = load_attempt(attempt_id)
    if attempt is None or attempt.outcome != AttemptOutcome.RUNNING \
            or attempt.stage != AttemptStage.PENDING:
        return  # done, or another delivery has it
    if cancelled(attempt):
        return
    endpoint = attempt.inference_endpoint
    if endpoint is None or not endpoint.enabled or (
            attempt.executor == ExecutorKind.LOCAL
            and endpoint.health_status == HealthStatus.FAILING):
        _wait_or_move(attempt, endpoint)
        return
    holder = f"attempt:{attempt.pk}"
    if not routing.slot_acquire(endpoint=endpoint, holder=holder, seconds=lease_seconds()):
        _wait_or_move(attempt, endpoint)  # every slot is taken (or this very step runs)
        return
    answered = False
    try:
        claimed = attempt_claim(attempt=attempt, stages=[AttemptStage.PENDING],
                                to=AttemptStage.CODING, lease_seconds=lease_seconds(),
                                worker=worker_name())
        if claimed is None:
            return
        ticket = claimed.ticket
        progress(ticket=ticket, type="attempt.started", attempt=claimed,
                 data={"executor": claimed.executor, "endpoint": endpoint.name,
                       "model": endpoint.model, "delivery": claimed.deliveries})
        with heartbeat(attempt=claimed, holder=holder):
            if claimed.executor == ExecutorKind.CLOUD:
                answered = _solve(claimed, endpoint)
            else:
                answered = _code(claimed, endpoint)
    finally:
        routing.slot_release(holder=holder)
    if answered:
        _to_checks(claimed)


def _to_checks(attempt: Attempt) -> None:
    """Hand the stored answer to the checks: in this task, once the model's slot is free,
    when this worker takes the checks' queue (one task per attempt, no hop through the
    broker); otherwise as a check step on that queue. Work that passes is audited in this
    task too when this worker takes the audit's queue (an audit would hold one of its
    workers as long anyway). A worker lost in between loses nothing: the answer is stored,
    and recovery sends the check step, or the audit, again at once, as it does for a step
    whose worker died (agents.engine.recovery)."""
    queue = routing.checks_queue(attempt)
    if not workers.takes(queue):
        enqueue.check_step(attempt_id=attempt.pk, queue=queue)
        return
    # The attempt and its ticket go on as read at this task's start, the ticket's status
    # read again (a ticket cancelled while its model wrote is not checked).
    ticket = attempt.ticket
    ticket.refresh_from_db(fields=["status"])
    if cancelled(attempt):
        return
    organization = ticket.project.organization
    with hooks.audits_kept(organization) as audits:
        checked = check_answer(attempt)
    for change in audits:
        try:
            if checked is not None and change.ticket_id == ticket.pk:
                ticket.status = change.to_status  # as the change to its audit left it
                audit_attempt(ticket, checked)
            else:
                audit_step(ticket_id=change.ticket_id)
        except Exception:
            # Sent through the broker after all: this task's retry would find its attempt
            # done and never reach the audit.
            enqueue.audit_step(ticket_id=change.ticket_id, organization=organization,
                               on_commit=False)
            raise


def _code(attempt: Attempt, endpoint: InferenceEndpoint) -> bool:
    ticket = attempt.ticket
    try:
        spec = spec_clean(ticket.spec)
        reply = coder_answer_get(attempt=attempt, endpoint=endpoint, spec=spec, stream=True,
                                 on_token=_token_events(attempt),
                                 timeout=float(settings.HAAO_CODER_TIMEOUT), max_tokens=None,
                                 strict_model=False)
    except CoderFailure as failure:
        if failure.outcome in UNREACHABLE:
            _unreachable(attempt, endpoint, failure)
            return False
        _ended(attempt, ticket, failure_outcome(failure),
               error=f"Coder call failed ({failure.reason}): {failure.message}")
        return False
    except ApplicationError as error:
        _ended(attempt, ticket, AttemptOutcome.ERROR, error=error.message)
        return False
    coder_reply_record(attempt=attempt, endpoint=endpoint, reply=reply)
    return _answered(attempt, reply.text, tokens=reply.usage.output_tokens)


def _unreachable(attempt: Attempt, endpoint: InferenceEndpoint, failure: CoderFailure) -> None:
    """The coder's server failed, not the code: the attempt waits or moves; no budget spent."""
    if failure.outcome != CallOutcome.RATE_LIMITED:
        endpoint_health_record(endpoint=endpoint, result=HealthResult(
            ok=False, latency_ms=failure.latency_ms, error=failure.message[:1000]))
        endpoint.refresh_from_db()
    if attempt_release(attempt=attempt, error=f"{endpoint.name}: {failure.message}"):
        progress(ticket=attempt.ticket, type="attempt.waiting", attempt=attempt,
                 data={"endpoint": endpoint.name, "reason": failure.message[:500]})
        attempt.stage = AttemptStage.PENDING
        _wait_or_move(attempt, endpoint)


def _solve(attempt: Attempt, endpoint: InferenceEndpoint) -> bool:
    ticket = attempt.ticket
    history = list(Attempt.objects.for_org(ticket.organization)
                   .filter(ticket=ticket, number__lt=attempt.number)
                   .prefetch_related("checks").order_by("number"))
    try:
        text = solve(ticket=ticket, history=history, endpoint=endpoint, attempt=attempt,
                     idempotency_key=f"solve:{attempt.pk}:{attempt.deliveries}")
    except InvalidAnswer as error:
        _ended(attempt, ticket, AttemptOutcome.INVALID_OUTPUT, error=error.message)
        return False
    except GuardrailRefused as error:
        # Recorded by the client; the ticket waits for a person.
        _ended(attempt, ticket, AttemptOutcome.GUARDRAIL_VIOLATION, error=error.message,
               refusal=error.refusal)
        return False
    except (TechLeadError, ApplicationError) as error:
        _ended(attempt, ticket, AttemptOutcome.ERROR, error=error.message)
        return False
    return _answered(attempt, text, tokens=0)


def _ended(attempt: Attempt, ticket: Ticket, outcome: str, *, error: str,
           refusal: Refusal | None = None) -> None:
    """End an attempt that got no answer and move its ticket on."""
    after_attempt(attempt_end(attempt=attempt, outcome=outcome, error=error), ticket=ticket,
                  refusal=refusal)


def _answered(attempt: Attempt, text: str, *, tokens: int) -> bool:
    """Store the answer (the checkpoint the checks start from); whether it was stored."""
    if not attempt_answered(attempt=attempt, answer=text):
        logger.info("Attempt %s was taken over; its answer is dropped.", attempt.pk)
        return False
    progress(ticket=attempt.ticket, type="attempt.answered", attempt=attempt,
             actor=Actor.model(attempt.model),
             data={"output_tokens": tokens, "characters": len(text)})
    return True
