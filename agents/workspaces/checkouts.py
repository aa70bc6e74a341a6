"""Reused checkouts: one working tree per worker slot and project, reset for each attempt.

A fresh worktree per attempt writes every file of the repository (hundreds of ms at a few
thousand files); resetting a kept tree rewrites only what differs. The checkout holds no
`.git`: git is pointed at the project's repository, the tree and a per-slot index by
environment, so nothing the checked code leaves in the tree is ever read as git metadata.
A slot is held by an flock for as long as an attempt uses it; no project-wide lock is taken.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from agents import sandbox
from agents.workspaces.git import WorkspaceError, git

# More slots than this on one machine and project means leaked locks, not real demand.
MAX_SLOTS = 256


@dataclass(frozen=True)
class Checkout:
    """A working tree, its index, and the repository whose objects it uses."""

    repo: Path
    directory: Path
    index: Path

    @property
    def env(self) -> dict[str, str]:
        """What git needs to work on this checkout from any directory."""
        return {"GIT_DIR": str(self.repo), "GIT_WORK_TREE": str(self.directory),
                "GIT_INDEX_FILE": str(self.index)}

    def git(self, args: list[str], *, input_text: str | None = None) -> str:
        """Run git on this checkout; its standard output."""
        return git(args, cwd=self.directory, env=self.env, input_text=input_text).stdout


def checkout_hand_over(checkout: Checkout, *, uid: int) -> None:
    """Give the checkout to the sandbox user before its checks run, then record the new
    ownership in the index. Only files the reset or the edits rewrote change owner, and
    only those are read again; anything the checks then change gets a new ctime, so the
    next reset sees it and restores it."""

    sandbox.hand_over(checkout.directory, uid=uid)
    git(["update-index", "-q", "--refresh"], cwd=checkout.directory, env=checkout.env,
        check=False)


def _claim_slot(folder: Path) -> tuple[int, int]:
    """(slot number, locked file descriptor) of the first free slot in folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(MAX_SLOTS):
        fd = os.open(folder / f"{number}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return number, fd
    raise WorkspaceError(f"All {MAX_SLOTS} checkout slots of {folder} are in use.",
                         code="workspace_busy")


@contextlib.contextmanager
def checkout_at(*, repo: Path, commit: str) -> Iterator[Checkout]:
    """A checkout of `commit` in a slot this process holds until the block ends."""
    repo = Path(repo)
    folder = repo.parent / "checkouts"
    number, fd = _claim_slot(folder)
    try:
        checkout = Checkout(repo=repo, directory=folder / str(number),
                            index=folder / f"{number}.index")
        checkout.directory.mkdir(exist_ok=True)
        try:
            _reset(checkout, commit)
        except WorkspaceError:
            # A tree left half-written by a killed process: start the slot over.
            _wipe(checkout)
            _reset(checkout, commit)
        yield checkout
    finally:
        os.close(fd)  # closing releases the slot


def _reset(checkout: Checkout, commit: str) -> None:
    # Tracked files are rewritten only where they differ from `commit`; whatever the last
    # attempt or its checks left untracked (caches, build output) is removed.
    checkout.git(["read-tree", "-u", "--reset", commit])
    checkout.git(["clean", "-ffdxq"])


def _wipe(checkout: Checkout) -> None:
    shutil.rmtree(checkout.directory, ignore_errors=True)
    checkout.index.unlink(missing_ok=True)
    checkout.directory.mkdir()
