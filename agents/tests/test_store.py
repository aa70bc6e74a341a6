"""HAAO's commit store and reused checkouts: a worker with an empty disk loses nothing, and a
reset checkout shows exactly the commit it was reset to."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from agents.delivery.branches import branch_merge_ticket
from agents.delivery.packs import commits_ensure, pack_save
from agents.models import GitPack
from agents.sandbox import DEFAULT_SANDBOX_UID
from agents.workspaces import workspace_prepare
from agents.workspaces.checkouts import checkout_at, checkout_hand_over
from agents.workspaces.git import WorkspaceError, git
from agents.workspaces.remote import workspace_of
from agents.workspaces.store import has_commit
from tests.factories import TicketFactory
from tickets.models import Attempt, AttemptOutcome, TicketStatus


def _upstream(tmp_path: Path) -> Path:
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    git(["init", "--quiet", "-b", "main"], cwd=upstream)
    (upstream / "app.py").write_text("VALUE = 1\n")
    (upstream / "README.md").write_text("readme\n")
    git(["add", "."], cwd=upstream)
    git(["commit", "--quiet", "-m", "start"], cwd=upstream)
    return upstream


def _workspace(upstream: Path, root: Path, project: Any) -> Path:
    return workspace_prepare(project_id=project.pk, repository=str(upstream),
                             default_branch="main", root=root)


def _commit_on(repo: Path, base: str, path: str, text: str) -> str:
    """A commit on top of base changing one file, written through a reused checkout."""
    with checkout_at(repo=repo, commit=base) as checkout:
        (checkout.directory / path).write_text(text)
        checkout.git(["update-index", "--add", "--", path])
        tree = checkout.git(["write-tree"]).strip()
    return git(["commit-tree", tree, "-p", base, "-m", f"change {path}"], cwd=repo).stdout.strip()


def test_a_worker_with_an_empty_disk_restores_haaos_commits_from_the_database(
        cast: Any, tmp_path: Path) -> None:
    upstream = _upstream(tmp_path)
    repo = _workspace(upstream, tmp_path / "machine-a", cast.project)
    base = git(["rev-parse", "main"], cwd=repo).stdout.strip()
    first = _commit_on(repo, base, "app.py", "VALUE = 2\n")
    pack_save(project=cast.project, repo=repo, commit=first, prerequisites=[base])
    second = _commit_on(repo, first, "README.md", "readme, changed\n")
    pack_save(project=cast.project, repo=repo, commit=second, prerequisites=[first])
    # The second pack carries only what the first does not: the bundle names its prerequisite.
    assert GitPack.objects.get(commit=second).prerequisites == [first]

    other = _workspace(upstream, tmp_path / "machine-b", cast.project)
    assert not has_commit(other, second)
    commits_ensure(project=cast.project, repo=other, commits=[second])
    assert git(["show", f"{second}:app.py"], cwd=other).stdout == "VALUE = 2\n"
    assert git(["show", f"{second}:README.md"], cwd=other).stdout == "readme, changed\n"


def test_a_commit_that_is_nowhere_is_named_in_the_error(cast: Any, tmp_path: Path) -> None:
    repo = _workspace(_upstream(tmp_path), tmp_path / "machine", cast.project)
    with pytest.raises(WorkspaceError) as missing:
        commits_ensure(project=cast.project, repo=repo, commits=["1" * 40])
    assert "1111111111" in missing.value.message
    assert missing.value.code == "commit_missing"


def test_an_upstream_commit_another_machine_fetched_since_this_ones_last_fetch_is_fetched(
        cast: Any, tmp_path: Path, settings: Any) -> None:
    """Steps of a busy project share a fetch (STEP_FETCH_SECONDS), so this machine may not
    have an upstream commit another machine fetched and built on a moment ago."""
    upstream = _upstream(tmp_path)
    type(cast.project).objects.filter(pk=cast.project.pk).update(repository=str(upstream))
    cast.project.refresh_from_db()
    settings.HAAO_WORKSPACE_ROOT = tmp_path / "machine-b"
    here = workspace_of(cast.project, max_age=0)
    (upstream / "app.py").write_text("VALUE = 5\n")
    git(["commit", "--quiet", "-am", "pushed by the team"], cwd=upstream)
    there = _workspace(upstream, tmp_path / "machine-a", cast.project)  # fetches it
    pushed = git(["rev-parse", "main"], cwd=there).stdout.strip()
    work = _commit_on(there, pushed, "README.md", "built on the team's push\n")
    pack_save(project=cast.project, repo=there, commit=work, prerequisites=[pushed])

    assert workspace_of(cast.project, max_age=600) == here and not has_commit(here, pushed)
    commits_ensure(project=cast.project, repo=here, commits=[work])
    assert git(["show", f"{work}:app.py"], cwd=here).stdout == "VALUE = 5\n"


def test_another_projects_packs_are_never_used(cast: Any, tmp_path: Path) -> None:
    upstream = _upstream(tmp_path)
    repo = _workspace(upstream, tmp_path / "a", cast.project)
    base = git(["rev-parse", "main"], cwd=repo).stdout.strip()
    commit = _commit_on(repo, base, "app.py", "VALUE = 3\n")
    pack_save(project=cast.project, repo=repo, commit=commit, prerequisites=[base])
    elsewhere = _workspace(upstream, tmp_path / "b", cast.other_project)
    with pytest.raises(WorkspaceError):
        commits_ensure(project=cast.other_project, repo=elsewhere, commits=[commit])


def test_a_merge_on_a_machine_without_the_work_brings_it_from_the_store_and_names_it_there(
        cast: Any, tmp_path: Path, django_capture_on_commit_callbacks: Any) -> None:
    upstream = _upstream(tmp_path)
    here = _workspace(upstream, tmp_path / "machine-a", cast.project)
    base = git(["rev-parse", "main"], cwd=here).stdout.strip()
    work = _commit_on(here, base, "app.py", "VALUE = 4\n")
    pack_save(project=cast.project, repo=here, commit=work, prerequisites=[base])
    ticket = TicketFactory(project=cast.project, requirement__project=cast.project,
                           status=TicketStatus.ACCEPTED)
    attempt = Attempt.objects.create(organization=cast.org, ticket=ticket, number=1,
                                     outcome=AttemptOutcome.PASSED, commit=work)
    there = _workspace(upstream, tmp_path / "machine-b", cast.project)
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
    repo = _workspace(_upstream(tmp_path), tmp_path / "machine", cast.project)
    base = git(["rev-parse", "main"], cwd=repo).stdout.strip()
    changed = _commit_on(repo, base, "app.py", "VALUE = 9\n")
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
    repo = _workspace(_upstream(tmp_path), tmp_path / "machine", cast.project)
    base = git(["rev-parse", "main"], cwd=repo).stdout.strip()
    with checkout_at(repo=repo, commit=base) as one, checkout_at(repo=repo, commit=base) as two:
        assert one.directory != two.directory


def test_a_slot_left_broken_by_a_killed_process_starts_over(cast: Any, tmp_path: Path) -> None:
    repo = _workspace(_upstream(tmp_path), tmp_path / "machine", cast.project)
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
    repo = _workspace(_upstream(tmp_path), tmp_path / "machine", cast.project)
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
