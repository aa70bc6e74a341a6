"""Attempt worktrees: one branch and directory per attempt, its diff, commit and merge."""

from __future__ import annotations

import contextlib
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from agents.workspaces.git import WorkspaceError, file_lock, git
from agents.workspaces.objects import commit_write
from agents.workspaces.repos import lock_for
from agents.workspaces.store import is_ancestor
from haao.errors import ApplicationError
from tickets.repositories import check_branch_name

_TICKET_KEY = re.compile(r"^[A-Z][A-Z0-9]{0,19}-[0-9]{1,9}$")
# Where each attempt branch's starting commit is kept, so its diff survives later merges.
BASE_REF_PREFIX = "refs/haao-base/"
CONFLICT_EXCERPT_LINES = 40
# The code of a merge asked for commits this machine's repository does not hold (yet).
COMMIT_NOT_HERE = "commit_not_here"


class NothingToCommit(ApplicationError):
    """The attempt changed nothing, so there is nothing to commit."""

    code = "nothing_to_commit"


@dataclass(frozen=True)
class MergeResult:
    """What merging an attempt into the integration branch did; a conflict is not an error."""

    merged: bool
    commit: str = ""
    conflicts: list[str] = field(default_factory=list)
    summary: str = ""
    up_to_date: bool = False


def attempt_branch(ticket_key: str, attempt_number: int) -> str:
    """The branch name of one attempt, e.g. haao/PAY-12/attempt-2."""
    if not isinstance(ticket_key, str) or not _TICKET_KEY.match(ticket_key):
        raise ApplicationError(f"The ticket key {str(ticket_key)[:40]!r} is not like 'PAY-12'.",
                               code="invalid_ticket_key")
    if isinstance(attempt_number, bool) or not isinstance(attempt_number, int) \
            or not 1 <= attempt_number <= 10_000:
        raise ApplicationError(f"The attempt number {attempt_number!r} must be a whole number "
                               "from 1.", code="invalid_attempt_number")
    return f"haao/{ticket_key}/attempt-{attempt_number}"


def _worktrees(repo: Path) -> list[tuple[Path, str]]:
    """(directory, branch ref) of every linked worktree of repo."""
    listing = git(["worktree", "list", "--porcelain", "-z"], cwd=repo).stdout
    found: list[tuple[Path, str]] = []
    path: Path | None = None
    for entry in listing.split("\0"):
        if entry.startswith("worktree "):
            path = Path(entry.removeprefix("worktree "))
        elif entry.startswith("branch ") and path is not None:
            found.append((path, entry.removeprefix("branch ")))
    return found


def _remove_worktree(repo: Path, directory: Path) -> None:
    removed = git(["worktree", "remove", "--force", "--force", str(directory)], cwd=repo,
                  check=False).returncode == 0
    shutil.rmtree(directory, ignore_errors=True)
    if not removed:  # git could not remove it: forget its bookkeeping now the files are gone
        git(["worktree", "prune"], cwd=repo, check=False)


def _drop_branch(repo: Path, branch: str) -> None:
    ref = f"refs/heads/{branch}"
    for directory, checked_out in _worktrees(repo):
        if checked_out == ref:
            _remove_worktree(repo, directory)
    git(["update-ref", "-d", ref], cwd=repo, check=False)
    git(["update-ref", "-d", BASE_REF_PREFIX + branch], cwd=repo, check=False)


@contextlib.contextmanager
def attempt_worktree(*, repo: Path, ticket_key: str, attempt_number: int,
                     base_branch: str) -> Iterator[Path]:
    """Check out a fresh attempt branch from base_branch in its own directory; remove it after."""
    branch = attempt_branch(ticket_key, attempt_number)
    check_branch_name(base_branch, what="base branch")
    repo = Path(repo)
    directory = repo.parent / "worktrees" / f"{ticket_key}-attempt-{attempt_number}-" \
        f"{uuid.uuid4().hex[:8]}"
    with file_lock(lock_for(repo)):
        base = git(["rev-parse", "--verify", "--quiet", f"refs/heads/{base_branch}^{{commit}}"],
                   cwd=repo, check=False).stdout.strip()
        if not base:
            raise WorkspaceError(f"The base branch {base_branch!r} does not exist.",
                                 code="branch_missing")
        # A crashed earlier try of the same attempt may have left its branch and directory.
        if git(["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"], cwd=repo,
               check=False).returncode == 0:
            git(["worktree", "prune"], cwd=repo, check=False)
            _drop_branch(repo, branch)
        directory.parent.mkdir(parents=True, exist_ok=True)
        git(["worktree", "add", "--quiet", "-b", branch, str(directory), base], cwd=repo)
        git(["update-ref", BASE_REF_PREFIX + branch, base], cwd=repo)
    try:
        yield directory
    finally:
        with file_lock(lock_for(repo)):
            _remove_worktree(repo, directory)


