"""Git repositories for the workspace and merge tests: a team's upstream, a worker's clone of
it, and commits written as HAAO writes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agents.workspaces import workspace_prepare
from agents.workspaces.checkouts import checkout_at
from agents.workspaces.git import git


def upstream_repo(tmp_path: Path) -> Path:
    """A team's repository with two files on `main`."""
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    git(["init", "--quiet", "-b", "main"], cwd=upstream)
    (upstream / "app.py").write_text("VALUE = 1\n")
    (upstream / "README.md").write_text("readme\n")
    git(["add", "."], cwd=upstream)
    git(["commit", "--quiet", "-m", "start"], cwd=upstream)
    return upstream


def workspace(upstream: Path, root: Path, project: Any) -> Path:
    """The project's repository on a worker whose disk is `root`, cloned from upstream."""
    return workspace_prepare(project_id=project.pk, repository=str(upstream),
                             default_branch="main", root=root)


def commit_on(repo: Path, base: str, path: str, text: str) -> str:
    """A commit on top of base changing one file, written through a reused checkout."""
    with checkout_at(repo=repo, commit=base) as checkout:
        (checkout.directory / path).write_text(text)
        checkout.git(["update-index", "--add", "--", path])
        tree = checkout.git(["write-tree"]).strip()
    return git(["commit-tree", tree, "-p", base, "-m", f"change {path}"], cwd=repo).stdout.strip()
