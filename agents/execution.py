"""What one attempt does, for the engine's steps (agents.engine.steps): ask the coder and
record the call in the ledger (the model step), then apply the stored answer to a fresh
worktree within the ticket's allowed paths, run the Definition of Done in the sandbox and
record the outcome through `tickets.services` (the check step). It never changes the
ticket's state: the engine decides what an outcome means for the ticket (tickets.state).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
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
    EditNotApplicable,
    EditRefused,
    apply_edits,
    attempt_branch,
)
from agents.workspaces.checkouts import checkout_at, checkout_hand_over
from agents.workspaces.git import git
from haao.errors import ApplicationError
from haao.secrets_registry import organization_secrets
from policies.enforcement import (
    Refusal,
    command_refusal,
    edits_refusal,
    refusal_record,
)
from policies.redaction import redact_payload
from policies.selectors import EffectivePolicy, policy_for
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


class AttemptRun:
    """The state of one attempt while it runs: the model calls' usage and the diff so far.

    `delivery` fences the final write: a worker whose claim was taken over (agents.engine)
    cannot finish the attempt.
    """

    def __init__(self, *, ticket: Ticket, attempt: Attempt, endpoint: InferenceEndpoint,
                 delivery: int | None = None) -> None:
        self.ticket = ticket
        self.attempt = attempt
        self.endpoint = endpoint
        self.delivery = delivery
        self.call: ModelCall | None = None
        self.diff = ""
        self.checks: list[CheckOutcome] = []
        self.warning = ""
        self.base_commit = ""
        self.commit = ""
        self._policy: EffectivePolicy | None = None
        # What a guardrail refused in this attempt, if anything (recorded as an event).
        self.refusal: Refusal | None = None

    @property
    def policy(self) -> EffectivePolicy:
        """The policy the attempt runs under (its project's, read once)."""
        if self._policy is None:
            self._policy = policy_for(project=self.ticket.project)
        return self._policy

    @policy.setter
    def policy(self, policy: EffectivePolicy | None) -> None:
        self._policy = policy

    def refuse(self, refusal: Refusal, *, point: str) -> Attempt:
        """Record what the policy refused and end the attempt as a guardrail violation."""
        self.refusal = refusal
        refusal_record(organization=self.ticket.organization, refusal=refusal,
                       policy=self.policy, ticket=self.ticket, point=point)
        return self.finish(AttemptOutcome.GUARDRAIL_VIOLATION,
                           error=f"Refused by policy ({refusal.rule}): {refusal.message}")

    def finish_error(self, error: ApplicationError) -> Attempt:
        """End the attempt on an error: the machine's (failures.error_cause) or another."""
        cause = error_cause(error)
        if cause:
            return self.finish(AttemptOutcome.INFRASTRUCTURE, error=cause)
        return self.finish(AttemptOutcome.ERROR, error=error.message)

    def finish(self, outcome: str, *, error: str = "") -> Attempt:
        if self.warning and outcome == AttemptOutcome.INFRASTRUCTURE and error:
            error = f"{error}\n{self.warning}"  # the cause is what the ticket is blocked with
        elif self.warning:
            error = f"{self.warning}\n{error}" if error else self.warning
        # Every model call of the attempt (each delivery, each repair round) is in the ledger.
        usage = ModelCall.objects.filter(attempt=self.attempt).aggregate(
            input_tokens=Sum("input_tokens"), output_tokens=Sum("output_tokens"),
            cache_write_tokens=Sum("cache_write_tokens"),
            cache_read_tokens=Sum("cache_read_tokens"), cost=Sum("cost"))
        return attempt_finish(
            attempt=self.attempt, outcome=outcome, checks=self.checks, diff=self.diff,
            error=error, input_tokens=usage["input_tokens"] or 0,
            output_tokens=usage["output_tokens"] or 0,
            cache_write_tokens=usage["cache_write_tokens"] or 0,
            cache_read_tokens=usage["cache_read_tokens"] or 0,
            cost=usage["cost"] or Decimal("0"), delivery=self.delivery,
            base_commit=self.base_commit, commit=self.commit)

    def record_call(self, *, outcome: str, model: str, input_tokens: int, output_tokens: int,
                    latency_ms: int, request_id: str = "", error: str = "") -> None:
        self.call = model_call_record(
            organization=self.ticket.organization, endpoint=self.endpoint, role=CallRole.CODE,
            outcome=outcome, model=model, input_tokens=input_tokens, output_tokens=output_tokens,
            latency_ms=latency_ms, request_id=request_id, error=error, ticket=self.ticket,
            attempt=self.attempt,
            idempotency_key=idempotency_key(self.attempt, delivery=self.delivery))

    def call_coder(self, *, spec: Mapping[str, Any], stream: bool,
                   on_token: TokenCallback | None, timeout: float, max_tokens: int | None,
                   strict_model: bool) -> CoderReply:
        """Ask the coder; a failed call is recorded in the ledger and raised as CoderFailure."""
        messages = coder_messages(
            spec=spec, previous=previous_attempt(ticket=self.ticket, before=self.attempt.number),
            feedback=self.ticket.feedback)
        if self.endpoint.is_cloud:  # a coder off the organization's machines reads no secret
            messages, _ = redact_payload(
                messages, known=organization_secrets(organization=self.ticket.organization))
        try:
            return complete(endpoint=self.endpoint, messages=messages, stream=stream,
                            on_token=on_token, timeout=timeout, max_tokens=max_tokens,
                            strict_model=strict_model)
        except CoderFailure as failure:
            self.record_call(outcome=failure.outcome, model=failure.model,
                             input_tokens=failure.usage.input_tokens,
                             output_tokens=failure.usage.output_tokens,
                             latency_ms=failure.latency_ms, request_id=failure.request_id,
                             error=failure.message)
            raise

    def check(self, *, repo: Path, answer: str, limits: SandboxLimits,
              readonly_paths: Sequence[Path], allow_unsandboxed: bool,
              env_extra: Mapping[str, str] | None, binds: Sequence[sandbox.Bind] = (),
              reply: CoderReply | None = None, on_check: CheckCallback | None = None,
              base: str = "") -> Attempt:
        """Apply the answer's edits to a checkout of `base` (default: the integration branch),
        run the DoD, commit if it passed."""
        ticket, project = self.ticket, self.ticket.project
        if not base:
            base = git(["rev-parse", "--verify",
                        f"refs/heads/{project.integration_branch}^{{commit}}"],
                       cwd=repo).stdout.strip()
        spec = spec_clean(ticket.spec)
        checks = [CheckSpec.from_spec(entry) for entry in spec["definition_of_done"]]
        try:
            edits = parse_edits(answer)
        except EditPathError as error:
            if reply is not None:
                self._record_reply(reply, CallOutcome.INVALID_OUTPUT, error.message)
            return self.finish(AttemptOutcome.GUARDRAIL_VIOLATION, error=error.message)
        except EditParseError as error:
            if reply is not None:
                self._record_reply(reply, CallOutcome.INVALID_OUTPUT, error.message)
            return self.finish(AttemptOutcome.INVALID_OUTPUT, error=error.message)
        if reply is not None:
            self._record_reply(reply, CallOutcome.OK)
        policy = self.policy
        refusal = edits_refusal(policy, [edit.path for edit in edits])
        if refusal is not None:
            return self.refuse(refusal, point="edits")
        with checkout_at(repo=repo, commit=base) as checkout:
            worktree = checkout.directory
            try:
                apply_edits(worktree=worktree, edits=edits,
                            allowed_paths=spec["allowed_paths"],
                            max_changed_lines=policy.max_changed_lines, git_env=checkout.env)
            except EditRefused as error:
                if "added" in error.details:  # the size of the change, a policy rule
                    return self.refuse(Refusal("max_changed_lines", policy.max_changed_lines,
                                               error.message), point="edits")
                return self.finish(AttemptOutcome.GUARDRAIL_VIOLATION, error=error.message)
            except EditNotApplicable as error:
                return self.finish(AttemptOutcome.INVALID_OUTPUT, error=error.message)
            # Everything git needs is read now, while HAAO still owns the worktree: the
            # sandbox hands it to an unprivileged uid (docs/sandbox.md), and git refuses a
            # worktree owned by someone else — nor should HAAO trust what the check left there.
            self.diff = checkout.git(["diff", "--cached", "--no-ext-diff", "--no-textconv",
                                      "--no-color", "--binary", "--no-renames", base])
            tree = checkout.git(["write-tree"]).strip()
            if os.geteuid() == 0 and sandbox.sandbox_available():
                checkout_hand_over(checkout, uid=sandbox.DEFAULT_SANDBOX_UID)
            runs: list[CheckRun] = []
            for index, check in enumerate(checks, start=1):
                refusal = command_refusal(policy, check.command)
                if refusal is not None:  # the policy may have changed since dispatch
                    self.checks = [_outcome_of(done) for done in runs]
                    return self.refuse(refusal, point="command")
                run = run_check(worktree=worktree, check=check, limits=limits,
                                readonly_paths=readonly_paths, env_extra=env_extra,
                                allow_unsandboxed=allow_unsandboxed, binds=binds)
                runs.append(run)
                if on_check is not None:
                    on_check(index, len(checks), run)
                cause = check_failure_cause(
                    run, path=(env_extra or {}).get("PATH", sandbox.SANDBOX_PATH))
                if cause:  # the program did not start: the rest would not either
                    self.checks = [_outcome_of(done) for done in runs]
                    return self.finish(AttemptOutcome.INFRASTRUCTURE, error=cause)
        self.checks = [_outcome_of(run) for run in runs]
        failed = [run for run in runs if not run.passed]
        if failed:
            timed_out = any(run.timed_out for run in failed)
            summary = "; ".join(f"{run.name}: {run.expectation}" for run in failed)
            return self.finish(AttemptOutcome.TIMEOUT if timed_out else
                               AttemptOutcome.TESTS_FAILED, error=summary[:2000])
        self.base_commit = base
        self.commit = self._commit(repo, base=base, tree=tree)
        return self.finish(AttemptOutcome.PASSED)

    def _record_reply(self, reply: CoderReply, outcome: str, error: str = "") -> None:
        self.record_call(outcome=outcome, model=reply.model,
                         input_tokens=reply.usage.input_tokens,
                         output_tokens=reply.usage.output_tokens, latency_ms=reply.latency_ms,
                         request_id=reply.request_id, error=error)

    def _commit(self, repo: Path, *, base: str, tree: str) -> str:
        """Commit the applied edits, keep the commit in HAAO's store, name it by a local
        attempt branch; the commit id."""
        ticket = self.ticket
        branch = attempt_branch(ticket.key, self.attempt.number)
        message = f"{ticket.key}: {ticket.title}\n\nAttempt {self.attempt.number} by " \
                  f"{self.endpoint.model} on {self.endpoint.name}; Definition of Done passed.\n"
        commit = git(["commit-tree", tree, "-p", base, "-F", "-"], cwd=repo,
                     input_text=message).stdout.strip()
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
