"""Commits written without a git process are the commits git itself would write."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agents.workspaces import objects
from agents.workspaces.git import WorkspaceError, git, git_env
from agents.workspaces.objects import commit_write


def make_repo(path: Path, *, bare: bool = True, object_format: str = "sha1") -> tuple[Path, str]:
    """A repository with one commit; the repository and the commit's tree."""
    path.mkdir()
    git(["init", "--quiet", *(["--bare"] if bare else []), f"--object-format={object_format}"],
        cwd=path)
    tree = git(["hash-object", "-t", "tree", "-w", "--stdin"], cwd=path,
               input_text="").stdout.strip()
    return path, tree


def git_commit_tree(repo: Path, tree: str, parents: list[str], message: str,
                    when: int) -> str:
    """What `git commit-tree` writes at `when`, in this machine's time zone."""
    date = f"@{when} {objects._zone(when)}"
    args = ["commit-tree", tree]
    for parent in parents:
        args += ["-p", parent]
    return git([*args, "-F", "-"], cwd=repo, input_text=message,
               env={"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}).stdout.strip()


@pytest.mark.parametrize("object_format", ["sha1", "sha256"])
@pytest.mark.parametrize("message", ["PAY-1: Round totals\n\nAttempt 1 by qwen on local.\n",
                                     "Merge PAY-2 into haao/integration",
                                     "Ünïcode — titles too\n\n\n"])
def test_a_commit_is_the_object_git_commit_tree_writes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, object_format: str,
        message: str) -> None:
    repo, tree = make_repo(tmp_path / "repo", object_format=object_format)
    when = 1_765_000_000
    monkeypatch.setattr(objects.time, "time", lambda: when + 0.7)
    root = commit_write(repo, tree=tree, parents=[], message=message)
    child = commit_write(repo, tree=tree, parents=[root], message=message)
    merge = commit_write(repo, tree=tree, parents=[child, root], message=message)

    expected_root = git_commit_tree(repo, tree, [], message, when)
    assert root == expected_root
    assert child == git_commit_tree(repo, tree, [root], message, when)
    assert merge == git_commit_tree(repo, tree, [child, root], message, when)
    # git reads them back: parents, message and all, and the store is sound.
    assert git(["rev-list", "--parents", "-n", "1", merge], cwd=repo).stdout.split() == \
        [merge, child, root]
    assert git(["cat-file", "commit", child], cwd=repo).stdout.endswith("\n\n" + message)
    git(["fsck", "--strict", "--no-dangling"], cwd=repo)


def test_the_object_is_read_only_and_no_temporary_file_is_left(tmp_path: Path) -> None:
    repo, tree = make_repo(tmp_path / "repo")
    commit = commit_write(repo, tree=tree, parents=[], message="one\n")
    path = repo / "objects" / commit[:2] / commit[2:]
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert [entry.name for entry in path.parent.iterdir()] == [commit[2:]]
    # Written twice in one second: the same object, still one file.
    assert commit_write(repo, tree=tree, parents=[], message="one\n") == commit
    assert [entry.name for entry in path.parent.iterdir()] == [commit[2:]]


def test_a_repository_with_a_work_tree_gets_the_commit_in_its_git_folder(
        tmp_path: Path) -> None:
    repo, tree = make_repo(tmp_path / "repo", bare=False)
    commit = commit_write(repo, tree=tree, parents=[], message="work tree\n")
    assert (repo / ".git" / "objects" / commit[:2] / commit[2:]).is_file()
    assert git(["cat-file", "-t", commit], cwd=repo).stdout.strip() == "commit"


def test_a_linked_worktree_is_committed_by_git_itself(tmp_path: Path) -> None:
    repo, tree = make_repo(tmp_path / "repo", bare=False)
    first = commit_write(repo, tree=tree, parents=[], message="first\n")
    git(["update-ref", "refs/heads/main", first], cwd=repo)
    linked = tmp_path / "linked"
    git(["worktree", "add", "--quiet", "--detach", str(linked), first], cwd=repo)
    assert (linked / ".git").is_file()
    commit = commit_write(linked, tree=tree, parents=[first], message="from a worktree\n")
    assert git(["rev-parse", f"{commit}^"], cwd=repo).stdout.strip() == first


@pytest.mark.parametrize(("tree", "parents"), [
    ("", []),
    ("4b825dc642cb6eb9a060e54bf8d69288fbee490", []),          # one digit short
    ("4b825dc642cb6eb9a060e54bf8d69288fbee4904", ["HEAD"]),   # a name, not an id
    ("4B825DC642CB6EB9A060E54BF8D69288FBEE4904", []),         # git writes lower case
    ("4b825dc642cb6eb9a060e54bf8d69288fbee4904", ["0" * 64]),  # two formats
    ("4b825dc642cb6eb9a060e54bf8d69288fbee4904\nparent " + "0" * 40, []),
])
def test_anything_but_object_ids_of_one_format_is_refused(
        tmp_path: Path, tree: str, parents: list[str]) -> None:
    repo, _ = make_repo(tmp_path / "repo")
    before = sorted((repo / "objects").rglob("*"))
    with pytest.raises(WorkspaceError) as raised:
        commit_write(repo, tree=tree, parents=parents, message="m\n")
    assert raised.value.code == "invalid_object_id"
    assert sorted((repo / "objects").rglob("*")) == before


@pytest.mark.parametrize("message", ["", "  \n", "a\x00b"])
def test_an_empty_message_or_one_with_a_nul_is_refused(tmp_path: Path, message: str) -> None:
    repo, tree = make_repo(tmp_path / "repo")
    with pytest.raises(WorkspaceError) as raised:
        commit_write(repo, tree=tree, parents=[], message=message)
    assert raised.value.code == "invalid_commit_message"


def test_a_commit_carries_the_time_zone_of_the_machine(tmp_path: Path) -> None:
    repo, tree = make_repo(tmp_path / "repo")
    env = {**os.environ, "TZ": "Asia/Kolkata"}
    # In a process of its own, so this one's time zone is left alone.
    code = ("import time; from pathlib import Path; from agents.workspaces.objects import "
            f"commit_write; print(commit_write(Path({str(repo)!r}), tree={tree!r}, "
            "parents=[], message='m\\n'))")
    commit = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True,
                            text=True, cwd=Path(__file__).resolve().parents[2]).stdout.strip()
    shown = subprocess.run(["git", "log", "-1", "--format=%ai", commit], cwd=repo,
                           env=git_env(), check=True, capture_output=True, text=True).stdout
    assert shown.strip().endswith("+0530")
