"""HAAO's commit store and reused checkouts: a worker with an empty disk loses nothing, and a
reset checkout shows exactly the commit it was reset to."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from agents.delivery.branches import branch_advance, branch_follow_upstream, branch_merge_ticket
from agents.delivery.packs import commits_ensure, pack_save
from agents.models import GitPack, IntegrationBranch
from agents.sandbox import DEFAULT_SANDBOX_UID
from agents.tests.repos import commit_on, upstream_repo, workspace
from agents.workspaces.checkouts import checkout_at, checkout_hand_over
from agents.workspaces.git import WorkspaceError, git
from agents.workspaces.remote import workspace_of
from agents.workspaces.store import has_commit
from tests.factories import TicketFactory
from tickets.models import Attempt, AttemptOutcome, TicketStatus


def test_a_worker_with_an_empty_disk_restores_haaos_commits_from_the_database(
        cast: Any, tmp_path: Path) -> None:
    upstream = upstream_repo(tmp_path)
    repo = workspace(upstream, tmp_path / "machine-a", cast.project)
    base = git(["rev-parse", "main"], cwd=repo).stdout.strip()
    first = commit_on(repo, base, "app.py", "VALUE = 2\n")
    pack_save(project=cast.project, repo=repo, commit=first, prerequisites=[base])
    second = commit_on(repo, first, "README.md", "readme, changed\n")
    pack_save(project=cast.project, repo=repo, commit=second, prerequisites=[first])
    # The second pack carries only what the first does not: the bundle names its prerequisite.
    assert GitPack.objects.get(commit=second).prerequisites == [first]

    other = workspace(upstream, tmp_path / "machine-b", cast.project)
    assert not has_commit(other, second)
    commits_ensure(project=cast.project, repo=other, commits=[second])
    assert git(["show", f"{second}:app.py"], cwd=other).stdout == "VALUE = 2\n"
    assert git(["show", f"{second}:README.md"], cwd=other).stdout == "readme, changed\n"


def test_a_commit_that_is_nowhere_is_named_in_the_error(cast: Any, tmp_path: Path) -> None:
    repo = workspace(upstream_repo(tmp_path), tmp_path / "machine", cast.project)
    with pytest.raises(WorkspaceError) as missing:
        commits_ensure(project=cast.project, repo=repo, commits=["1" * 40])
    assert "1111111111" in missing.value.message
    assert missing.value.code == "commit_missing"


def test_an_upstream_commit_another_machine_fetched_since_this_ones_last_fetch_is_fetched(
        cast: Any, tmp_path: Path, settings: Any) -> None:
    """Steps of a busy project share a fetch (STEP_FETCH_SECONDS), so this machine may not
    have an upstream commit another machine fetched and built on a moment ago."""
    upstream = upstream_repo(tmp_path)
    type(cast.project).objects.filter(pk=cast.project.pk).update(repository=str(upstream))
    cast.project.refresh_from_db()
    settings.HAAO_WORKSPACE_ROOT = tmp_path / "machine-b"
    here = workspace_of(cast.project, max_age=0)
    (upstream / "app.py").write_text("VALUE = 5\n")
    git(["commit", "--quiet", "-am", "pushed by the team"], cwd=upstream)
    there = workspace(upstream, tmp_path / "machine-a", cast.project)  # fetches it
    pushed = git(["rev-parse", "main"], cwd=there).stdout.strip()
    work = commit_on(there, pushed, "README.md", "built on the team's push\n")
    pack_save(project=cast.project, repo=there, commit=work, prerequisites=[pushed])

    assert workspace_of(cast.project, max_age=600) == here and not has_commit(here, pushed)
    commits_ensure(project=cast.project, repo=here, commits=[work])
    assert git(["show", f"{work}:app.py"], cwd=here).stdout == "VALUE = 5\n"


def test_another_projects_packs_are_never_used(cast: Any, tmp_path: Path) -> None:
    upstream = upstream_repo(tmp_path)
    repo = workspace(upstream, tmp_path / "a", cast.project)
    base = git(["rev-parse", "main"], cwd=repo).stdout.strip()
    commit = commit_on(repo, base, "app.py", "VALUE = 3\n")
    pack_save(project=cast.project, repo=repo, commit=commit, prerequisites=[base])
    elsewhere = workspace(upstream, tmp_path / "b", cast.other_project)
    with pytest.raises(WorkspaceError):
        commits_ensure(project=cast.other_project, repo=elsewhere, commits=[commit])


def test_a_merge_on_a_machine_without_the_work_brings_it_from_the_store_and_names_it_there(
        cast: Any, tmp_path: Path, django_capture_on_commit_callbacks: Any) -> None:
    upstream = upstream_repo(tmp_path)
    here = workspace(upstream, tmp_path / "machine-a", cast.project)
    base = git(["rev-parse", "main"], cwd=here).stdout.strip()
    work = commit_on(here, base, "app.py", "VALUE = 4\n")
    pack_save(project=cast.project, repo=here, commit=work, prerequisites=[base])
    ticket = TicketFactory(project=cast.project, requirement__project=cast.project,
                           status=TicketStatus.ACCEPTED)
    attempt = Attempt.objects.create(organization=cast.org, ticket=ticket, number=1,
                                     outcome=AttemptOutcome.PASSED, commit=work)
    there = workspace(upstream, tmp_path / "machine-b", cast.project)
    assert not has_commit(there, work)

    with django_capture_on_commit_callbacks(execute=True):
        branch, merged = branch_merge_ticket(ticket=ticket, attempt=attempt, repo=there,
                                             message=f"Merge {ticket.key}\n")
    assert merged.merged and not merged.up_to_date
    assert git(["show", f"{merged.commit}:app.py"], cwd=there).stdout == "VALUE = 4\n"
    ticket.refresh_from_db()
    assert ticket.merged_commit == merged.commit == branch.head
    # This machine names the merge and keeps it: a person here can `git log` the branch.
    assert git(["rev-parse", f"refs/heads/{branch.name}"],
               cwd=there).stdout.strip() == merged.commit
    assert git(["rev-parse", f"refs/haao/commits/{merged.commit}"],
               cwd=there).stdout.strip() == merged.commit
    # The first machine, which lacks the merge, restores it from the store as well.
    commits_ensure(project=cast.project, repo=here, commits=[merged.commit])
    assert git(["show", f"{merged.commit}:app.py"], cwd=here).stdout == "VALUE = 4\n"


def test_a_reused_checkout_shows_exactly_its_commit(cast: Any, tmp_path: Path) -> None:
    repo = workspace(upstream_repo(tmp_path), tmp_path / "machine", cast.project)
    base = git(["rev-parse", "main"], cwd=repo).stdout.strip()
    changed = commit_on(repo, base, "app.py", "VALUE = 9\n")
    with checkout_at(repo=repo, commit=changed) as checkout:
        directory = checkout.directory
        # What a check leaves behind: caches, a changed tracked file, a symlink out.
        (directory / "__pycache__").mkdir()
        (directory / "__pycache__" / "x.pyc").write_bytes(b"\0")
        (directory / "README.md").write_text("scribbled\n")
        (directory / "escape").symlink_to("/etc")
    assert not (directory / ".git").exists()
    with checkout_at(repo=repo, commit=base) as again:
        assert again.directory == directory  # the same slot, reset rather than re-created
        assert sorted(p.name for p in directory.iterdir()) == ["README.md", "app.py"]
        assert (directory / "app.py").read_text() == "VALUE = 1\n"
        assert (directory / "README.md").read_text() == "readme\n"


def test_two_holders_at_once_get_two_slots(cast: Any, tmp_path: Path) -> None:
    repo = workspace(upstream_repo(tmp_path), tmp_path / "machine", cast.project)
    base = git(["rev-parse", "main"], cwd=repo).stdout.strip()
    with checkout_at(repo=repo, commit=base) as one, checkout_at(repo=repo, commit=base) as two:
        assert one.directory != two.directory


def test_a_slot_left_broken_by_a_killed_process_starts_over(cast: Any, tmp_path: Path) -> None:
    repo = workspace(upstream_repo(tmp_path), tmp_path / "machine", cast.project)
    base = git(["rev-parse", "main"], cwd=repo).stdout.strip()
    with checkout_at(repo=repo, commit=base) as checkout:
        index = checkout.index
    index.write_bytes(b"not an index")
    with checkout_at(repo=repo, commit=base) as checkout:
        assert (checkout.directory / "app.py").read_text() == "VALUE = 1\n"
    shutil.rmtree(checkout.directory)
    with checkout_at(repo=repo, commit=base) as checkout:
        assert (checkout.directory / "README.md").is_file()


@pytest.mark.skipif(os.geteuid() != 0, reason="the hand-over to the sandbox user needs root")
def test_a_check_that_forges_a_files_times_cannot_leave_it_for_the_next_attempt(
        cast: Any, tmp_path: Path) -> None:
    repo = workspace(upstream_repo(tmp_path), tmp_path / "machine", cast.project)
    base = git(["rev-parse", "main"], cwd=repo).stdout.strip()
    with checkout_at(repo=repo, commit=base) as checkout:
        checkout_hand_over(checkout, uid=DEFAULT_SANDBOX_UID)
        target = checkout.directory / "app.py"
        before = target.stat()
        # What a hostile check could do as the file's owner: same size, old times.
        target.write_text("VALUE = 7\n")
        os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    with checkout_at(repo=repo, commit=base) as again:
        assert (again.directory / "app.py").read_text() == "VALUE = 1\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="the hand-over to the sandbox user needs root")
def test_a_reset_after_a_hand_over_keeps_the_handed_over_files(
        cast: Any, tmp_path: Path) -> None:
    upstream = upstream_repo(tmp_path)
    many = [f"data/{n}.txt" for n in range(32)]
    for name in many:
        (upstream / name).parent.mkdir(exist_ok=True)
        (upstream / name).write_text(f"{name}\n")
    git(["add", "."], cwd=upstream)
    git(["commit", "--quiet", "-m", "many files"], cwd=upstream)
    repo = workspace(upstream, tmp_path / "machine", cast.project)
    base = git(["rev-parse", "main"], cwd=repo).stdout.strip()
    edited = commit_on(repo, base, "app.py", "VALUE = 2\n")

    # The hand-over changes every file's owner, and so its ctime: the index records them
    # again, or the next reset would write every file anew, as the worker's own (measured:
    # that costs more than the refresh, even for one file). A file written anew may get its
    # old inode number back, so its owner is what tells.
    with checkout_at(repo=repo, commit=base) as checkout:
        checkout_hand_over(checkout, uid=DEFAULT_SANDBOX_UID)
    with checkout_at(repo=repo, commit=edited) as checkout:
        assert (checkout.directory / "app.py").read_text() == "VALUE = 2\n"
        assert {(checkout.directory / n).stat().st_uid for n in many} == {DEFAULT_SANDBOX_UID}


def test_a_branch_follows_upstream_moving_without_work_of_haaos_and_merging_with_it(
        cast: Any, tmp_path: Path) -> None:
    upstream = upstream_repo(tmp_path)
    root = tmp_path / "machine"
    repo = workspace(upstream, root, cast.project)
    start = git(["rev-parse", "main"], cwd=repo).stdout.strip()
    branch = IntegrationBranch.objects.create(organization=cast.org, project=cast.project,
                                              name="haao/integration", base=start, head=start)
    assert branch_follow_upstream(branch=branch, repo=repo).head == start  # nothing new

    def team_pushes(path: str, text: str) -> str:
        (upstream / path).write_text(text)
        git(["commit", "--quiet", "-am", f"the team changes {path}"], cwd=upstream)
        workspace(upstream, root, cast.project)  # this machine fetches it
        return git(["rev-parse", "main"], cwd=repo).stdout.strip()

    # No work of HAAO's on the branch yet: it moves to the team's newest commit.
    pushed = team_pushes("README.md", "readme, the team's\n")
    branch_follow_upstream(branch=branch, repo=repo)
    assert (branch.head, branch.base) == (pushed, pushed)
    # With HAAO's work on it: a merge commit of both, stored and recorded.
    work = commit_on(repo, pushed, "app.py", "VALUE = 2\n")
    pack_save(project=cast.project, repo=repo, commit=work, prerequisites=[pushed])
    assert branch_advance(branch=branch, old=pushed, new=work)
    again = team_pushes("README.md", "readme, the team's again\n")
    branch_follow_upstream(branch=branch, repo=repo)
    parents = git(["rev-list", "--parents", "-n", "1", branch.head], cwd=repo).stdout.split()
    assert parents[1:] == [work, again]
    assert IntegrationBranch.objects.get(pk=branch.pk).head == branch.head
    assert GitPack.objects.filter(commit=branch.head).exists()
    assert git(["show", f"{branch.head}:app.py"], cwd=repo).stdout == "VALUE = 2\n"
