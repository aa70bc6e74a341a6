"""Commits HAAO wrote, kept in the database as git bundles so no worker's disk is a record.

A worker's repository is a cache: the team's remote has the upstream commits, GitPack rows
have every attempt and integration commit HAAO made on top of them. `commits_ensure` brings
whatever a step needs into the local repository, from the packs, in dependency order.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from agents.workspaces.git import WorkspaceError, git, git_bytes

# Local refs that keep HAAO's commits reachable (never pushed, never garbage-collected).
KEEP_PREFIX = "refs/haao/commits/"
# A chain of packs deeper than this means a cycle or a corrupt store, not real history.
MAX_PACK_DEPTH = 10_000


def has_commit(repo: Path, commit: str) -> bool:
    """Whether the local repository holds `commit`."""
    return bool(commit) and git(["cat-file", "-e", f"{commit}^{{commit}}"], cwd=repo,
                                check=False).returncode == 0


def is_ancestor(repo: Path, ancestor: str, descendant: str) -> bool | None:
    """Whether `ancestor` (a commit or a ref) is in the history of `descendant`, a commit
    being its own; None when the local repository lacks one of them (one git process)."""
    code = git(["merge-base", "--is-ancestor", ancestor, descendant], cwd=repo,
               check=False).returncode
    return {0: True, 1: False}.get(code)


def missing_commits(repo: Path, commits: Iterable[str]) -> list[str]:
    """Those of `commits` the local repository does not hold (one git process)."""
    wanted = [c for c in dict.fromkeys(commits) if c]
    if not wanted:
        return []
    listing = git(["cat-file", "--batch-check=%(objectname) %(objecttype)"], cwd=repo,
                  input_text="".join(f"{c}\n" for c in wanted)).stdout.splitlines()
    return [commit for commit, line in zip(wanted, listing, strict=False)
            if not line.endswith(" commit")]


def bundle_of(repo: Path, commit: str, *, prerequisites: Iterable[str]) -> bytes:
    """A git bundle (v2) of `commit` with only the objects the prerequisites do not have,
    under the ref that keeps it (KEEP_PREFIX): one pack-objects process, the header written
    here, as `git bundle create` would write it."""
    excluded = [c for c in dict.fromkeys(prerequisites) if c and c != commit]
    pack = git_bytes(["pack-objects", "--revs", "--stdout", "--quiet", "--delta-base-offset"],
                     cwd=repo, input_text="".join(f"{line}\n" for line in
                                                  [commit, "--not", *excluded]))
    header = "# v2 git bundle\n" + "".join(f"-{c}\n" for c in excluded) \
        + f"{commit} {KEEP_PREFIX}{commit}\n\n"
    return header.encode() + pack


def bundle_import(repo: Path, commit: str, data: bytes) -> None:
    """Fetch `commit` out of a bundle into the local repository (its prerequisites first)."""
    ref = KEEP_PREFIX + commit
    with tempfile.TemporaryDirectory(prefix="haao-bundle-") as folder:
        path = Path(folder) / "pack.bundle"
        path.write_bytes(bytes(data))
        result = git(["fetch", "--quiet", "--no-tags", str(path), f"+{ref}:{ref}"], cwd=repo,
                     check=False)
    if result.returncode != 0 or not has_commit(repo, commit):
        raise WorkspaceError(f"The stored commit {commit[:12]} could not be restored: "
                             f"{(result.stderr or result.stdout).strip()[-400:]}",
                             code="store_corrupt")


def keep(repo: Path, commits: Iterable[str], *, refs: Mapping[str, str] | None = None) -> None:
    """Keep HAAO's own commits reachable in this cache, and set `refs` (name: commit) in the
    same ref transaction: one git process."""
    lines = "".join(f"update {KEEP_PREFIX}{c} {c}\n" for c in dict.fromkeys(commits) if c)
    lines += "".join(f"update {name} {commit}\n" for name, commit in (refs or {}).items())
    if lines:
        git(["update-ref", "--stdin"], cwd=repo, input_text=lines)
