"""The check step: apply the stored answer in a fresh worktree and run the Definition of Done
in the sandbox."""

from __future__ import annotations

import logging
from typing import Any

from agents import sandbox
from agents.delivery.branches import (
    branch_follow_upstream,
    integration_branch_for,
)
from agents.engine.options import sandbox_limits
from agents.engine.steps.common import (
    after_attempt,
    cancelled,
    heartbeat,
    lease_seconds,
    load_attempt,
    quietly,
    worker_name,
)
from agents.environments import check_toolchain, project_environment
from agents.execution import (
    UNSANDBOXED_WARNING,
    AttemptChecked,
    attempt_check_run,
    attempt_end,
    error_outcome,
)
from agents.failures import SANDBOX_MISSING
from agents.models import EndpointKind, InferenceEndpoint
from agents.sandbox import CheckRun
from agents.workspaces.remote import STEP_FETCH_SECONDS, workspace_of
from haao.errors import Conflict
from policies.selectors import policy_for
from tickets.models import (
    Attempt,
    AttemptOutcome,
    AttemptStage,
    Ticket,
)
from tickets.services.attempts import (
    attempt_claim,
)
from tickets.services.engine import (
    progress,
)

logger = logging.getLogger(__name__)


def check_step(*, attempt_id: Any) -> None:
    """Apply the stored answer in a fresh worktree and run the DoD in the sandbox."""
    attempt = load_attempt(attempt_id)
    if attempt is None or attempt.outcome != AttemptOutcome.RUNNING or cancelled(attempt):
        return
    check_answer(attempt)


def check_answer(attempt: Attempt) -> Attempt | None:
    """Claim the answered `attempt` for its checks and run them; the attempt as it ended, or
    None when another delivery has it (or had it)."""
    claimed = attempt_claim(attempt=attempt, stages=[AttemptStage.ANSWERED],
                            to=AttemptStage.CHECKING, lease_seconds=lease_seconds(),
                            worker=worker_name())
    if claimed is None:
        return None
    ticket = claimed.ticket
    endpoint = _endpoint_of(claimed)
    policy = policy_for(project=ticket.project)
    allow_unsandboxed = ticket.organization.allow_unsandboxed_checks

    def on_check(index: int, total: int, check: CheckRun) -> None:
        progress(ticket=ticket, type="attempt.check", attempt=claimed,
                 data={"check": check.name, "index": index, "of": total,
                       "passed": check.passed, "exit_code": check.exit_code,
                       "duration_ms": check.duration_ms,
                       **({"expectation": check.expectation[:300]} if not check.passed else {})})

    warning = ""
    checked: AttemptChecked | None = None
    attempt_done: Attempt | None
    try:
        with heartbeat(attempt=claimed):
            if not sandbox.sandbox_available():
                if not allow_unsandboxed:
                    after_attempt(attempt_end(attempt=claimed,
                                              outcome=AttemptOutcome.INFRASTRUCTURE,
                                              error=SANDBOX_MISSING),
                                  ticket=ticket, policy=policy)
                    return None
                warning = UNSANDBOXED_WARNING
            # Fetched before each attempt (a fetch of the last STEP_FETCH_SECONDS counts), so it
            # starts from the team's current code.
            repo = workspace_of(ticket.project, max_age=STEP_FETCH_SECONDS)
            branch = branch_follow_upstream(
                branch=integration_branch_for(ticket=ticket, repo=repo), repo=repo)
            environment = _environment(ticket, repo, branch.head)
            readonly, env_extra = check_toolchain(environment)
            checked = attempt_check_run(
                attempt=claimed, endpoint=endpoint, policy=policy, repo=repo,
                answer=claimed.answer, limits=sandbox_limits(policy), readonly_paths=readonly,
                allow_unsandboxed=allow_unsandboxed, env_extra=env_extra,
                binds=environment.binds if environment else (), on_check=on_check,
                base=branch.head)
            attempt_done = attempt_end(
                attempt=claimed, outcome=checked.outcome, error=checked.error, warning=warning,
                checks=checked.checks, diff=checked.diff, base_commit=checked.base_commit,
                commit=checked.commit)
    except Conflict:
        logger.info("Attempt %s was taken over; its checks are dropped.", claimed.pk)
        return None
    except Exception as error:
        # Recording the end failed (or something before the checks did): end it as an error,
        # keeping whatever the checks found.
        outcome, message = error_outcome(error, attempt=claimed)
        found = checked or AttemptChecked(outcome)
        attempt_done = quietly(attempt_end, attempt=claimed, outcome=outcome, error=message,
                               warning=warning, checks=found.checks, diff=found.diff,
                               base_commit=found.base_commit, commit=found.commit)
    if attempt_done is not None:
        after_attempt(attempt_done, ticket=ticket,
                      refusal=checked.refusal if checked else None, policy=policy)
    return attempt_done


def _endpoint_of(attempt: Attempt) -> InferenceEndpoint:
    """The attempt's endpoint or, when that was deleted meanwhile, a stand-in that still
    names the model for the commit message."""
    return attempt.inference_endpoint or InferenceEndpoint(
        organization=attempt.ticket.organization, name=attempt.endpoint, model=attempt.model,
        kind=EndpointKind.OPENAI_COMPATIBLE)


def _environment(ticket: Ticket, repo: Any, base: str) -> Any:
    """The project's prepared dependencies at the attempt's base, when it has a setup."""
    return project_environment(project=ticket.project, repo_path=repo, base_commit=base)


