"""Attempt workspaces end to end on the sample project: clone, worktree, edits, diff, merge."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from agents.edits import Edit, EditKind, EditPathError, parse_edits
from agents.workspaces import (
    EditNotApplicable,
    EditRefused,
    NothingToCommit,
    apply_edits,
    attempt_branch,
    attempt_worktree,
    changed_paths,
    commit_attempt,
    diff_of,
    merge_into_integration,
    workspace_prepare,
)
from agents.workspaces.git import git, git_env
from haao.errors import ApplicationError
from tests.samples import RIGHT_FIX
from tickets.repositories import RepositoryRefused

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "invoice-calc"
ALLOWED = ["invoice_calc/*.py", "tests/test_*.py"]


def run_git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=git_env(), check=True,
                          capture_output=True, text=True).stdout


@pytest.fixture
def upstream(tmp_path: Path) -> Path:
    """The customer's repository: the sample project committed on main."""
    path = tmp_path / "upstream"
    shutil.copytree(SAMPLE, path, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    run_git(path, "init", "--quiet", "--initial-branch=main")
    run_git(path, "add", "--all")
    run_git(path, "-c", "user.name=Customer", "-c", "user.email=dev@customer.test",
            "commit", "--quiet", "-m", "invoice-calc 0.3.1")
    return path


@pytest.fixture
def repo(tmp_path: Path, upstream: Path) -> Path:
    return workspace_prepare(project_id="p1", repository=str(upstream), default_branch="main",
                             integration_branch="haao/integration", root=tmp_path / "ws")


def run_sample_tests(worktree: Path) -> subprocess.CompletedProcess[str]:
    """The sample's own suite, as a customer would run it: none of HAAO's settings or plugins."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(worktree),
           "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q"], cwd=worktree, env=env,
                          capture_output=True, text=True, timeout=120)


def head(repo: Path, branch: str) -> str:
    return run_git(repo, "rev-parse", f"refs/heads/{branch}").strip()


def status(worktree: Path) -> str:
    return run_git(worktree, "status", "--porcelain", "--untracked-files=all")


def test_preparing_twice_gives_the_same_repository_with_both_branches(
        tmp_path: Path, upstream: Path, repo: Path) -> None:
    integration = head(repo, "haao/integration")

    again = workspace_prepare(project_id="p1", repository=f"file://{upstream}",
                              default_branch="main", integration_branch="haao/integration",
                              root=tmp_path / "ws")

    assert again == repo == tmp_path / "ws" / "p1" / "repo"
    assert head(repo, "main") == head(repo, "haao/integration") == integration
    assert run_git(repo, "rev-parse", "--is-bare-repository").strip() == "true"


def test_preparing_again_fetches_new_commits_but_keeps_the_integration_branch(
        tmp_path: Path, upstream: Path, repo: Path) -> None:
    integration = head(repo, "haao/integration")
    (upstream / "NEWS.md").write_text("0.3.2\n")
    run_git(upstream, "add", "NEWS.md")
    run_git(upstream, "-c", "user.name=C", "-c", "user.email=c@c.test", "commit", "-qm", "news")

    workspace_prepare(project_id="p1", repository=str(upstream), default_branch="main",
                      integration_branch="haao/integration", root=tmp_path / "ws")

    assert head(repo, "main") == head(upstream, "main")
    assert head(repo, "haao/integration") == integration


def test_each_fetch_brings_the_commit_graph_up_to_the_commits_made_here(
        tmp_path: Path, upstream: Path, repo: Path) -> None:
    main = head(repo, "main")
    chain = repo / "objects" / "info" / "commit-graphs" / "commit-graph-chain"
    assert chain.is_file()
    assert run_git(repo, "commit-graph", "verify").strip() == ""
    tree = run_git(repo, "rev-parse", f"{main}^{{tree}}").strip()
    made_here = run_git(repo, "-c", "user.name=H", "-c", "user.email=h@h.test", "commit-tree",
                        tree, "-p", main, "-m", "made here").strip()
    run_git(repo, "update-ref", "refs/haao/commits/" + made_here, made_here)
    assert made_here not in graph_commits(repo)

    workspace_prepare(project_id="p1", repository=str(upstream), default_branch="main",
                      root=tmp_path / "ws")

    assert {main, made_here} <= graph_commits(repo)
    assert run_git(repo, "commit-graph", "verify").strip() == ""


def graph_commits(repo: Path) -> set[str]:
    """The commits the repository's commit-graph holds (git's test-tool is not installed:
    the chain's files are read, each commit's id in its OID lookup chunk)."""
    found: set[str] = set()
    folder = repo / "objects" / "info" / "commit-graphs"
    for name in (folder / "commit-graph-chain").read_text().split():
        data = (folder / f"graph-{name}.graph").read_bytes()
        chunks = data[6]  # after "CGPH", the version and the hash version
        table = {data[8 + 12 * i:12 + 12 * i]: int.from_bytes(
            data[12 + 12 * i:20 + 12 * i], "big") for i in range(chunks + 1)}
        fanout, lookup = table[b"OIDF"], table[b"OIDL"]
        count = int.from_bytes(data[fanout + 255 * 4:fanout + 256 * 4], "big")
        found |= {data[lookup + 20 * i:lookup + 20 * (i + 1)].hex() for i in range(count)}
    return found


def test_concurrent_prepares_of_one_project_all_succeed(tmp_path: Path, upstream: Path) -> None:
    results: list[Path] = []
    errors: list[BaseException] = []

    def prepare() -> None:
        try:
            results.append(workspace_prepare(
                project_id="p2", repository=str(upstream), default_branch="main",
                integration_branch="haao/integration", root=tmp_path / "ws"))
        except BaseException as error:  # collected for the assertion below
            errors.append(error)

    threads = [threading.Thread(target=prepare) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(set(results)) == 1


@pytest.mark.parametrize("repository", [
    "ext::sh -c touch% /tmp/pwned", "fd::17", "--upload-pack=touch /tmp/pwned", "relative/path",
    "ftp://example.com/repo.git", "https:///no-host", "",
])
def test_dangerous_or_malformed_repository_locations_are_refused(
        tmp_path: Path, repository: str) -> None:
    with pytest.raises(RepositoryRefused):
        workspace_prepare(project_id="p3", repository=repository, default_branch="main",
                          integration_branch="haao/integration", root=tmp_path / "ws")

    assert not (tmp_path / "ws" / "p3" / "repo").exists()


def test_a_missing_default_branch_is_a_clear_error(tmp_path: Path, upstream: Path) -> None:
    with pytest.raises(ApplicationError, match="no branch 'trunk'"):
        workspace_prepare(project_id="p4", repository=str(upstream), default_branch="trunk",
                          integration_branch="haao/integration", root=tmp_path / "ws")


@pytest.mark.parametrize("project_id", ["../escape", "a/b", ".", ""])
def test_a_project_id_that_could_leave_the_root_is_refused(
        tmp_path: Path, upstream: Path, project_id: str) -> None:
    with pytest.raises(ApplicationError, match="project id"):
        workspace_prepare(project_id=project_id, repository=str(upstream),
                          default_branch="main", integration_branch="haao/integration",
                          root=tmp_path / "ws")


def test_an_attempt_worktree_is_on_its_own_branch_from_integration(repo: Path) -> None:
    with attempt_worktree(repo=repo, ticket_key="INV-42", attempt_number=1,
                          base_branch="haao/integration") as worktree:
        assert run_git(worktree, "symbolic-ref", "HEAD").strip() == \
            "refs/heads/haao/INV-42/attempt-1"
        assert run_git(worktree, "rev-parse", "HEAD").strip() == head(repo, "haao/integration")
        assert (worktree / "invoice_calc" / "totals.py").is_file()

    assert not worktree.exists()
    assert str(worktree) not in run_git(repo, "worktree", "list")
    assert head(repo, "haao/INV-42/attempt-1")  # the branch outlives its directory


def test_the_worktree_is_removed_even_when_the_body_raises(repo: Path) -> None:
    with pytest.raises(RuntimeError, match="model crashed"), attempt_worktree(
            repo=repo, ticket_key="INV-42", attempt_number=2,
            base_branch="haao/integration") as worktree:
        (worktree / "junk.txt").write_text("half done")
        raise RuntimeError("model crashed")

    assert not worktree.exists()
    assert str(worktree) not in run_git(repo, "worktree", "list")


def test_a_stale_branch_and_worktree_from_a_crashed_try_are_replaced(repo: Path) -> None:
    stale = repo.parent / "worktrees" / "crashed"
    run_git(repo, "worktree", "add", "-q", "-b", "haao/INV-42/attempt-3", str(stale),
            "haao/integration")
    (stale / "invoice_calc" / "totals.py").write_text("broken\n")
    run_git(stale, "commit", "-qam", "half an attempt")

    with attempt_worktree(repo=repo, ticket_key="INV-42", attempt_number=3,
                          base_branch="haao/integration") as worktree:
        assert run_git(worktree, "rev-parse", "HEAD").strip() == head(repo, "haao/integration")
        assert "broken" not in (worktree / "invoice_calc" / "totals.py").read_text()

    assert not stale.exists()


@pytest.mark.parametrize(("key", "number"), [("inv-1", 1), ("INV-1; rm", 1), ("INV-1", 0),
                                              ("INV-1", True), ("../INV-1", 1)])
def test_bad_ticket_keys_and_attempt_numbers_are_refused(key: str, number: int) -> None:
    with pytest.raises(ApplicationError):
        attempt_branch(key, number)


def test_applying_the_fix_makes_the_sample_tests_pass_and_is_the_recorded_diff(
        repo: Path) -> None:
    with attempt_worktree(repo=repo, ticket_key="INV-42", attempt_number=1,
                          base_branch="haao/integration") as worktree:
        before = run_sample_tests(worktree)
        assert before.returncode == 1 and "1 failed, 16 passed" in before.stdout

        change = apply_edits(worktree=worktree, edits=parse_edits(RIGHT_FIX), allowed_paths=ALLOWED)

        after = run_sample_tests(worktree)
        assert after.returncode == 0 and "17 passed" in after.stdout
        assert change.modified == ["invoice_calc/totals.py"] and change.created == []
        assert (change.added_lines, change.removed_lines) == (2, 2)
        diff = diff_of(worktree)
        assert "+    return amount.quantize(Decimal(\"0.01\"), rounding=ROUND_HALF_UP)" in diff
        assert "-    return Decimal(str(round(float(amount), 2)))" in diff
        assert "__pycache__" not in diff  # artifacts of the test run are not part of it
        assert changed_paths(worktree) == ["invoice_calc/totals.py"]


def test_new_and_deleted_files_appear_in_the_diff_and_the_commit(repo: Path) -> None:
    edits = [Edit(kind=EditKind.FILE, path="invoice_calc/currency.py", text="EUR = 'EUR'\n"),
             Edit(kind=EditKind.DELETE, path="invoice_calc/discounts.py")]
    with attempt_worktree(repo=repo, ticket_key="INV-7", attempt_number=1,
                          base_branch="haao/integration") as worktree:
        change = apply_edits(worktree=worktree, edits=edits, allowed_paths=ALLOWED)
        commit = commit_attempt(worktree, "INV-7: currency module")

        assert change.created == ["invoice_calc/currency.py"]
        assert change.deleted == ["invoice_calc/discounts.py"]
        assert "new file mode 100644" in diff_of(worktree)
        assert changed_paths(worktree) == ["invoice_calc/currency.py",
                                           "invoice_calc/discounts.py"]
        assert run_git(worktree, "log", "-1", "--format=%an <%ae>|%s", commit).strip() == \
            "HAAO <haao@localhost>|INV-7: currency module"


def test_committing_an_attempt_without_changes_is_refused(repo: Path) -> None:
    with attempt_worktree(repo=repo, ticket_key="INV-8", attempt_number=1,
                          base_branch="haao/integration") as worktree, \
            pytest.raises(NothingToCommit):
        commit_attempt(worktree, "INV-8: nothing")


def test_a_path_outside_the_allowed_paths_refuses_the_whole_set(repo: Path) -> None:
    edits = [Edit(kind=EditKind.FILE, path="invoice_calc/totals.py", text="changed\n"),
             Edit(kind=EditKind.FILE, path=".github/workflows/ci.yml", text="on: push\n"),
             Edit(kind=EditKind.FILE, path="invoice_calc/sub/deep.py", text="x = 1\n")]
    with attempt_worktree(repo=repo, ticket_key="INV-9", attempt_number=1,
                          base_branch="haao/integration") as worktree:
        with pytest.raises(EditRefused) as caught:
            apply_edits(worktree=worktree, edits=edits, allowed_paths=ALLOWED)

        assert ".github/workflows/ci.yml" in caught.value.message
        assert caught.value.details["paths"] == [".github/workflows/ci.yml",
                                                 "invoice_calc/sub/deep.py"]
        assert status(worktree) == ""


def test_denied_paths_win_over_allowed_globs(repo: Path) -> None:
    edit = Edit(kind=EditKind.FILE, path="config/settings.example.ini", text="[x]\n")
    with attempt_worktree(repo=repo, ticket_key="INV-9", attempt_number=2,
                          base_branch="haao/integration") as worktree:
        with pytest.raises(EditRefused, match=re.escape("config/settings.example.ini")):
            apply_edits(worktree=worktree, edits=[edit], allowed_paths=["config/*"],
                        denied_paths=["config/*.ini"])
        assert status(worktree) == ""


@pytest.mark.parametrize("path", ["../outside.py", "/tmp/outside.py", ".git/config",
                                  "invoice_calc/.git/hooks/post-checkout"])
def test_paths_leaving_the_worktree_are_refused_before_writing(repo: Path, path: str) -> None:
    edits = [Edit(kind=EditKind.FILE, path="invoice_calc/ok.py", text="ok\n"),
             Edit(kind=EditKind.FILE, path=path, text="pwned\n")]
    with attempt_worktree(repo=repo, ticket_key="INV-10", attempt_number=1,
                          base_branch="haao/integration") as worktree:
        with pytest.raises(EditPathError):
            apply_edits(worktree=worktree, edits=edits, allowed_paths=["*", "*/*", "*/*/*/*"])
        assert status(worktree) == ""
        assert not (worktree / "invoice_calc" / "ok.py").exists()


def test_writing_through_a_planted_symlink_is_refused_and_its_target_unchanged(
        repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("MARKER\n")
    outside_dir = tmp_path / "outside-dir"
    outside_dir.mkdir()
    with attempt_worktree(repo=repo, ticket_key="INV-11", attempt_number=1,
                          base_branch="haao/integration") as worktree:
        # What a check run inside the worktree could have left behind.
        os.symlink(outside, worktree / "invoice_calc" / "link.py")
        os.symlink(outside_dir, worktree / "invoice_calc" / "linkdir")
        for path in ("invoice_calc/link.py", "invoice_calc/linkdir/new.py"):
            for edit in (Edit(kind=EditKind.FILE, path=path, text="pwned\n"),
                         Edit(kind=EditKind.REPLACE, path=path, search="MARKER\n",
                              text="pwned\n"),
                         Edit(kind=EditKind.DELETE, path=path)):
                with pytest.raises(EditRefused, match="symlink"):
                    apply_edits(worktree=worktree, edits=[edit],
                                allowed_paths=["invoice_calc/*", "invoice_calc/*/*"])

        assert outside.read_text() == "MARKER\n"
        assert list(outside_dir.iterdir()) == []
        assert run_git(worktree, "diff", "--cached", "--name-only") == ""
    assert outside.read_text() == "MARKER\n"


def test_a_hard_link_planted_in_the_worktree_is_refused(repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("MARKER\n")
    with attempt_worktree(repo=repo, ticket_key="INV-11", attempt_number=2,
                          base_branch="haao/integration") as worktree:
        os.link(outside, worktree / "invoice_calc" / "hard.py")
        with pytest.raises(EditRefused, match="hard links"):
            apply_edits(worktree=worktree, allowed_paths=ALLOWED, edits=[
                Edit(kind=EditKind.REPLACE, path="invoice_calc/hard.py", search="MARKER\n",
                     text="pwned\n")])
    assert outside.read_text() == "MARKER\n"


def test_a_search_that_does_not_match_exactly_once_names_the_file_and_text(repo: Path) -> None:
    missing = Edit(kind=EditKind.REPLACE, path="invoice_calc/totals.py",
                   search="def no_such_function():\n    pass\n", text="", line=3)
    twice = Edit(kind=EditKind.REPLACE, path="invoice_calc/totals.py",
                 search="    net: Decimal\n", text="", line=9)
    with attempt_worktree(repo=repo, ticket_key="INV-12", attempt_number=1,
                          base_branch="haao/integration") as worktree:
        with pytest.raises(EditNotApplicable) as caught:
            apply_edits(worktree=worktree, edits=[missing], allowed_paths=ALLOWED)
        assert "invoice_calc/totals.py" in caught.value.message
        assert "is not found" in caught.value.message
        assert "def no_such_function():" in caught.value.message

        text = (worktree / "invoice_calc" / "totals.py").read_text()
        (worktree / "invoice_calc" / "totals.py").write_text(text + "\n    net: Decimal\n")
        with pytest.raises(EditNotApplicable, match="matches 2 times"):
            apply_edits(worktree=worktree, edits=[twice], allowed_paths=ALLOWED)


def test_a_failing_second_edit_leaves_the_first_file_unwritten(repo: Path) -> None:
    edits = [Edit(kind=EditKind.FILE, path="invoice_calc/tax.py", text="# gone\n"),
             Edit(kind=EditKind.REPLACE, path="invoice_calc/totals.py", search="nope\n",
                  text="")]
    with attempt_worktree(repo=repo, ticket_key="INV-13", attempt_number=1,
                          base_branch="haao/integration") as worktree:
        with pytest.raises(EditNotApplicable):
            apply_edits(worktree=worktree, edits=edits, allowed_paths=ALLOWED)
        assert status(worktree) == ""


def test_size_and_changed_line_limits_refuse_before_writing(repo: Path) -> None:
    big = Edit(kind=EditKind.FILE, path="invoice_calc/big.py", text="x = 1\n" * 100)
    with attempt_worktree(repo=repo, ticket_key="INV-14", attempt_number=1,
                          base_branch="haao/integration") as worktree:
        with pytest.raises(EditRefused, match="allowed per file"):
            apply_edits(worktree=worktree, edits=[big], allowed_paths=ALLOWED,
                        max_file_bytes=100)
        with pytest.raises(EditRefused, match="change 100 lines"):
            apply_edits(worktree=worktree, edits=[big], allowed_paths=ALLOWED,
                        max_changed_lines=50)
        assert status(worktree) == ""


def test_a_star_in_an_allowed_path_does_not_cross_folders(repo: Path) -> None:
    edit = Edit(kind=EditKind.FILE, path="invoice_calc/sub/mod.py", text="x = 1\n")
    with attempt_worktree(repo=repo, ticket_key="INV-15", attempt_number=1,
                          base_branch="haao/integration") as worktree:
        with pytest.raises(EditRefused):
            apply_edits(worktree=worktree, edits=[edit], allowed_paths=["invoice_calc/*"])
        change = apply_edits(worktree=worktree, edits=[edit],
                             allowed_paths=["invoice_calc/*/mod.p?"])
        assert change.created == ["invoice_calc/sub/mod.py"]


def test_a_merged_attempt_lands_on_integration_with_the_ticket_key(repo: Path) -> None:
    with attempt_worktree(repo=repo, ticket_key="INV-42", attempt_number=1,
                          base_branch="haao/integration") as worktree:
        apply_edits(worktree=worktree, edits=parse_edits(RIGHT_FIX), allowed_paths=ALLOWED)
        commit_attempt(worktree, "INV-42: round totals half-up")
    before = head(repo, "haao/integration")

    result = merge_into_integration(repo=repo, branch="haao/INV-42/attempt-1",
                                    integration_branch="haao/integration",
                                    message="INV-42: Merge attempt 1 (accepted)")

    assert result.merged and result.conflicts == []
    assert result.commit == head(repo, "haao/integration") != before
    assert run_git(repo, "log", "-1", "--format=%s|%P", result.commit).strip() == \
        f"INV-42: Merge attempt 1 (accepted)|{before} {head(repo, 'haao/INV-42/attempt-1')}"
    assert "ROUND_HALF_UP" in run_git(repo, "show", f"{result.commit}:invoice_calc/totals.py")
    assert head(repo, "main") == before  # the customer's branch is untouched
    assert [line for line in run_git(repo, "worktree", "list").splitlines()
            if "merge-" in line] == []


def test_a_second_attempt_on_the_same_line_reports_a_conflict_and_changes_nothing(
        repo: Path) -> None:
    for number, rate in ((1, "0.21"), (2, "0.19")):
        edit = Edit(kind=EditKind.REPLACE, path="invoice_calc/tax.py",
                    search='    "standard": Decimal("0.20"),\n',
                    text=f'    "standard": Decimal("{rate}"),\n')
        with attempt_worktree(repo=repo, ticket_key="INV-50", attempt_number=number,
                              base_branch="haao/integration") as worktree:
            apply_edits(worktree=worktree, edits=[edit], allowed_paths=ALLOWED)
            commit_attempt(worktree, f"INV-50: standard rate {rate}")
    first = merge_into_integration(repo=repo, branch="haao/INV-50/attempt-1",
                                   integration_branch="haao/integration", message="INV-50: #1")
    assert first.merged

    second = merge_into_integration(repo=repo, branch="haao/INV-50/attempt-2",
                                    integration_branch="haao/integration", message="INV-50: #2")

    assert not second.merged
    assert second.conflicts == ["invoice_calc/tax.py"]
    assert "invoice_calc/tax.py" in second.summary and '0.19' in second.summary
    assert head(repo, "haao/integration") == first.commit == second.commit
    assert 'Decimal("0.21")' in run_git(repo, "show", "haao/integration:invoice_calc/tax.py")


def test_merging_a_missing_branch_is_a_clear_error(repo: Path) -> None:
    with pytest.raises(ApplicationError, match="does not exist"):
        merge_into_integration(repo=repo, branch="haao/INV-99/attempt-1",
                               integration_branch="haao/integration", message="INV-99")


def test_repository_hooks_never_run(repo: Path, tmp_path: Path) -> None:
    marker = tmp_path / "hook-ran"
    hooks = repo / "hooks"
    hooks.mkdir(exist_ok=True)
    for name in ("post-checkout", "pre-commit", "commit-msg", "post-commit", "post-merge"):
        hook = hooks / name
        hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
        hook.chmod(0o755)
    with attempt_worktree(repo=repo, ticket_key="INV-60", attempt_number=1,
                          base_branch="haao/integration") as worktree:
        apply_edits(worktree=worktree, edits=parse_edits(RIGHT_FIX), allowed_paths=ALLOWED)
        commit_attempt(worktree, "INV-60: fix")
    merge_into_integration(repo=repo, branch="haao/INV-60/attempt-1",
                           integration_branch="haao/integration", message="INV-60: merge")

    assert not marker.exists()
    assert git(["config", "--get", "core.hooksPath"], cwd=repo).stdout.strip() == "/dev/null"
