"""Which failures are the machine's, not the code's, and what an admin can do about them.

A check whose program could not start, a sandbox that did not start, a setup command or
toolchain that failed: another try by a model cannot fix any of these, so the attempt ends
as `infrastructure` and the ticket waits for an admin (tickets.services.engine) without
spending a retry, an escalation or a cloud call. The texts here are what that admin reads.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from agents.environments import EnvironmentSetupFailed, ToolchainMissing, check_toolchain
from agents.sandbox import (
    CheckInvalid,
    CheckRun,
    CheckSpec,
    SandboxError,
    SandboxLimits,
    SandboxUnavailable,
    run_check,
    sandbox_available,
)
from haao.errors import ApplicationError

# Exit codes of a program that was not found (127) or could not be executed (126).
NOT_STARTED = (126, 127)
# CheckInvalid fields that describe the machine's setup rather than the ticket's checks.
_MACHINE_FIELDS = ("setup_command", "readonly_paths", "binds", "env_extra", "worktree")
# What an admin reads when this machine cannot start a sandbox at all (the check step,
# agents.engine.steps.checks).
SANDBOX_MISSING = (
    "Checks cannot run: bubblewrap is not available on this worker, and the organization "
    "does not allow unsandboxed checks. Install the Debian packages bubblewrap and util-linux "
    "on the worker (apt-get install bubblewrap util-linux), or let an organization admin "
    "allow unsandboxed checks in the console (Security).")
_INSTALL = ("An admin can install it on the worker, give the project a setup command that "
            "provides it, or name its directory in HAAO_CHECK_TOOLCHAIN.")


def check_failure_cause(run: CheckRun, *, path: str) -> str:
    """Why a failed check is the machine's fault, for an admin; "" when the code failed."""
    if run.passed or run.exit_code not in NOT_STARTED:
        return ""
    program = run.command[0]
    if "/" in program and not program.startswith("/"):
        return ""  # a script in the worktree: the code under test provides it
    stderr = run.stderr.strip()
    last = stderr.splitlines()[-1][:300] if stderr else "no output"
    if "failed to execute" in stderr:  # prlimit or setpriv could not start the program
        if run.exit_code == 126:
            return (f"`{program}` cannot be executed inside the sandbox ({last}): the file is "
                    "there but is not an executable program for this machine, or lacks "
                    f"execute permission. {_INSTALL}")
        return (f"`{program}` is not found inside the sandbox: the check's program is not on "
                f"the sandbox's PATH ({path}), or it links to a directory the sandbox does not "
                f"mount. {_INSTALL}")
    return (f"The check {run.name!r} (`{' '.join(run.command)[:200]}`) could not find or "
            f"execute a program it needs (exit code {run.exit_code}: {last}). {_INSTALL}")


def error_cause(error: BaseException) -> str:
    """Why an error that ended an attempt is the machine's fault, for an admin; "" if not."""
    if isinstance(error, SandboxUnavailable):
        return error.message
    if isinstance(error, SandboxError):
        return (f"{error.message} An admin can check that bubblewrap can create namespaces on "
                "this worker (docs/sandbox.md), or let the organization allow unsandboxed "
                "checks in the console (Security).")
    if isinstance(error, EnvironmentSetupFailed):
        first, _, output = error.message.partition("\n")
        return (f"{first} An admin can correct the setup command in the project's settings, "
                f"or install what it needs on the worker.\n{output}").strip()
    if isinstance(error, ToolchainMissing):
        return error.message
    if isinstance(error, CheckInvalid) and any(f in error.details for f in _MACHINE_FIELDS):
        return (f"The checks' environment on this worker is not usable: {error.message} An "
                "admin can correct the project's setup command or HAAO_CHECK_TOOLCHAIN.")
    return ""


def sandbox_probe() -> tuple[str, str]:
    """(problem, detail) from one trivial check of the default toolchain's python in the
    sandbox on this machine (what /health reports). The problem is "" when it runs, else why
    not, for an admin; the detail says what runs: "bubblewrap 0.8.0, python 3.11.7 at
    /usr/bin/python3" (the python3 checks find first)."""
    if not sandbox_available():
        return SANDBOX_MISSING, ""
    try:
        run, path = _probe(("python3", "-c", "import sys; print(sys.version.split()[0], "
                                             "sys.executable)"))
    except ApplicationError as error:
        return error_cause(error) or error.message, ""
    if not run.passed:
        return (check_failure_cause(run, path=path)
                or f"python3 -c … failed in the sandbox: {run.expectation}"), ""
    version, _, executable = run.stdout.strip().partition(" ")
    try:
        done = subprocess.run(["bwrap", "--version"], capture_output=True, text=True,  # noqa: S607
                              timeout=10, check=False)
        bwrap = done.stdout.strip().replace("bubblewrap", "").strip()
    except (OSError, subprocess.SubprocessError):
        bwrap = ""
    return "", f"bubblewrap {bwrap or '(version unknown)'}, python {version} at {executable}"


def _probe(command: tuple[str, ...]) -> tuple[CheckRun, str]:
    """Run `command` with the default toolchain in the sandbox; the run and its PATH."""
    probe = CheckSpec(name="health", command=command, timeout_seconds=30)
    readonly, env_extra = check_toolchain()
    with tempfile.TemporaryDirectory(prefix="haao-health-") as scratch:
        run = run_check(worktree=Path(scratch), check=probe, readonly_paths=readonly,
                        limits=SandboxLimits(timeout_seconds=30), env_extra=env_extra)
    return run, env_extra["PATH"]
