"""The setup check ("Check setup"): does the project's test command pass on its default branch?

Before any model is called, HAAO fetches the default branch, prepares the project's
environment at its head (the setup command, as for an attempt) and runs the test command in
the sandbox there. The report says in words what stops the project, using the same failure
classes as the loop (agents.failures): a repository HAAO cannot reach, a setup command that
fails, a toolchain or sandbox this machine lacks, a program the sandbox cannot find, or tests
that already fail before any ticket changed a line. See docs/sandbox.md.
"""

from __future__ import annotations

import logging
import re
import shlex
from dataclasses import asdict, dataclass
from typing import Any

from django.db import models
from django.utils import timezone

from agents import sandbox
from agents.delivery.branches import upstream_tip
from agents.engine.options import sandbox_limits
from agents.environments import (
    OUTPUT_TAIL_CHARS,
    EnvironmentSetupFailed,
    ToolchainMissing,
    check_toolchain,
    project_environment,
)
from agents.failures import SANDBOX_MISSING, check_failure_cause, error_cause
from agents.models import IntegrationBranch
from agents.sandbox import CheckSpec, SandboxError, SandboxUnavailable
from agents.workspaces.remote import connection_check, workspace_of
from agents.workspaces.repos import commit_checkout, workspace_repo
from haao.errors import ApplicationError
from policies.selectors import policy_for
from tickets.models import DeliveryMode, Project
from tickets.services import project_setup_report_set

logger = logging.getLogger(__name__)

# "3 failed" (pytest), "FAILED (failures=2, errors=1)" (unittest), "2 failing" (mocha).
_FAILED_COUNTS = (re.compile(r"\b(\d+) failed\b"), re.compile(r"failures=(\d+)"),
                  re.compile(r"\b(\d+) failing\b"))
# pytest's short summary: "FAILED tests/test_x.py::test_y - AssertionError: …".
_FAILED_TEST = re.compile(r"^FAILED (\S+)", re.MULTILINE)
FAILED_TESTS_SHOWN = 5


class SetupStatus(models.TextChoices):
    OK = "ok"
    NO_REPOSITORY = "no_repository"
    UNREACHABLE = "unreachable"
    BRANCH_MISSING = "branch_missing"
    SANDBOX_UNAVAILABLE = "sandbox_unavailable"
    TOOLCHAIN_MISSING = "toolchain_missing"
    SETUP_FAILED = "setup_failed"
    NO_TEST_COMMAND = "no_test_command"
    COMMAND_NOT_FOUND = "command_not_found"
    TESTS_FAIL_ON_BASE = "tests_fail_on_base"
    ERROR = "error"


@dataclass(frozen=True)
class SetupReport:
    """What the setup check found, for a person: a status, what to do, and the evidence."""

    status: str
    message: str
    checked_at: str
    branch: str = ""
    commit: str = ""  # the default branch's head the check ran at; "" when it got no further
    command: str = ""  # the test command as run, for the reader
    failed: int | None = None  # how many tests failed, when the output says
    output_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == SetupStatus.OK


def setup_check(*, project: Project, actor: Any = None) -> SetupReport:
    """Run the setup check of `project` now; store and audit its report (project.setup_report)."""

    report = _check(project)
    project_setup_report_set(project=project, report=asdict(report), actor=actor)
    return report


def setup_check_run(*, project_id: Any) -> None:
    """The automatic setup check (agents.tasks.setup_check): a project that is gone is
    skipped; running twice only replaces the report with a newer one."""
    project = Project.objects.select_related("organization").filter(pk=project_id).first()
    if project is None:
        logger.info("Project %s to check is gone.", project_id)
        return
    setup_check(project=project)


def _check(project: Project) -> SetupReport:
    now = timezone.now().isoformat()
    branch = project.default_branch
    if not project.repository:
        return SetupReport(SetupStatus.NO_REPOSITORY, "The project has no repository URL yet: "
                           "set one in the project's settings.", now, branch)
    connection = connection_check(project)
    if not connection.ok:
        status = SetupStatus.BRANCH_MISSING if connection.authenticated \
            else SetupStatus.UNREACHABLE
        return SetupReport(status, connection.message, now, branch)
    if not sandbox.sandbox_available():
        return SetupReport(SetupStatus.SANDBOX_UNAVAILABLE, SANDBOX_MISSING, now, branch)

    try:
        repo = workspace_of(project, max_age=0)
        head = upstream_tip(repo, project)
    except ApplicationError as error:
        return SetupReport(SetupStatus.UNREACHABLE, f"HAAO could not fetch {branch!r}: "
                           f"{error.message}", now, branch)
    try:
        return _run_tests(project, repo=repo, head=head, now=now)
    except ApplicationError as error:
        return _machine(error, now=now, branch=branch, head=head)


