"""The sample project (samples/invoice-calc) as a git repository, for the demo and tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from django.conf import settings

SAMPLE_PROJECT = Path(settings.BASE_DIR) / "samples" / "invoice-calc"
_IGNORE = shutil.ignore_patterns(".ruff_cache", "__pycache__", ".pytest_cache", "*.pyc", ".git")


def git_checkout(source: Path, target: Path) -> Path:
    """Copy `source` to `target` and commit it as the first commit of a new repository."""
    shutil.copytree(source, target, ignore=_IGNORE)
    who = {"NAME": "HAAO sample", "EMAIL": "sample@haao.invalid"}
    env = {**os.environ, **{f"GIT_{role}_{key}": value for role in ("AUTHOR", "COMMITTER")
                            for key, value in who.items()}}
    for argv in (["git", "init", "--quiet", "--initial-branch=main"], ["git", "add", "-A"],
                 ["git", "commit", "--quiet", "--no-gpg-sign", "-m", "Initial commit"]):
        subprocess.run(argv, cwd=target, env=env, check=True,  # noqa: S603
                       capture_output=True)
    return target


def sample_repository(root: Path) -> Path:
    """The sample project's repository under `root`, created once."""
    target = Path(root) / "invoice-calc"
    if not (target / ".git").is_dir():
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        git_checkout(SAMPLE_PROJECT, target)
    return target
