"""What one attempt does, for the engine's steps (agents.engine.steps): ask the coder and
record the call in the ledger (the model step), then apply the stored answer to a fresh
worktree within the ticket's allowed paths and run the Definition of Done in the sandbox
(the check step). Each returns what happened; the step ends the attempt with `attempt_end`,
which records the outcome and the usage of its calls through `tickets.services`. It never
changes the ticket's state: the engine decides what an outcome means for the ticket
(tickets.state).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.db.models import Sum

from agents import sandbox
from agents.coder.client import CoderFailure, CoderReply, TokenCallback, complete
from agents.coder.prompt import PreviousAttempt, PreviousCheck, coder_messages
from agents.delivery.packs import pack_save
from agents.edits import EditParseError, EditPathError, parse_edits
from agents.failures import check_failure_cause, error_cause
from agents.ledger import model_call_record
from agents.models import CallOutcome, CallRole, InferenceEndpoint, ModelCall
from agents.sandbox import CheckRun, CheckSpec, SandboxLimits, run_check
from agents.workspaces import (
    CHANGE_TOO_LARGE,
    EditNotApplicable,
    EditRefused,
    apply_edits,
    attempt_branch,
)
from agents.workspaces.checkouts import checkout_at, checkout_hand_over
from agents.workspaces.git import git
from agents.workspaces.objects import commit_write
from haao.errors import ApplicationError, Conflict
from haao.secrets_registry import organization_secrets
from policies.enforcement import (
    Refusal,
    command_refusal,
    edits_refusal,
    refusal_record,
)
from policies.redaction import redact_payload
from policies.selectors import EffectivePolicy
from tickets.models import Attempt, AttemptOutcome, Ticket
from tickets.services import CheckOutcome, attempt_finish
from tickets.spec import spec_clean

logger = logging.getLogger(__name__)

# How a failed coder call ends the attempt; anything else is an infrastructure error.
_CALL_FAILURE_OUTCOMES = {
    CallOutcome.TIMEOUT: AttemptOutcome.TIMEOUT,
    CallOutcome.INVALID_OUTPUT: AttemptOutcome.INVALID_OUTPUT,
}

UNSANDBOXED_WARNING = (
    "Warning: the checks ran WITHOUT a sandbox (bubblewrap is not available on this worker; "
    "the organization allows unsandboxed checks). The model's code ran with the worker's "
    "access to files and network.")


def idempotency_key(attempt: Attempt, *, delivery: int | None = None) -> str:
    """The usage row key of an attempt's coder call; a re-delivered task writes no second row.

    A claim that really calls the model again (the first worker was lost) has its own key.
    """
    key = f"attempt:{attempt.pk}:code"
    return key if not delivery or delivery == 1 else f"{key}:{delivery}"


def previous_attempt(*, ticket: Ticket, before: int) -> PreviousAttempt | None:
    """The latest finished attempt of `ticket` numbered below `before`, with its checks."""
    if before <= 1:
        return None  # attempts are numbered from 1
    attempt = (Attempt.objects.for_org(ticket.organization)
               .filter(ticket=ticket, number__lt=before)
               .exclude(outcome=AttemptOutcome.RUNNING)
               .order_by("-number").prefetch_related("checks").first())
    if attempt is None:
        return None
    checks = [PreviousCheck(name=c.name, command=list(c.command), passed=c.passed,
                            exit_code=c.exit_code, expectation=c.expectation,
                            stdout_tail=c.stdout_tail, stderr_tail=c.stderr_tail)
              for c in sorted(attempt.checks.all(), key=lambda c: c.index)]
    return PreviousAttempt(number=attempt.number, outcome=attempt.outcome, error=attempt.error,
                           checks=checks)


# Called after each Definition-of-Done check with (index from 1, how many, the check's run).
CheckCallback = Callable[[int, int, CheckRun], None]


@dataclass(frozen=True)
class AttemptChecked:
    """How an attempt's checks ended and what they left: its checks' results, the diff, the
    commit it started from and the one it made, and what a guardrail refused, if anything."""

    outcome: str
    error: str = ""
    checks: tuple[CheckOutcome, ...] = ()
    diff: str = ""
    base_commit: str = ""
    commit: str = ""
    refusal: Refusal | None = None


def attempt_end(*, attempt: Attempt, outcome: str, error: str = "", warning: str = "",
                checks: Sequence[CheckOutcome] = (), diff: str = "", base_commit: str = "",
                commit: str = "") -> Attempt:
    """Record how the attempt ended, with the usage of all its model calls and `warning`
    joined to its error.

    Fenced by the attempt's claim (`attempt.deliveries`): a worker whose claim was taken over
    (agents.engine) gets Conflict and cannot finish the attempt.
    """
    if warning and outcome == AttemptOutcome.INFRASTRUCTURE and error:
        error = f"{error}\n{warning}"  # the cause is what the ticket is blocked with
    elif warning:
        error = f"{warning}\n{error}" if error else warning
    # Every model call of the attempt (each delivery, each repair round) is in the ledger.
    usage = ModelCall.objects.filter(attempt=attempt).aggregate(
        input_tokens=Sum("input_tokens"), output_tokens=Sum("output_tokens"),
        cache_write_tokens=Sum("cache_write_tokens"),
        cache_read_tokens=Sum("cache_read_tokens"), cost=Sum("cost"))
    return attempt_finish(
        attempt=attempt, outcome=outcome, checks=checks, diff=diff,
        error=error, input_tokens=usage["input_tokens"] or 0,
        output_tokens=usage["output_tokens"] or 0,
        cache_write_tokens=usage["cache_write_tokens"] or 0,
        cache_read_tokens=usage["cache_read_tokens"] or 0,
        cost=usage["cost"] or Decimal("0"), delivery=attempt.deliveries,
        base_commit=base_commit, commit=commit)


def coder_answer_get(*, attempt: Attempt, endpoint: InferenceEndpoint, spec: Mapping[str, Any],
                     stream: bool, on_token: TokenCallback | None, timeout: float,
                     max_tokens: int | None, strict_model: bool) -> CoderReply:
    """Ask the coder; a failed call is recorded in the ledger and raised as CoderFailure."""
    ticket = attempt.ticket
    messages = coder_messages(
        spec=spec, previous=previous_attempt(ticket=ticket, before=attempt.number),
        feedback=ticket.feedback)
    if endpoint.is_cloud:  # a coder off the organization's machines reads no secret
        messages, _ = redact_payload(
            messages, known=organization_secrets(organization=ticket.organization))
    try:
        return complete(endpoint=endpoint, messages=messages, stream=stream,
                        on_token=on_token, timeout=timeout, max_tokens=max_tokens,
                        strict_model=strict_model)
    except CoderFailure as failure:
        _call_record(attempt, endpoint, failure, outcome=failure.outcome,
                     error=failure.message)
        raise


def coder_reply_record(*, attempt: Attempt, endpoint: InferenceEndpoint,
                       reply: CoderReply) -> ModelCall:
    """Record the coder's answer in the ledger, once per claim of the attempt."""
    return _call_record(attempt, endpoint, reply, outcome=CallOutcome.OK)


