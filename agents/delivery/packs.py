"""HAAO's commit store in the database: save the commits a step wrote, restore what it needs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from agents.models import GitPack
from agents.workspaces.git import WorkspaceError
from agents.workspaces.remote import workspace_refetch
from agents.workspaces.store import (
    MAX_PACK_DEPTH,
    bundle_import,
    bundle_of,
    keep,
    missing_commits,
)
from tickets.models import Project


def pack_save(*, project: Project, repo: Path, commit: str, prerequisites: Iterable[str],
              refs: Mapping[str, str] | None = None) -> None:
    """Store `commit` (with what it adds to its prerequisites), once per commit, and keep it
    reachable in this cache; `refs` (name: commit) are set in the same ref transaction."""
    pack_store(project=project, repo=repo, commit=commit, prerequisites=prerequisites)
    keep(repo, [commit], refs=refs)


def pack_store(*, project: Project, repo: Path, commit: str,
               prerequisites: Iterable[str]) -> None:
    """Store `commit` as pack_save does, leaving this cache's refs to the caller (keep)."""
    prerequisites = [c for c in dict.fromkeys(prerequisites) if c and c != commit]
    # Not asked first: the commit is the one the step just wrote, new but for a step run
    # twice. A row stored before (or by another worker meanwhile) stands (git_pack_commit).
    GitPack.objects.bulk_create([GitPack(
        organization_id=project.organization_id, project=project, commit=commit,
        prerequisites=prerequisites, data=bundle_of(repo, commit, prerequisites=prerequisites))],
        ignore_conflicts=True)


def commits_ensure(*, project: Project, repo: Path, commits: Iterable[str]) -> None:
    """Bring `commits` into the local repository from HAAO's store. An upstream commit newer
    than this machine's last fetch (another machine fetched it since) is fetched now. Raises
    WorkspaceError naming a commit that is nowhere."""
    commits = list(commits)
    try:
        _ensure(project, repo, commits)
    except WorkspaceError as error:
        if error.code != "commit_missing" or not workspace_refetch(project, repo):
            raise
        _ensure(project, repo, commits)


def _ensure(project: Project, repo: Path, commits: list[str]) -> None:
    wanted = missing_commits(repo, commits)
    restored: list[str] = []
    for commit in wanted:
        _restore(project, repo, commit, restored, depth=0)
    keep(repo, restored)


def _restore(project: Project, repo: Path, commit: str, restored: list[str], *,
             depth: int) -> None:
    if commit in restored or not missing_commits(repo, [commit]):
        return
    if depth > MAX_PACK_DEPTH:
        raise WorkspaceError("HAAO's commit store has a chain of packs too deep to restore.",
                             code="store_corrupt")
    pack = GitPack.objects.filter(project=project, commit=commit).first()
    if pack is None:
        raise WorkspaceError(
            f"The commit {commit[:12]} is neither in the project's repository nor in HAAO's "
            "store; was the remote's history rewritten?", code="commit_missing")
    for prerequisite in missing_commits(repo, pack.prerequisites):
        _restore(project, repo, prerequisite, restored, depth=depth + 1)
    bundle_import(repo, commit, pack.data)
    restored.append(commit)
