"""A project's dependencies, prepared once per base commit for every check to see read-only.

The project's setup command (the only step that may be given network access, by policy)
runs once per project and base commit in the sandbox, with a checkout of that commit as its
working directory and the environment directory writable at /env. Checks then see the same
directory read-only at /env, so they start fast and offline. See docs/sandbox.md.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.sandbox import (
    DEFAULT_SANDBOX_UID,
    SANDBOX_PATH,
    Bind,
    CheckInvalid,
    CheckSpec,
    SandboxLimits,
    run_check,
)
from agents.workspaces.git import file_lock, git
from agents.workspaces.repos import check_project_id, lock_for
from haao.errors import ApplicationError

# Where the environment appears inside the sandbox, writable for setup, read-only for checks.
ENV_MOUNT = "/env"
# Written last: its presence alone means the environment is complete.
READY_MARKER = ".haao-ready"
# How much of the setup command's output an error carries.
OUTPUT_TAIL_CHARS = 2000

_COMMIT = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")
# argv only: a shell would turn the setup command back into a script nobody reviewed.
_SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "fish", "csh", "tcsh", "busybox"}


class EnvironmentSetupFailed(ApplicationError):
    """The project's setup command failed; the message carries its output's tail."""

    code = "environment_setup_failed"
    status = 422


@dataclass(frozen=True)
class PreparedEnvironment:
    """A ready environment: its host directory and what each check needs to see it."""

    path: Path
    env_extra: Mapping[str, str]
    readonly_paths: tuple[Path, ...]
    binds: tuple[Bind, ...]


def setup_command_clean(command: Any) -> list[str]:
    """The setup command as an argv list; CheckInvalid names what is wrong with it."""
    if isinstance(command, str) or not isinstance(command, Sequence):
        raise CheckInvalid("The setup command must be a list of arguments (argv), not text.",
                           details={"setup_command": "must be a list of arguments"})
    argv = list(command)
    if not all(isinstance(arg, str) and arg and "\0" not in arg for arg in argv):
        raise CheckInvalid("The setup command must hold non-empty texts without NUL characters.",
                           details={"setup_command": "must hold non-empty texts"})
    if argv and os.path.basename(argv[0]) in _SHELLS and "-c" in argv[1:]:
        raise CheckInvalid("The setup command must be one program and its arguments; "
                           "a shell script (sh -c) is not allowed.",
                           details={"setup_command": "sh -c is not allowed"})
    return argv


def environment_prepare(*, project: Any, repo_path: Path, base_commit: str, root: Path,
                        limits: SandboxLimits, network: bool = False,
                        readonly_paths: Sequence[Path] = (),
                        sandbox_uid: int = DEFAULT_SANDBOX_UID) -> PreparedEnvironment:
    """Prepare (once) the environment of `project` at `base_commit` and return it."""
    argv = setup_command_clean(project.setup_command)
    if not isinstance(base_commit, str) or not _COMMIT.fullmatch(base_commit):
        raise ApplicationError(f"The base commit {str(base_commit)[:80]!r} must be a full "
                               "commit id.", code="invalid_commit",
                               details={"base_commit": "must be a full commit id"})
    if not isinstance(limits, SandboxLimits):
        raise CheckInvalid("limits must be SandboxLimits.", details={"limits": "invalid"})
    if not isinstance(network, bool):
        raise CheckInvalid("network must be true or false.",
                           details={"network": "must be true or false"})
    repo = Path(repo_path)
    path = Path(root).absolute() / check_project_id(project.pk) / base_commit
    readonly = tuple(Path(p) for p in readonly_paths)
    with file_lock(path.with_name(f"{base_commit}.lock")):
        if not (path / READY_MARKER).is_file():
            _build(argv=argv, repo=repo, path=path, base_commit=base_commit,
                   limits=dataclasses.replace(limits, network=network), readonly=readonly,
                   sandbox_uid=sandbox_uid)
    return PreparedEnvironment(path=path, env_extra=_env_extra(path), readonly_paths=readonly,
                               binds=(Bind(source=path, target=ENV_MOUNT, writable=False),))


def _build(*, argv: list[str], repo: Path, path: Path, base_commit: str,
           limits: SandboxLimits, readonly: tuple[Path, ...], sandbox_uid: int) -> None:
    # Whatever a failed earlier preparation left is not trusted: start from nothing.
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    if argv:
        if os.geteuid() == 0:
            # The setup command runs as the unprivileged sandbox uid (docs/sandbox.md).
            os.chown(path, sandbox_uid, sandbox_uid)
        try:
            _run_setup(argv=argv, repo=repo, path=path, base_commit=base_commit, limits=limits,
                       readonly=readonly, sandbox_uid=sandbox_uid)
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
    marker = path / READY_MARKER
    marker.write_text(f"{base_commit}\n")
    os.chown(marker, os.geteuid(), os.getegid())


def _run_setup(*, argv: list[str], repo: Path, path: Path, base_commit: str,
               limits: SandboxLimits, readonly: tuple[Path, ...], sandbox_uid: int) -> None:
    with file_lock(lock_for(repo)):
        if git(["rev-parse", "--verify", "--quiet", f"{base_commit}^{{commit}}"], cwd=repo,
               check=False).returncode != 0:
            raise ApplicationError(f"The base commit {base_commit} is not in the project's "
                                   "repository.", code="commit_missing",
                                   details={"base_commit": "not in the repository"})
        checkout = repo.parent / "worktrees" / f"env-{base_commit[:12]}-{uuid.uuid4().hex[:8]}"
        checkout.parent.mkdir(parents=True, exist_ok=True)
        git(["worktree", "add", "--quiet", "--detach", str(checkout), base_commit], cwd=repo)
    try:
        check = CheckSpec(name="setup", command=tuple(argv),
                          timeout_seconds=limits.timeout_seconds)
        run = run_check(worktree=checkout, check=check, limits=limits, readonly_paths=readonly,
                        env_extra={"PATH": SANDBOX_PATH}, sandbox_uid=sandbox_uid,
                        binds=[Bind(source=path, target=ENV_MOUNT, writable=True)])
    finally:
        with file_lock(lock_for(repo)):
            git(["worktree", "remove", "--force", "--force", str(checkout)], cwd=repo,
                check=False)
            shutil.rmtree(checkout, ignore_errors=True)
            git(["worktree", "prune"], cwd=repo, check=False)
    if not run.passed:
        output = (run.stdout + run.stderr).strip()[-OUTPUT_TAIL_CHARS:]
        raise EnvironmentSetupFailed(
            f"The project's setup command {' '.join(argv)!r} failed ({run.expectation}). "
            f"Its output ended with:\n{output or '(no output)'}",
            details={"setup_command": run.expectation, "output_tail": output})


def _env_extra(path: Path) -> dict[str, str]:
    """PATH (and VIRTUAL_ENV) that put the environment's programs first inside the sandbox."""
    if (path / "venv" / "bin").is_dir():
        venv = f"{ENV_MOUNT}/venv"
        return {"PATH": f"{venv}/bin:{SANDBOX_PATH}", "VIRTUAL_ENV": venv}
    if (path / "bin").is_dir():
        return {"PATH": f"{ENV_MOUNT}/bin:{SANDBOX_PATH}"}
    return {}