def _call_record(attempt: Attempt, endpoint: InferenceEndpoint,
                 call: CoderReply | CoderFailure, *, outcome: str, error: str = "") -> ModelCall:
    return model_call_record(
        organization=attempt.ticket.organization, endpoint=endpoint, role=CallRole.CODE,
        outcome=outcome, model=call.model, input_tokens=call.usage.input_tokens,
        output_tokens=call.usage.output_tokens, latency_ms=call.latency_ms,
        request_id=call.request_id, error=error, ticket=attempt.ticket, attempt=attempt,
        idempotency_key=idempotency_key(attempt, delivery=attempt.deliveries))


def attempt_check_run(*, attempt: Attempt, endpoint: InferenceEndpoint,
                      policy: EffectivePolicy, repo: Path, answer: str, limits: SandboxLimits,
                      readonly_paths: Sequence[Path], allow_unsandboxed: bool,
                      env_extra: Mapping[str, str] | None, binds: Sequence[sandbox.Bind] = (),
                      on_check: CheckCallback | None = None, base: str = "") -> AttemptChecked:
    """Apply the answer's edits to a checkout of `base` (default: the integration branch),
    run the DoD, commit if it passed; how that ended, for `attempt_end`.

    An error on the way ends the checks too, with what they had found by then (the diff, a
    refusal); only Conflict, a claim lost to another delivery, is raised.
    """
    ticket, project = attempt.ticket, attempt.ticket.project
    diff = base_commit = ""
    checks: tuple[CheckOutcome, ...] = ()
    refusal: Refusal | None = None
    try:
        if not base:
            base = git(["rev-parse", "--verify",
                        f"refs/heads/{project.integration_branch}^{{commit}}"],
                       cwd=repo).stdout.strip()
        spec = spec_clean(ticket.spec)
        specs = [CheckSpec.from_spec(entry) for entry in spec["definition_of_done"]]
        try:
            edits = parse_edits(answer)
        except EditPathError as error:
            return AttemptChecked(AttemptOutcome.GUARDRAIL_VIOLATION, error=error.message)
        except EditParseError as error:
            return AttemptChecked(AttemptOutcome.INVALID_OUTPUT, error=error.message)
        refusal = edits_refusal(policy, [edit.path for edit in edits])
        if refusal is not None:
            return _refused(attempt, policy, refusal, point="edits")
        with checkout_at(repo=repo, commit=base) as checkout:
            worktree = checkout.directory
            try:
                apply_edits(worktree=worktree, edits=edits,
                            allowed_paths=spec["allowed_paths"],
                            max_changed_lines=policy.max_changed_lines, git_env=checkout.env)
            except EditRefused as error:
                if error.code == CHANGE_TOO_LARGE:
                    refusal = Refusal("max_changed_lines", policy.max_changed_lines,
                                      error.message)
                    return _refused(attempt, policy, refusal, point="edits")
                return AttemptChecked(AttemptOutcome.GUARDRAIL_VIOLATION, error=error.message)
            except EditNotApplicable as error:
                return AttemptChecked(AttemptOutcome.INVALID_OUTPUT, error=error.message)
            # Everything git needs is read now, while HAAO still owns the worktree: the
            # sandbox hands it to an unprivileged uid (docs/sandbox.md), and git refuses a
            # worktree owned by someone else — nor should HAAO trust what the check left there.
            diff = checkout.git(["diff", "--cached", "--no-ext-diff", "--no-textconv",
                                 "--no-color", "--binary", "--no-renames", base])
            tree = checkout.git(["write-tree"]).strip()
            # Walked once, not again before each check (hand_over reads every file's owner).
            handed_over = os.geteuid() == 0 and sandbox.sandbox_available()
            if handed_over:
                checkout_hand_over(checkout, uid=sandbox.DEFAULT_SANDBOX_UID)
            runs: list[CheckRun] = []
            for index, check in enumerate(specs, start=1):
                refusal = command_refusal(policy, check.command)
                if refusal is not None:  # the policy may have changed since dispatch
                    checks = tuple(_outcome_of(done) for done in runs)
                    return _refused(attempt, policy, refusal, point="command", checks=checks,
                                    diff=diff)
                run = run_check(worktree=worktree, check=check, limits=limits,
                                readonly_paths=readonly_paths, env_extra=env_extra,
                                allow_unsandboxed=allow_unsandboxed, binds=binds,
                                handed_over=handed_over)
                runs.append(run)
                if on_check is not None:
                    on_check(index, len(specs), run)
                cause = check_failure_cause(
                    run, path=(env_extra or {}).get("PATH", sandbox.SANDBOX_PATH))
                if cause:  # the program did not start: the rest would not either
                    checks = tuple(_outcome_of(done) for done in runs)
                    return AttemptChecked(AttemptOutcome.INFRASTRUCTURE, error=cause,
                                          checks=checks, diff=diff)
        checks = tuple(_outcome_of(run) for run in runs)
        failed = [run for run in runs if not run.passed]
        if failed:
            timed_out = any(run.timed_out for run in failed)
            summary = "; ".join(f"{run.name}: {run.expectation}" for run in failed)
            return AttemptChecked(AttemptOutcome.TIMEOUT if timed_out else
                                  AttemptOutcome.TESTS_FAILED, error=summary[:2000],
                                  checks=checks, diff=diff)
        base_commit = base
        commit = _commit(repo, attempt=attempt, endpoint=endpoint, base=base, tree=tree)
        return AttemptChecked(AttemptOutcome.PASSED, checks=checks, diff=diff,
                              base_commit=base_commit, commit=commit)
    except Conflict:
        raise
    except Exception as error:
        outcome, message = error_outcome(error, attempt=attempt)
        return AttemptChecked(outcome, error=message, checks=checks, diff=diff,
                              base_commit=base_commit, refusal=refusal)


