"""The steps of the loop, one per Celery task: each loads by id, claims, works, records.

Every step is safe to deliver twice: it claims its work with a compare-and-set (an attempt's
stage, a lease row) before anything costly, and its writes are fenced by the claim, so a
second delivery returns without a second model call, usage row or attempt. What follows a
step is enqueued only after its transaction commits (through tickets.state's side effects).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction

from agents import sandbox
from agents.coder.client import CoderFailure
from agents.delivery.branches import (
    branch_follow_upstream,
    branch_merge_ticket,
    integration_branch_for,
)
from agents.engine import enqueue, hooks, routing
from agents.engine.options import options_for, sandbox_limits
from agents.environments import check_toolchain, project_environment
from agents.execution import UNSANDBOXED_WARNING, AttemptRun, failure_outcome
from agents.failures import SANDBOX_MISSING
from agents.health import HealthResult, endpoint_health_record
from agents.models import (
    CallOutcome,
    CallRole,
    EndpointKind,
    EndpointRole,
    HealthStatus,
    InferenceEndpoint,
    ModelCall,
)
from agents.sandbox import CheckRun
from agents.selectors import spend_refusal
from agents.techlead.audit import audit
from agents.techlead.client import CallRefused, InvalidAnswer, SpendLimitReached, TechLeadError
from agents.techlead.decompose import decompose_requirement
from agents.techlead.solve import solve
from agents.workspaces.remote import workspace_of
from haao.audit import Actor
from haao.errors import ApplicationError, Conflict
from policies.enforcement import (
    ANY_CALL,
    GuardrailRefused,
    Refusal,
    command_refusal,
    path_refusal,
    refusal_record,
)
from policies.selectors import EffectivePolicy, policy_for
from tickets.models import (
    Attempt,
    AttemptOutcome,
    AttemptStage,
    DeliveryMode,
    ExecutorKind,
    Project,
    Requirement,
    RequirementStatus,
    Ticket,
    TicketStatus,
)
from tickets.services.attempts import (
    attempt_answered,
    attempt_claim,
    attempt_finish,
    attempt_heartbeat,
    attempt_release,
    attempt_reroute,
)
from tickets.services.engine import (
    IN_PROGRESS,
    dependency_problems,
    progress,
    ticket_attempt_finished,
    ticket_audit_skipped,
    ticket_audited,
    ticket_block,
    ticket_dispatch,
    ticket_merge_conflicted,
    tickets_requeue,
)
from tickets.spec import spec_clean

logger = logging.getLogger(__name__)

S = TicketStatus
# The endpoint, not the code, failed: the attempt waits or moves instead of failing.
UNREACHABLE = frozenset({CallOutcome.CONNECTION_ERROR, CallOutcome.SERVER_ERROR,
                         CallOutcome.RATE_LIMITED})
# How long a dispatcher may hold its project's mutex (it lets go when done).
DISPATCH_MUTEX_SECONDS = 60
# Queued tickets loaded at a time while filling the WIP room.
DISPATCH_PAGE = 50
# At most one token-progress event per attempt in this many seconds.
TOKEN_EVENT_SECONDS = 1.0
# At most this much of the text written since the previous token event goes into the next.
TOKEN_EVENT_TEXT = 4000


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


def _load_attempt(attempt_id: Any) -> Attempt | None:
    attempt = (Attempt.objects.select_related("ticket__project__organization", "organization",
                                              "inference_endpoint")
               .filter(pk=attempt_id).first())
    if attempt is None:
        logger.warning("Attempt %s does not exist.", attempt_id)
    return attempt


def attempt_run(attempt: Attempt) -> AttemptRun:
    """The attempt's run, fenced by its current claim, on its endpoint (or, when that was
    deleted meanwhile, a stand-in that still names the model for commit messages)."""
    endpoint = attempt.inference_endpoint or InferenceEndpoint(
        organization=attempt.ticket.organization, name=attempt.endpoint, model=attempt.model,
        kind=EndpointKind.OPENAI_COMPATIBLE)
    return AttemptRun(ticket=attempt.ticket, attempt=attempt, endpoint=endpoint,
                      delivery=attempt.deliveries)


def _cancelled(attempt: Attempt) -> bool:
    """End the waiting attempt of a ticket that was cancelled meanwhile, without running it."""
    if attempt.ticket.status != S.CANCELLED:
        return False
    with contextlib.suppress(Conflict):  # a running step of it finishes by itself
        attempt_finish(attempt=attempt, outcome=AttemptOutcome.ERROR,
                       error="The ticket was cancelled before this step ran.")
    return True


# --- Dispatch ---------------------------------------------------------------------------------

def dispatch_project(*, project_id: Any) -> list[Attempt]:
    """Start the next attempts of a project: waiting work first, dependencies first, within
    the WIP limit, each on the healthy endpoint with the most room."""
    cache.delete(hooks.dispatch_mark(project_id))  # changes from now on need a new dispatch
    project = Project.objects.select_related("organization").filter(pk=project_id).first()
    if project is None:
        logger.warning("Project %s to dispatch does not exist.", project_id)
        return []
    # One dispatcher per project at a time, or the WIP count races. The mutex is not a row
    # lock held across the loop: each ticket's dispatch commits on its own, so no dispatcher
    # holds the audit chain while it waits for the next ticket's row.
    mutex = f"haao:dispatching:{project.pk}"
    if not cache.add(mutex, worker_name(), timeout=DISPATCH_MUTEX_SECONDS):
        enqueue.dispatch(project_id=project.pk, on_commit=False, countdown=1)
        return []
    try:
        return _dispatch(project)
    finally:
        cache.delete(mutex)


def _dispatch(project: Project) -> list[Attempt]:
    policy = policy_for(project=project)
    tickets_requeue(project=project, retry_budget=policy.retry_budget)
    organization = project.organization
    started: list[Attempt] = []
    tickets = Ticket.objects.for_org(organization).filter(project=project)
    room = policy.wip_limit - tickets.filter(status__in=IN_PROGRESS).count()
    idle = (tickets.exclude(attempts__outcome=AttemptOutcome.RUNNING)
            .select_related("project__organization").prefetch_related("dependencies")
            .order_by("created_at", "order", "number"))
    # Retries and escalations hold their WIP place already; new work waits for one.
    for ticket in idle.filter(status__in=(S.RETRYING, S.ESCALATED)).distinct():
        attempt, _ = _start(ticket, organization, policy)
        if attempt is not None:
            started.append(attempt)
    if room <= 0:
        return started
    # Ids only for the whole queue; tickets are loaded a page at a time until the WIP room
    # is used, so a long queue costs one cheap query per dispatch.
    queued = list(idle.filter(status=S.QUEUED).distinct().values_list("pk", flat=True))
    for page in range(0, len(queued), DISPATCH_PAGE):
        for ticket in idle.filter(pk__in=queued[page:page + DISPATCH_PAGE]):
            if room <= 0:
                return started
            ready, why = dependency_problems(ticket=ticket)
            if why:
                _quietly(ticket_block, ticket=ticket, reason=why)
                continue
            if not ready:
                continue
            attempt, no_coder = _start(ticket, organization, policy)
            if no_coder:
                return started  # no healthy coder: the rest of the queue waits too
            if attempt is not None:
                started.append(attempt)
                room -= 1
    return started


def _quietly(action: Callable[..., Any], **kwargs: Any) -> Any:
    """Run a state change that another worker may have made first; None if it did."""
    try:
        return action(**kwargs)
    except Conflict:
        return None


def _start(ticket: Ticket, organization: Any,
           policy: EffectivePolicy) -> tuple[Attempt | None, bool]:
    """The ticket's next attempt, on the Tech Lead if it was escalated, else on a coder;
    (None, True) when no coder can take it now. The policy is checked first: a ticket whose
    checks could never run, or whose cloud budget is spent, is blocked without a model call."""
    refusal = dispatch_refusal(ticket, policy)
    if refusal is not None:
        _refuse(ticket, refusal, policy, point="dispatch")
        return None, False
    residency = policy.data_residency
    if ticket.status == S.ESCALATED:
        endpoint = routing.tech_lead(organization=organization, self_hosted_only=residency)
        executor = ExecutorKind.CLOUD
        if endpoint is None:
            where = "no enabled self-hosted Tech Lead endpoint (data residency is on)" \
                if residency else "no enabled Tech Lead endpoint"
            _quietly(ticket_block, ticket=ticket,
                     reason=f"It was escalated, but the organization has {where}.")
            return None, False
    else:
        endpoint = routing.pick_coder(organization=organization, self_hosted_only=residency)
        executor = ExecutorKind.LOCAL
        if endpoint is None:
            return None, True  # it waits; recovery dispatches again
    attempt: Attempt | None = _quietly(ticket_dispatch, ticket=ticket, executor=executor,
                                       endpoint=endpoint, queue=routing.attempt_queue(endpoint),
                                       policy_version=policy.version)
    return attempt, False


def dispatch_refusal(ticket: Ticket, policy: EffectivePolicy) -> Refusal | None:
    """What the policy refuses before a ticket's next attempt: a Definition-of-Done program
    it does not allow (no attempt could pass), or, for the Tech Lead, a spent cloud cap."""
    try:
        spec = spec_clean(ticket.spec)
    except ApplicationError:
        return None  # the attempt itself reports a broken spec
    for entry in spec["definition_of_done"]:
        refusal = command_refusal(policy, entry.get("command") or [])
        if refusal is not None:
            return refusal
    # A ticket that may change only files the policy protects could never be done.
    named = [path for path in spec["allowed_paths"] if not any(c in path for c in "*?")]
    if named and len(named) == len(spec["allowed_paths"]):
        refusals = [path_refusal(policy, path) for path in named]
        if all(refusals):
            return refusals[0]
    if ticket.status == S.ESCALATED:
        return spend_refusal(policy, organization=ticket.project.organization, ticket=ticket,
                             estimate=ANY_CALL)
    return None


def _refuse(ticket: Ticket, refusal: Refusal, policy: EffectivePolicy, *, point: str) -> None:
    """Record the refusal on the ticket and block it for a person, in one transaction."""
    with transaction.atomic():
        refusal_record(organization=ticket.project.organization, refusal=refusal,
                       policy=policy, ticket=ticket, point=point)
        _quietly(ticket_block, ticket=ticket,
                 reason=f"Refused by policy ({refusal.rule}): {refusal.message}")


# --- The model step: a local coder or the Tech Lead writes the edits -------------------------

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
    attempt = _load_attempt(attempt_id)
    if attempt is None or attempt.outcome != AttemptOutcome.RUNNING \
            or attempt.stage != AttemptStage.PENDING:
        return  # done, or another delivery has it
    if _cancelled(attempt):
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
    try:
        claimed = attempt_claim(attempt_id=attempt.pk, stages=[AttemptStage.PENDING],
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
                _solve(claimed, endpoint)
            else:
                _code(claimed, endpoint)
    finally:
        routing.slot_release(holder=holder)


def _code(attempt: Attempt, endpoint: InferenceEndpoint) -> None:
    run = AttemptRun(ticket=attempt.ticket, attempt=attempt, endpoint=endpoint,
                     delivery=attempt.deliveries)
    try:
        spec = spec_clean(attempt.ticket.spec)
        reply = run.call_coder(spec=spec, stream=True, on_token=_token_events(attempt),
                               timeout=float(settings.HAAO_CODER_TIMEOUT), max_tokens=None,
                               strict_model=False)
    except CoderFailure as failure:
        if failure.outcome in UNREACHABLE:
            _unreachable(attempt, endpoint, failure)
            return
        after_attempt(run.finish(failure_outcome(failure),
                             error=f"Coder call failed ({failure.reason}): {failure.message}"),
                  run)
        return
    except ApplicationError as error:
        after_attempt(run.finish(AttemptOutcome.ERROR, error=error.message), run)
        return
    run._record_reply(reply, CallOutcome.OK)
    _answered(attempt, reply.text, tokens=reply.usage.output_tokens)


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


def _solve(attempt: Attempt, endpoint: InferenceEndpoint) -> None:

    ticket = attempt.ticket
    run = AttemptRun(ticket=ticket, attempt=attempt, endpoint=endpoint,
                     delivery=attempt.deliveries)
    history = list(Attempt.objects.for_org(ticket.organization)
                   .filter(ticket=ticket, number__lt=attempt.number)
                   .prefetch_related("checks").order_by("number"))
    try:
        text = solve(ticket=ticket, history=history, endpoint=endpoint, attempt=attempt,
                     idempotency_key=f"solve:{attempt.pk}:{attempt.deliveries}")
    except InvalidAnswer as error:
        after_attempt(run.finish(AttemptOutcome.INVALID_OUTPUT, error=error.message), run)
        return
    except GuardrailRefused as error:
        run.refusal = error.refusal  # recorded by the client; the ticket waits for a person
        after_attempt(run.finish(AttemptOutcome.GUARDRAIL_VIOLATION, error=error.message), run)
        return
    except (TechLeadError, ApplicationError) as error:
        after_attempt(run.finish(AttemptOutcome.ERROR, error=error.message), run)
        return
    _answered(attempt, text, tokens=0)


def _answered(attempt: Attempt, text: str, *, tokens: int) -> None:
    if not attempt_answered(attempt=attempt, answer=text):
        logger.info("Attempt %s was taken over; its answer is dropped.", attempt.pk)
        return
    progress(ticket=attempt.ticket, type="attempt.answered", attempt=attempt,
             actor=Actor.model(attempt.model),
             data={"output_tokens": tokens, "characters": len(text)})
    enqueue.check_step(attempt_id=attempt.pk, queue=routing.checks_queue(attempt))


# --- The check step: apply the edits, run the Definition of Done ----------------------------

def check_step(*, attempt_id: Any) -> None:
    """Apply the stored answer in a fresh worktree and run the DoD in the sandbox."""
    attempt = _load_attempt(attempt_id)
    if attempt is None or attempt.outcome != AttemptOutcome.RUNNING or _cancelled(attempt):
        return
    claimed = attempt_claim(attempt_id=attempt.pk, stages=[AttemptStage.ANSWERED],
                            to=AttemptStage.CHECKING, lease_seconds=lease_seconds(),
                            worker=worker_name())
    if claimed is None:
        return
    ticket = claimed.ticket
    run = attempt_run(claimed)
    run.policy = policy = policy_for(project=ticket.project)
    allow_unsandboxed = ticket.organization.allow_unsandboxed_checks

    def on_check(index: int, total: int, check: CheckRun) -> None:
        progress(ticket=ticket, type="attempt.check", attempt=claimed,
                 data={"check": check.name, "index": index, "of": total,
                       "passed": check.passed, "exit_code": check.exit_code,
                       "duration_ms": check.duration_ms,
                       **({"expectation": check.expectation[:300]} if not check.passed else {})})

    attempt_done: Attempt | None
    try:
        with heartbeat(attempt=claimed):
            if not sandbox.sandbox_available():
                if not allow_unsandboxed:
                    after_attempt(run.finish(AttemptOutcome.INFRASTRUCTURE,
                                             error=SANDBOX_MISSING), run)
                    return
                run.warning = UNSANDBOXED_WARNING
            # Fetched before each attempt, so it starts from the team's current code.
            repo = workspace_of(ticket.project, fresh=True)
            branch = branch_follow_upstream(
                branch=integration_branch_for(ticket=ticket, repo=repo), repo=repo)
            environment = _environment(ticket, repo, branch.head)
            readonly, env_extra = check_toolchain(environment)
            attempt_done = run.check(
                repo=repo, answer=claimed.answer, limits=sandbox_limits(policy),
                readonly_paths=readonly, allow_unsandboxed=allow_unsandboxed,
                env_extra=env_extra, binds=environment.binds if environment else (),
                on_check=on_check, base=branch.head)
    except Conflict:
        logger.info("Attempt %s was taken over; its checks are dropped.", claimed.pk)
        return
    except ApplicationError as error:
        attempt_done = _quietly(run.finish_error, error=error)
    except Exception as error:
        logger.exception("Checks of attempt %s crashed", claimed.pk)
        attempt_done = _quietly(run.finish, outcome=AttemptOutcome.ERROR,
                                error=f"Internal error: {type(error).__name__}: {error}")
    if attempt_done is not None:
        after_attempt(attempt_done, run)


def _environment(ticket: Ticket, repo: Any, base: str) -> Any:
    """The project's prepared dependencies at the attempt's base, when it has a setup."""
    return project_environment(project=ticket.project, repo_path=repo, base_commit=base)


# Refusals another try cannot fix: the ticket waits for a person instead of retrying.
BLOCKING_RULES = frozenset({"allowed_programs", "data_residency", "ticket_cloud_cap_usd",
                            "requirement_cloud_cap_usd", "monthly_cloud_cap_usd"})


def after_attempt(attempt: Attempt, run: AttemptRun) -> None:
    """Record the attempt's end as an event and move its ticket on, in one transaction."""
    with transaction.atomic():
        progress(ticket=run.ticket, type="attempt.finished", attempt=attempt,
                 data={"outcome": attempt.outcome, "error": attempt.error[:500],
                       "input_tokens": attempt.input_tokens,
                       "output_tokens": attempt.output_tokens, "cost": str(attempt.cost)})
        refusal = run.refusal
        if refusal is not None and refusal.rule in BLOCKING_RULES:
            _quietly(ticket_block, ticket=run.ticket,
                     reason=f"Refused by policy ({refusal.rule}): {refusal.message}")
            return
        ticket_attempt_finished(attempt=attempt, options=options_for(
            project=run.ticket.project, ticket_id=run.ticket.pk, policy=run.policy))