def _branch_of(worktree: Path) -> str:
    result = git(["symbolic-ref", "--quiet", "HEAD"], cwd=worktree, check=False)
    ref = result.stdout.strip()
    if result.returncode != 0 or not ref.startswith("refs/heads/haao/"):
        raise WorkspaceError(f"{worktree} is not an attempt worktree.", code="not_an_attempt")
    return ref.removeprefix("refs/heads/")


def base_of(worktree: Path) -> str:
    """The commit the worktree's attempt branch started from."""
    branch = _branch_of(worktree)
    base = git(["rev-parse", "--verify", "--quiet", BASE_REF_PREFIX + branch], cwd=worktree,
               check=False).stdout.strip()
    if not base:
        raise WorkspaceError(f"The start of attempt branch {branch} is not recorded.",
                             code="not_an_attempt")
    return base


def diff_of(worktree: Path) -> str:
    """The attempt's change against its base: commits plus staged edits, new files included."""
    return git(["diff", "--cached", "--no-ext-diff", "--no-textconv", "--no-color", "--binary",
                "--no-renames", base_of(worktree)], cwd=worktree).stdout


def changed_paths(worktree: Path) -> list[str]:
    """Repository paths the attempt created, changed or deleted, sorted."""
    output = git(["diff", "--cached", "--name-only", "-z", "--no-renames", "--no-ext-diff",
                  base_of(worktree)], cwd=worktree).stdout
    return sorted(path for path in output.split("\0") if path)


def commit_attempt(worktree: Path, message: str) -> str:
    """Commit the staged edits on the attempt branch; return the commit id."""
    if not isinstance(message, str) or not message.strip() or "\x00" in message:
        raise ApplicationError("A commit message must be non-empty text.",
                               code="invalid_commit_message")
    _branch_of(worktree)
    staged = git(["diff", "--cached", "--quiet"], cwd=worktree, check=False)
    if staged.returncode == 0:
        raise NothingToCommit("The attempt changed nothing, so there is nothing to commit.")
    git(["commit", "--quiet", "--no-verify", "--cleanup=strip", "-F", "-"], cwd=worktree,
        input_text=message)
    return git(["rev-parse", "HEAD"], cwd=worktree).stdout.strip()


def merge_into_integration(*, repo: Path, branch: str, integration_branch: str,
                           message: str) -> MergeResult:
    """Merge branch into the integration branch with --no-ff; report conflicts, change nothing."""
    check_branch_name(branch, what="attempt branch")
    check_branch_name(integration_branch, what="integration branch")
    if not isinstance(message, str) or not message.strip() or "\x00" in message:
        raise ApplicationError("A merge message must be non-empty text.",
                               code="invalid_commit_message")
    repo = Path(repo)
    directory = repo.parent / "worktrees" / f"merge-{uuid.uuid4().hex[:12]}"
    with file_lock(lock_for(repo)):
        heads = []
        for name in (branch, integration_branch):
            head = git(["rev-parse", "--verify", "--quiet", f"refs/heads/{name}^{{commit}}"],
                       cwd=repo, check=False).stdout.strip()
            if not head:
                raise WorkspaceError(f"The branch {name!r} does not exist.",
                                     code="branch_missing")
            heads.append(head)
        merged = _merge_in_place(repo, integration_branch, *heads, message=message)
        if merged is not None:
            return merged
        # A conflict: merge in a worktree, which names the conflicting hunks.
        directory.parent.mkdir(parents=True, exist_ok=True)
        # The integration branch is checked out only here, under the lock, never elsewhere.
        git(["worktree", "add", "--quiet", str(directory), integration_branch], cwd=repo)
        try:
            return _merge(directory, branch, message)
        finally:
            _remove_worktree(repo, directory)


def _merge_in_place(repo: Path, integration_branch: str, head: str, base: str, *,
                    message: str) -> MergeResult | None:
    """Merge without a worktree (git merge-tree): the merge commit, or None on a conflict.

    Three git calls instead of checking out the whole tree twice; the result is the same
    --no-ff merge commit `git merge` would make.
    """
    if is_ancestor(repo, head, base):
        return MergeResult(merged=True, commit=base, up_to_date=True)
    result = git(["merge-tree", "--write-tree", "--no-messages", base, head], cwd=repo,
                 check=False)
    if result.returncode == 1:
        return None
    if result.returncode != 0:
        raise WorkspaceError(f"Merging failed: {(result.stderr or result.stdout)[-600:]}",
                             code="merge_failed")
    tree = result.stdout.split()[0]
    commit = commit_write(repo, tree=tree, parents=[base, head], message=message)
    # Compare-and-set: the integration branch must still be where the merge started.
    git(["update-ref", f"refs/heads/{integration_branch}", commit, base], cwd=repo)
    return MergeResult(merged=True, commit=commit)