def error_outcome(error: Exception, *, attempt: Attempt) -> tuple[str, str]:
    """The outcome and error text of checks stopped by `error`: the machine's fault
    (failures.error_cause), a known error, or a crash (logged with its traceback)."""
    if isinstance(error, ApplicationError):
        cause = error_cause(error)
        if cause:
            return AttemptOutcome.INFRASTRUCTURE, cause
        return AttemptOutcome.ERROR, error.message
    logger.exception("Checks of attempt %s crashed", attempt.pk)
    return AttemptOutcome.ERROR, f"Internal error: {type(error).__name__}: {error}"


def _refused(attempt: Attempt, policy: EffectivePolicy, refusal: Refusal, *, point: str,
             checks: tuple[CheckOutcome, ...] = (), diff: str = "") -> AttemptChecked:
    """Record what the policy refused; the attempt ends as a guardrail violation."""
    refusal_record(organization=attempt.ticket.organization, refusal=refusal, policy=policy,
                   ticket=attempt.ticket, point=point)
    return AttemptChecked(AttemptOutcome.GUARDRAIL_VIOLATION,
                          error=f"Refused by policy ({refusal.rule}): {refusal.message}",
                          checks=checks, diff=diff, refusal=refusal)


def _commit(repo: Path, *, attempt: Attempt, endpoint: InferenceEndpoint, base: str,
            tree: str) -> str:
    """Commit the applied edits, keep the commit in HAAO's store, name it by a local
    attempt branch; the commit id."""
    ticket = attempt.ticket
    branch = attempt_branch(ticket.key, attempt.number)
    message = f"{ticket.key}: {ticket.title}\n\nAttempt {attempt.number} by " \
              f"{endpoint.model} on {endpoint.name}; Definition of Done passed.\n"
    commit = commit_write(repo, tree=tree, parents=[base], message=message)
    pack_save(project=ticket.project, repo=repo, commit=commit, prerequisites=[base],
              refs={f"refs/heads/{branch}": commit})
    return commit


def failure_outcome(failure: CoderFailure) -> str:
    """The attempt outcome of a failed coder call (the model's fault or the server's)."""
    return _CALL_FAILURE_OUTCOMES.get(CallOutcome(failure.outcome), AttemptOutcome.ERROR)


def _outcome_of(run: CheckRun) -> CheckOutcome:
    return CheckOutcome(name=run.name, command=list(run.command),
                        expected_exit_code=run.expected_exit_code, exit_code=run.exit_code,
                        passed=run.passed, duration_ms=run.duration_ms, stdout=run.stdout,
                        stderr=run.stderr, expectation=run.expectation)
