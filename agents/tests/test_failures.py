"""Which failures are the machine's: a program that did not start, a sandbox or setup that
failed; and the words an admin reads about each."""

from __future__ import annotations

import pytest

from agents.environments import EnvironmentSetupFailed, ToolchainMissing
from agents.failures import check_failure_cause, error_cause
from agents.sandbox import CheckInvalid, CheckRun, SandboxError, SandboxUnavailable
from haao.errors import ApplicationError

PATH = "/opt/venv/bin:/usr/local/bin:/usr/bin:/bin"


def failed(command: tuple[str, ...], exit_code: int, stderr: str) -> CheckRun:
    return CheckRun(name="tests", command=command, expected_exit_code=0, exit_code=exit_code,
                    passed=False, expectation=f"exit code {exit_code}, expected 0",
                    duration_ms=3, stdout="", stderr=stderr, stdout_bytes=0,
                    stderr_bytes=len(stderr))


def test_a_program_missing_from_the_sandbox_is_the_machines_fault() -> None:
    cause = check_failure_cause(failed(
        ("python", "-m", "pytest"), 127,
        "prlimit: failed to execute python: No such file or directory\n"), path=PATH)
    assert cause.startswith("`python` is not found inside the sandbox: the check's program is "
                            f"not on the sandbox's PATH ({PATH})")
    assert "HAAO_CHECK_TOOLCHAIN" in cause and "An admin can" in cause


def test_a_program_that_cannot_be_executed_is_the_machines_fault() -> None:
    cause = check_failure_cause(failed(
        ("/opt/tools/gradle",), 126,
        "prlimit: failed to execute /opt/tools/gradle: Permission denied\n"), path=PATH)
    assert cause.startswith("`/opt/tools/gradle` cannot be executed inside the sandbox")


def test_a_tool_a_shell_check_needs_is_the_machines_fault() -> None:
    cause = check_failure_cause(failed(("make", "test"), 127, "make: npm: No such file\n"),
                                path=PATH)
    assert "could not find or execute a program it needs (exit code 127: make: npm" in cause


@pytest.mark.parametrize("command,code,stderr", [
    (("pytest",), 1, "1 failed"),                       # the tests failed
    (("pytest",), 2, "usage error"),
    (("./scripts/check",), 127,                         # the repository's own script
     "prlimit: failed to execute ./scripts/check: No such file or directory"),
])
def test_failures_of_the_code_under_test_are_not(command: tuple[str, ...], code: int,
                                                 stderr: str) -> None:
    assert check_failure_cause(failed(command, code, stderr), path=PATH) == ""


def test_errors_of_the_machine_name_what_an_admin_can_do() -> None:
    assert "apt-get install" in error_cause(SandboxUnavailable(
        "bubblewrap (bwrap) … apt-get install bubblewrap util-linux"))
    assert "bubblewrap can create namespaces" in error_cause(SandboxError(
        "The sandbox did not start: bwrap: No permissions to create new namespace"))
    setup = error_cause(EnvironmentSetupFailed(
        "The project's setup command 'pip install' failed (exit code 1, expected 0). Its "
        "output ended with:\nno index"))
    assert setup.endswith("setup command in the project's settings, or install what it "
                          "needs on the worker.\nno index")
    assert "HAAO_CHECK_TOOLCHAIN" in error_cause(ToolchainMissing(
        "HAAO_CHECK_TOOLCHAIN names /opt/py, which does not exist on this worker"))
    assert "not usable" in error_cause(CheckInvalid(
        "The read-only path /x must be an existing absolute path.",
        details={"readonly_paths": "/x does not exist"}))


def test_errors_of_the_ticket_are_not() -> None:
    assert error_cause(CheckInvalid("Check 'x': command must be a list",
                                    details={"command": "must be a list"})) == ""
    assert error_cause(ApplicationError("The spec is invalid.")) == ""