def _run_tests(project: Project, *, repo: Any, head: str, now: str) -> SetupReport:
    short = head[:7]
    environment = project_environment(project=project, repo_path=repo, base_commit=head)
    readonly, env_extra = check_toolchain(environment)
    if not project.test_command:
        done = "its setup command ran" if environment else "it has no setup command"
        return SetupReport(SetupStatus.NO_TEST_COMMAND, f"The project has no test command, so "
                           f"HAAO cannot tell whether {project.default_branch} at {short} "
                           f"passes ({done}): set one in the project's settings, e.g. "
                           '["pytest", "-q"].', now, project.default_branch, head)
    command = tuple(project.test_command)
    limits = sandbox_limits(policy_for(project=project))
    with commit_checkout(repo=repo, commit=head, label="setup-check") as checkout:
        run = sandbox.run_check(
            worktree=checkout, check=CheckSpec(name="test command", command=command,
                                               timeout_seconds=limits.timeout_seconds),
            limits=limits, readonly_paths=readonly, env_extra=env_extra,
            binds=environment.binds if environment else ())
    shown = shlex.join(command)
    output = (run.stdout + run.stderr).strip()[-OUTPUT_TAIL_CHARS:]
    def report(status: SetupStatus, message: str, failed: int | None = None) -> SetupReport:
        return SetupReport(status, message, now, project.default_branch, head, shown, failed,
                           output)

    if run.passed:
        return report(SetupStatus.OK, f"Ready: the test command `{shown}` passes on "
                      f"{project.default_branch} at {short}.")
    cause = check_failure_cause(run, path=env_extra["PATH"])
    if cause:
        return report(SetupStatus.COMMAND_NOT_FOUND, cause)
    failed = _failed_count(output)
    counted = f"{failed} failed" if failed else run.expectation
    return report(SetupStatus.TESTS_FAIL_ON_BASE, f"The test command `{shown}` already fails "
                  f"on {project.default_branch} at {short} ({counted}), before any ticket "
                  "changes a line: only a ticket that fixes these failures can pass its "
                  "checks. If no ticket is meant to, fix the branch or the command first.",
                  failed)


def _machine(error: ApplicationError, *, now: str, branch: str, head: str) -> SetupReport:
    """A machine failure while preparing or running, in the loop's words (agents.failures)."""
    if isinstance(error, SandboxUnavailable | SandboxError):
        status = SetupStatus.SANDBOX_UNAVAILABLE
    elif isinstance(error, ToolchainMissing):
        status = SetupStatus.TOOLCHAIN_MISSING
    elif isinstance(error, EnvironmentSetupFailed):
        status = SetupStatus.SETUP_FAILED
    else:
        status = SetupStatus.SETUP_FAILED if error_cause(error) else SetupStatus.ERROR
    message = error_cause(error) or error.message
    first, _, tail = message.partition("\n")
    tail = str(error.details.get("output_tail", tail)) if error.details else tail
    return SetupReport(status, first, now, branch, head, output_tail=tail[-OUTPUT_TAIL_CHARS:])


def _failed_count(output: str) -> int | None:
    for pattern in _FAILED_COUNTS:
        found = pattern.findall(output)
        if found:
            return int(found[-1])
    return None


# --- What Gate 1 reads ---------------------------------------------------------------------------

def base_failure(project: Project) -> dict[str, Any] | None:
    """The project's last setup report when it says the tests already fail at the commit new
    tickets would start from (as far as this machine knows without fetching), else None.

    Its `failed_tests` names up to five failing tests from pytest's summary."""
    report = project.setup_report or {}
    if report.get("status") != SetupStatus.TESTS_FAIL_ON_BASE or not report.get("commit"):
        return None
    start = _known_start(project)
    if start and start != report["commit"]:
        return None  # the branch moved since: the check does not speak of it
    names = list(dict.fromkeys(_FAILED_TEST.findall(str(report.get("output_tail", "")))))
    return {**report, "failed_tests": names[:FAILED_TESTS_SHOWN]}


def _known_start(project: Project) -> str:
    """The commit the project's next tickets start from, as this machine last saw it: the
    integration branch's head once HAAO's work is on it (agents.delivery.branches.work_base),
    else the default branch's head in this machine's workspace; "" when unknown here."""
    from django.conf import settings


    if project.delivery != DeliveryMode.PULL_REQUEST:
        branch = IntegrationBranch.objects.filter(project=project,
                                                  name=project.integration_branch).first()
        if branch is not None and branch.head != branch.base:
            return str(branch.head)
    repo = workspace_repo(project.pk, settings.HAAO_WORKSPACE_ROOT)
    if not (repo / "HEAD").is_file():
        return ""
    try:
        return upstream_tip(repo, project)
    except ApplicationError:
        return ""