# --- Audit -------------------------------------------------------------------------------------

def audit_step(*, ticket_id: Any) -> None:
    """The Tech Lead audits the diff of the ticket's latest (passed) attempt."""

    ticket = (Ticket.objects.select_related("project__organization").filter(pk=ticket_id)
              .first())
    if ticket is None or ticket.status != S.AUDITING:
        return
    attempt = (Attempt.objects.filter(ticket=ticket).order_by("-number")
               .prefetch_related("checks").first())
    if attempt is None:
        return
    organization = ticket.project.organization
    policy = policy_for(project=ticket.project)
    options = options_for(project=ticket.project, ticket_id=ticket.pk, policy=policy)
    endpoint = routing.tech_lead(organization=organization, role=EndpointRole.AUDITOR,
                                 self_hosted_only=policy.data_residency)
    if endpoint is None or not options.audit:
        _quietly(ticket_audit_skipped, ticket=ticket, attempt=attempt,
                 reason=options.no_audit_why or "no Tech Lead endpoint")
        return
    holder = f"audit:{attempt.pk}"
    if not routing.slot_acquire(endpoint=endpoint, holder=holder, seconds=lease_seconds()):
        enqueue.audit_step(ticket_id=ticket.pk, organization=organization, on_commit=False,
                           countdown=settings.HAAO_ENDPOINT_WAIT_SECONDS)
        return
    try:
        ticket.refresh_from_db()
        if ticket.status != S.AUDITING:
            return
        with heartbeat(holder=holder):
            try:
                # A later run after a failed one (the holder claim rules out concurrent
                # ones) records its own usage rows.
                runs = ModelCall.objects.filter(attempt=attempt, role=CallRole.AUDIT).count()
                verdict = audit(ticket=ticket, diff=attempt.diff,
                                check_results=list(attempt.checks.all()), endpoint=endpoint,
                                attempt=attempt, idempotency_key=f"audit:{attempt.pk}"
                                + (f":{runs}" if runs else ""))
            except (CallRefused, SpendLimitReached, GuardrailRefused) as error:
                # A wrong key, an exhausted account or a policy's cap: trying again cannot
                # help, a person can.
                _quietly(ticket_block, ticket=ticket,
                         reason=f"The Tech Lead could not audit the work: {error.message}")
                return
            except TechLeadError as error:
                # The auditor could not be reached even after its retries: try again later.
                logger.warning("Audit of %s failed: %s", ticket.key, error.message)
                enqueue.audit_step(ticket_id=ticket.pk, organization=organization,
                                   on_commit=False, countdown=settings.HAAO_ENDPOINT_WAIT_SECONDS)
                return
        ticket_audited(attempt=attempt, passed=verdict.passed, summary=verdict.summary,
                       findings=verdict.findings, actor=Actor.model(endpoint.model),
                       options=options)
    finally:
        routing.slot_release(holder=holder)


