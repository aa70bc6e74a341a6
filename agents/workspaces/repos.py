"""A project's workspace: a bare clone of the customer's repository that attempts branch from."""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agents.workspaces.git import FETCH_TIMEOUT, WorkspaceError, file_lock, git
from haao.errors import ApplicationError
from haao.text import redact_userinfo
from tickets.repositories import check_branch_name, check_repository

_PROJECT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
LOCK_NAME = ".haao.lock"


def lock_for(repo: Path) -> Path:
    """The lock file that serializes changes to one project's workspace."""
    return repo.parent / LOCK_NAME


def check_project_id(project_id: object) -> str:
    """The project id as a directory name; refuse anything that could leave the root."""
    value = str(project_id)
    if not _PROJECT_ID.match(value) or value in {".", ".."}:
        raise ApplicationError(f"The project id {value[:80]!r} cannot name a workspace "
                               "directory.", code="invalid_project_id")
    return value


def workspace_repo(project_id: Any, root: Path | str) -> Path:
    """Where this machine keeps a project's clone under the workspace root."""
    return Path(root) / check_project_id(project_id) / "repo"


def workspace_prepare(*, project_id: object, repository: str, default_branch: str,
                      root: Path, env: Mapping[str, str] | None = None,
                      integration_branch: str = "", known: bool = False) -> Path:
    """Clone (once) and fetch the project's repository under root; point `<default>` at the
    remote's. `env` carries the credentials (agents.workspaces.remote). The integration
    branches are HAAO's own and live in the database (agents.delivery), not here. `known`:
    this process prepared it with the same remote and branch before, so only the fetch and
    the default branch's update are left (two git processes)."""
    check_repository(repository)
    check_branch_name(default_branch, what="default branch")
    if integration_branch:
        check_branch_name(integration_branch, what="integration branch")
        if default_branch == integration_branch:
            raise ApplicationError("The integration branch must differ from the default "
                                   "branch.", code="invalid_branch")
    repo = workspace_repo(project_id, root)
    # Only the first clone and the fetch's ref updates need one process at a time per machine.
    with file_lock(lock_for(repo)):
        if not (repo / "HEAD").is_file():
            _clone(repository, repo)
            known = False
        elif not known and git(["config", "--get", "remote.origin.url"], cwd=repo,
                               check=False).stdout.strip() != repository:
            git(["remote", "set-url", "origin", repository], cwd=repo)
        _fetch(repo, default_branch, env)
        default_ref = f"refs/heads/{default_branch}"
        if not known and git(["symbolic-ref", "HEAD"], cwd=repo,
                             check=False).stdout.strip() != default_ref:
            git(["symbolic-ref", "HEAD", default_ref], cwd=repo)
        if integration_branch:  # a local branch for callers that work on branches directly
            integration_ref = f"refs/heads/{integration_branch}"
            if git(["show-ref", "--verify", "--quiet", integration_ref], cwd=repo,
                   check=False).returncode != 0:
                remote = f"refs/remotes/origin/{integration_branch}"
                has_remote = git(["show-ref", "--verify", "--quiet", remote], cwd=repo,
                                 check=False).returncode == 0
                git(["update-ref", integration_ref, remote if has_remote else default_ref, ""],
                    cwd=repo)
    _graph(repo)
    return repo


def _graph(repo: Path) -> None:
    """Bring the repository's commit-graph up to date. Without one, git reads commit after
    commit to answer whether one is in another or where two branched (before each check,
    in each merge), a cost that grows with every merged ticket: 12 ms of CPU per question
    at 400 commits, 2.7 ms with the graph. A write that fails (another process holds the
    graph's lock) leaves the last graph, which git still uses."""
    git(["commit-graph", "write", "--reachable", "--split", "--no-progress"], cwd=repo,
        check=False)


def _clone(repository: str, repo: Path) -> None:
    # Built beside the final place and renamed, so a crash never leaves a half clone as "repo".
    staging = repo.with_name("repo.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    git(["init", "--quiet", "--bare", str(staging)], cwd=staging.parent)
    git(["remote", "add", "origin", repository], cwd=staging)
    shutil.rmtree(repo, ignore_errors=True)
    staging.rename(repo)


def _fetch(repo: Path, default_branch: str, env: Mapping[str, str] | None = None) -> None:
    """Fetch every branch of the remote, and point the local default branch at the remote's."""
    result = git(["fetch", "--quiet", "--prune", "--no-tags", "origin",
                  "+refs/heads/*:refs/remotes/origin/*"], cwd=repo, check=False,
                 timeout=FETCH_TIMEOUT, env=env)
    if result.returncode != 0:
        raise ApplicationError(
            f"The repository could not be fetched: {redact_userinfo(result.stderr.strip()[-600:])}",
            code="repository_unreachable", details={"exit_code": result.returncode})
    remote = f"refs/remotes/origin/{default_branch}"
    moved = git(["update-ref", f"refs/heads/{default_branch}", remote], cwd=repo, check=False)
    if moved.returncode != 0:
        if git(["show-ref", "--verify", "--quiet", remote], cwd=repo,
               check=False).returncode != 0:
            raise ApplicationError(f"The repository has no branch {default_branch!r}.",
                                   code="repository_branch_missing")
        raise WorkspaceError(f"git update-ref failed: {moved.stderr.strip()[-600:]}")


@contextmanager
def commit_checkout(*, repo: Path, commit: str, label: str) -> Iterator[Path]:
    """A temporary detached worktree of `commit` (named after `label`), removed afterwards."""
    repo = Path(repo)
    with file_lock(lock_for(repo)):
        if git(["rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}"], cwd=repo,
               check=False).returncode != 0:
            raise ApplicationError(f"The base commit {commit} is not in the project's "
                                   "repository.",
                                   code="commit_missing",
                                   details={"base_commit": "not in the repository"})
        checkout = repo.parent / "worktrees" / f"{label}-{commit[:12]}-{uuid.uuid4().hex[:8]}"
        checkout.parent.mkdir(parents=True, exist_ok=True)
        git(["worktree", "add", "--quiet", "--detach", str(checkout), commit], cwd=repo)
    try:
        yield checkout
    finally:
        with file_lock(lock_for(repo)):
            git(["worktree", "remove", "--force", "--force", str(checkout)], cwd=repo,
                check=False)
            shutil.rmtree(checkout, ignore_errors=True)
            git(["worktree", "prune"], cwd=repo, check=False)
