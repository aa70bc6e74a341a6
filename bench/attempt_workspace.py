"""Per-attempt git and file-system work: a fresh worktree per attempt against a reused checkout.

For repositories of 16, 1,000 and 10,000 files, each attempt applies one edit, reads its
diff and tree, hands the tree to the sandbox user (as root) and commits, the way the check
step does; the reused checkout also stores its commit as a bundle (HAAO's commit store).
Reported: wall and CPU milliseconds per attempt (this process and its git children).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents import sandbox
from agents.edits import parse_edits
from agents.workspaces import apply_edits, attempt_worktree, diff_of, workspace_prepare
from agents.workspaces.checkouts import checkout_at, checkout_hand_over
from agents.workspaces.git import git
from agents.workspaces.objects import commit_write
from agents.workspaces.store import bundle_of


def make_repository(folder: Path, files: int) -> Path:
    """A git repository of `files` small Python files in folders of 100."""
    folder.mkdir(parents=True)
    git(["init", "--quiet", "-b", "main"], cwd=folder)
    for index in range(files):
        path = folder / f"pkg{index // 100}" / f"mod_{index}.py"
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"VALUE_{index} = {index}\n" + "# filler line\n" * 20)
    git(["add", "."], cwd=folder)
    git(["commit", "--quiet", "-m", "start"], cwd=folder)
    return folder


def cpu_ms() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime) * 1000


def edit(number: int) -> list:
    return parse_edits(f"<<<<<<< FILE pkg0/mod_0.py\nVALUE_0 = {number}\n>>>>>>> END\n")


def worktree_attempt(repo: Path, base: str, number: int) -> None:
    """Today's path before reuse: a worktree per attempt, removed after."""
    git(["update-ref", "refs/heads/bench-base", base], cwd=repo)
    with attempt_worktree(repo=repo, ticket_key="BENCH-1", attempt_number=number,
                          base_branch="bench-base") as worktree:
        apply_edits(worktree=worktree, edits=edit(number), allowed_paths=["pkg0/*.py"])
        diff_of(worktree)
        tree = git(["write-tree"], cwd=worktree).stdout.strip()
        if os.geteuid() == 0:
            sandbox.hand_over(worktree, uid=sandbox.DEFAULT_SANDBOX_UID)
    git(["commit-tree", tree, "-p", base, "-m", "attempt"], cwd=repo)


def reused_attempt(repo: Path, base: str, number: int) -> None:
    """The check step's path: a slot's checkout reset to the base, commit stored as a bundle."""
    with checkout_at(repo=repo, commit=base) as checkout:
        apply_edits(worktree=checkout.directory, edits=edit(number),
                    allowed_paths=["pkg0/*.py"], git_env=checkout.env)
        checkout.git(["diff", "--cached", "--binary", "--no-renames", base])
        tree = checkout.git(["write-tree"]).strip()
        if os.geteuid() == 0:
            checkout_hand_over(checkout, uid=sandbox.DEFAULT_SANDBOX_UID)
    commit = commit_write(repo, tree=tree, parents=[base], message="attempt\n")
    bundle_of(repo, commit, prerequisites=[base])


def measure(run: Callable[[Path, str, int], None], repo: Path, base: str,
            attempts: int) -> tuple[float, float]:
    walls, cpus = [], []
    for number in range(1, attempts + 1):
        wall, cpu = time.perf_counter(), cpu_ms()
        run(repo, base, number)
        walls.append((time.perf_counter() - wall) * 1000)
        cpus.append(cpu_ms() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="16,1000,10000")
    parser.add_argument("--attempts", type=int, default=20)
    args = parser.parse_args()
    figures: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="haao-bench-ws-") as scratch:
        for size in (int(s) for s in args.sizes.split(",")):
            upstream = make_repository(Path(scratch) / f"up-{size}", size)
            repo = workspace_prepare(project_id=f"bench{size}", repository=str(upstream),
                                     default_branch="main", root=Path(scratch) / "ws")
            base = git(["rev-parse", "main"], cwd=repo).stdout.strip()
            reused_attempt(repo, base, 0)  # the slot's first checkout, paid once
            old_wall, old_cpu = measure(worktree_attempt, repo, base, args.attempts)
            new_wall, new_cpu = measure(reused_attempt, repo, base, args.attempts)
            figures += [(f"files_{size}_worktree_wall_ms", f"{old_wall:.1f}"),
                        (f"files_{size}_worktree_cpu_ms", f"{old_cpu:.1f}"),
                        (f"files_{size}_reused_wall_ms", f"{new_wall:.1f}"),
                        (f"files_{size}_reused_cpu_ms", f"{new_cpu:.1f}")]
            print(f"{size} files: worktree per attempt {old_wall:.1f} ms wall / {old_cpu:.1f} "
                  f"ms CPU; reused checkout {new_wall:.1f} ms / {new_cpu:.1f} ms", flush=True)
    print(f"attempts={args.attempts}")
    for name, value in figures:
        print(f"{name}={value}")


if __name__ == "__main__":
    main()