def _merge(directory: Path, branch: str, message: str) -> MergeResult:
    before = git(["rev-parse", "HEAD"], cwd=directory).stdout.strip()
    result = git(["merge", "--no-ff", "--no-edit", "--no-verify", "--no-stat", "-m", message,
                  f"refs/heads/{branch}"], cwd=directory, check=False)
    if result.returncode == 0:
        after = git(["rev-parse", "HEAD"], cwd=directory).stdout.strip()
        return MergeResult(merged=True, commit=after, up_to_date=after == before)
    unmerged = git(["diff", "--name-only", "--diff-filter=U", "-z"], cwd=directory,
                   check=False).stdout
    conflicts = sorted(path for path in unmerged.split("\0") if path)
    if not conflicts:
        git(["merge", "--abort"], cwd=directory, check=False)
        raise WorkspaceError(f"Merging {branch} failed: {(result.stderr or result.stdout)[-600:]}",
                             code="merge_failed")
    summary = _conflict_summary(directory, branch, conflicts)
    git(["merge", "--abort"], cwd=directory, check=False)
    return MergeResult(merged=False, commit=before, conflicts=conflicts, summary=summary)


def _conflict_summary(directory: Path, branch: str, conflicts: list[str]) -> str:
    lines = [f"Merging {branch} conflicts in {len(conflicts)} file(s): {', '.join(conflicts)}."]
    for path in conflicts:
        hunk = git(["diff", "--no-ext-diff", "--no-textconv", "--no-color", "--", path],
                   cwd=directory, check=False).stdout.splitlines()
        lines.append(f"\n--- {path}")
        lines.extend(hunk[:CONFLICT_EXCERPT_LINES])
        if len(hunk) > CONFLICT_EXCERPT_LINES:
            lines.append(f"… {len(hunk) - CONFLICT_EXCERPT_LINES} more lines")
    return "\n".join(lines)


def merge_commits(*, repo: Path, target: str, source: str, message: str,
                  source_unmerged: bool = False) -> MergeResult:
    """Merge commit `source` into commit `target` without a worktree (git merge-tree) and
    without moving any ref: the --no-ff merge commit, or the conflicting paths and hunks.
    WorkspaceError COMMIT_NOT_HERE when this repository lacks either (agents.delivery.packs
    brings them in).

    `source_unmerged`: the caller knows `source` is not in `target` (an accepted attempt's
    commit before its own merge; an upstream git just said is not in it), so the ancestry
    test that would say so is left out, and a missing commit is told from merge-tree's
    failure instead."""
    if not isinstance(message, str) or not message.strip() or "\x00" in message:
        raise ApplicationError("A merge message must be non-empty text.",
                               code="invalid_commit_message")
    repo = Path(repo)
    if not source_unmerged:
        merged_before = is_ancestor(repo, source, target)
        if merged_before is None:
            raise _not_here(target, source)
        if merged_before:
            return MergeResult(merged=True, commit=target, up_to_date=True)
    result = git(["merge-tree", "--write-tree", "--name-only", "--no-messages", target, source],
                 cwd=repo, check=False)
    lines = result.stdout.splitlines()
    tree = lines[0].strip() if lines else ""
    if result.returncode not in (0, 1) or not tree:  # git names no tree for a missing commit
        if source_unmerged and is_ancestor(repo, source, target) is None:
            raise _not_here(target, source)
        raise WorkspaceError(f"Merging failed: {(result.stderr or result.stdout)[-600:]}",
                             code="merge_failed")
    if result.returncode == 1:
        conflicts = sorted({line for line in lines[1:] if line.strip()})
        return MergeResult(merged=False, commit=target, conflicts=conflicts,
                           summary=_tree_conflict_summary(repo, tree, source, conflicts))
    commit = commit_write(repo, tree=tree, parents=[target, source], message=message)
    return MergeResult(merged=True, commit=commit)


def _not_here(target: str, source: str) -> WorkspaceError:
    return WorkspaceError(f"This repository lacks {target[:12]} or {source[:12]}; bring them "
                          "in from HAAO's store first.", code=COMMIT_NOT_HERE)


def _tree_conflict_summary(repo: Path, tree: str, source: str, conflicts: list[str]) -> str:
    """The conflicting files and, for each, the lines around its conflict markers."""
    lines = [f"Merging {source[:12]} conflicts in {len(conflicts)} file(s): "
             f"{', '.join(conflicts)}."]
    for path in conflicts:
        content = git(["cat-file", "-p", f"{tree}:{path}"], cwd=repo,
                      check=False).stdout.splitlines()
        marked = [i for i, line in enumerate(content)
                  if line.startswith(("<<<<<<<", "=======", ">>>>>>>"))]
        lines.append(f"\n--- {path}")
        if not marked:
            lines.append("(changed on both sides: deleted, renamed or binary)")
            continue
        start, end = max(0, marked[0] - 3), min(len(content), marked[-1] + 4)
        excerpt = content[start:end]
        lines.extend(excerpt[:CONFLICT_EXCERPT_LINES])
        if len(excerpt) > CONFLICT_EXCERPT_LINES:
            lines.append(f"… {len(excerpt) - CONFLICT_EXCERPT_LINES} more lines")
    return "\n".join(lines)