# --- Merge on acceptance ----------------------------------------------------------------------

def merge_step(*, ticket_id: Any) -> None:
    """Merge an accepted ticket's passed attempt into the integration branch, once."""
    ticket = (Ticket.objects.select_related("project__organization", "decided_by")
              .filter(pk=ticket_id).first())
    if ticket is None or ticket.status != S.ACCEPTED or ticket.merged_commit:
        return
    attempt = (Attempt.objects.filter(ticket=ticket, outcome=AttemptOutcome.PASSED)
               .order_by("-number").first())
    if attempt is None:
        progress(ticket=ticket, type="ticket.merge_failed",
                 data={"reason": "It has no passed attempt to merge."})
        return
    claim = f"haao:merging:{ticket.pk}"
    if not cache.add(claim, worker_name(), timeout=lease_seconds()):
        return  # another delivery is merging it; the merge is idempotent anyway
    try:
        _merge(ticket, attempt)
    finally:
        cache.delete(claim)


def _merge(ticket: Ticket, attempt: Attempt) -> None:
    project = ticket.project
    repo = workspace_of(project, fresh=True)
    decided = ticket.decided_by.email if ticket.decided_by else "a product owner"
    message = (f"{ticket.key}: {ticket.title}\n\nAccepted by {decided} in HAAO. Attempt "
               f"{attempt.number} by {attempt.model or attempt.executor}.\n")
    branch, result = branch_merge_ticket(ticket=ticket, attempt=attempt, repo=repo,
                                         message=message)
    if result.merged:
        enqueue.dispatch(project_id=project.pk, on_commit=True)
        if project.delivery != DeliveryMode.NONE:
            enqueue.deliver(branch_id=branch.pk, organization=project.organization)
        return
    ticket_merge_conflicted(ticket=ticket, summary=result.summary)


# --- Decomposition -----------------------------------------------------------------------------

def decompose_step(*, requirement_id: Any) -> None:
    """The Tech Lead proposes tickets for a new requirement (once, whoever delivers it)."""

    requirement = (Requirement.objects.select_related("project__organization")
                   .filter(pk=requirement_id).first())
    if requirement is None or requirement.status != RequirementStatus.DECOMPOSING:
        return
    residency = policy_for(project=requirement.project).data_residency
    endpoint = routing.tech_lead(organization=requirement.project.organization,
                                 self_hosted_only=residency)
    if endpoint is None:
        decompose_requirement(requirement_id=requirement.pk)  # records why it failed
        return
    holder = f"decompose:{requirement.pk}"
    if not routing.slot_acquire(endpoint=endpoint, holder=holder, seconds=lease_seconds()):
        enqueue.decompose(requirement_id=requirement.pk,
                          organization=requirement.project.organization, on_commit=False,
                          countdown=settings.HAAO_ENDPOINT_WAIT_SECONDS)
        return
    try:
        with heartbeat(holder=holder):
            decompose_requirement(requirement_id=requirement.pk)
    finally:
        routing.slot_release(holder=holder)
