"""Per-project dependency environments, prepared once per base commit, read-only to checks."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agents.environments import (
    ENV_MOUNT,
    READY_MARKER,
    EnvironmentSetupFailed,
    PreparedEnvironment,
    environment_prepare,
)
from agents.sandbox import (
    Bind,
    CheckInvalid,
    CheckSpec,
    SandboxLimits,
    run_check,
    sandbox_available,
)
from agents.workspaces import workspace_prepare
from agents.workspaces.git import git
from haao.errors import ApplicationError
from tests.factories import ProjectFactory
from tests.samples import SAMPLE_PROJECT, git_checkout
from tickets.models import Project

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(not sandbox_available(), reason="bubblewrap cannot run here"),
]

LIMITS = SandboxLimits(timeout_seconds=120, memory_bytes=1024**3)
# The base interpreter has pytest installed; a venv made from it with
# --system-site-packages finds it without downloading anything.
BASE_PYTHON = str(Path(sys.base_prefix) / "bin" / "python3")
INTERPRETER_DIRS = [Path(sys.base_prefix)]


@pytest.fixture
def sample_repo(tmp_path: Path) -> Path:
    """The sample project as its own git repository with one commit on main."""
    repo = git_checkout(SAMPLE_PROJECT, tmp_path / "invoice-calc")
    return repo


@pytest.fixture
def project(cast: Any, sample_repo: Path) -> Project:
    project: Project = ProjectFactory(organization=cast.org, key="INV", name="Invoice calc",
                                      repository=str(sample_repo), default_branch="main")
    return project


@pytest.fixture
def bare(project: Project, tmp_path: Path) -> Path:
    return workspace_prepare(project_id=project.pk, repository=project.repository,
                             default_branch="main", integration_branch="haao/integration",
                             root=tmp_path / "workspaces")


def head_of(repo: Path) -> str:
    return git(["rev-parse", "refs/heads/main"], cwd=repo).stdout.strip()


def prepare(project: Project, bare: Path, root: Path, **kwargs: Any) -> PreparedEnvironment:
    kwargs.setdefault("base_commit", head_of(bare))
    return environment_prepare(project=project, repo_path=bare, root=root, limits=LIMITS,
                               readonly_paths=INTERPRETER_DIRS, **kwargs)


def check_in(env: PreparedEnvironment, worktree: Path, command: list[str]) -> Any:
    return run_check(worktree=worktree, check=CheckSpec(name="c", command=tuple(command),
                                                        timeout_seconds=120),
                     limits=LIMITS, readonly_paths=env.readonly_paths, env_extra=env.env_extra,
                     binds=env.binds)


COUNTING = [BASE_PYTHON, "-c", "open('/env/runs', 'a').write('run\\n')"]


def test_an_empty_setup_command_gives_a_ready_empty_environment(
        project: Project, bare: Path, tmp_path: Path) -> None:
    env = prepare(project, bare, tmp_path / "envs")
    assert env.path == tmp_path / "envs" / str(project.pk) / head_of(bare)
    assert [p.name for p in env.path.iterdir()] == [READY_MARKER]
    assert env.env_extra == {}
    assert env.binds == (Bind(source=env.path, target=ENV_MOUNT, writable=False),)


def test_checks_find_pytest_through_the_prepared_venv(
        project: Project, bare: Path, sample_repo: Path, tmp_path: Path) -> None:
    project.setup_command = [BASE_PYTHON, "-m", "venv", "--system-site-packages", "/env/venv"]
    env = prepare(project, bare, tmp_path / "envs")
    assert env.env_extra["VIRTUAL_ENV"] == "/env/venv"
    assert env.env_extra["PATH"].startswith("/env/venv/bin:")
    run = check_in(env, sample_repo, ["python", "-c",
                                      "import sys, pytest; print(sys.prefix, pytest.__name__)"])
    assert run.passed, run.stderr
    assert run.stdout.strip() == "/env/venv pytest"
    tests = check_in(env, sample_repo,
                     ["/env/venv/bin/python", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                      "tests", "-k", "not half_a_cent"])
    assert tests.exit_code == 0, tests.stdout + tests.stderr
    assert "passed" in tests.stdout


def test_preparing_twice_for_the_same_commit_runs_the_setup_command_once(
        project: Project, bare: Path, tmp_path: Path) -> None:
    project.setup_command = COUNTING
    first = prepare(project, bare, tmp_path / "envs")
    second = prepare(project, bare, tmp_path / "envs")
    assert first.path == second.path
    assert (first.path / "runs").read_text() == "run\n"


def test_a_different_base_commit_gets_an_environment_of_its_own(
        project: Project, bare: Path, sample_repo: Path, tmp_path: Path) -> None:
    project.setup_command = COUNTING
    first = prepare(project, bare, tmp_path / "envs")
    (sample_repo / "NOTES.md").write_text("more\n")
    for args in (["add", "-A"], ["-c", "user.name=Dev", "-c", "user.email=dev@example.com",
                                 "commit", "-q", "-m", "notes"]):
        subprocess.run(["git", *args], cwd=sample_repo, check=True, capture_output=True)
    workspace_prepare(project_id=project.pk, repository=project.repository,
                      default_branch="main", integration_branch="haao/integration",
                      root=bare.parent.parent)
    second = prepare(project, bare, tmp_path / "envs")
    assert second.path != first.path
    assert (second.path / "runs").read_text() == "run\n"
    assert (first.path / "runs").read_text() == "run\n"


def test_a_failing_setup_command_reports_its_output_and_is_tried_again(
        project: Project, bare: Path, tmp_path: Path) -> None:
    project.setup_command = [BASE_PYTHON, "-c",
                             "open('/env/runs', 'a').write('run'); "
                             "print('resolving dependencies'); "
                             "raise SystemExit('no matching distribution for leftpad')"]
    with pytest.raises(EnvironmentSetupFailed) as failure:
        prepare(project, bare, tmp_path / "envs")
    assert "no matching distribution for leftpad" in failure.value.message
    assert "exit code 1, expected 0" in failure.value.message
    path = tmp_path / "envs" / str(project.pk) / head_of(bare)
    assert not (path / READY_MARKER).exists()
    project.setup_command = COUNTING
    env = prepare(project, bare, tmp_path / "envs")
    assert (env.path / "runs").read_text() == "run\n"
    assert (env.path / READY_MARKER).is_file()


def test_the_setup_command_runs_in_a_checkout_of_the_base_commit(
        project: Project, bare: Path, tmp_path: Path) -> None:
    project.setup_command = [BASE_PYTHON, "-c",
                             "import os, shutil; shutil.copy('pyproject.toml', '/env/seen'); "
                             "open('/env/cwd', 'w').write(os.getcwd())"]
    env = prepare(project, bare, tmp_path / "envs")
    assert (env.path / "seen").read_text() == (SAMPLE_PROJECT / "pyproject.toml").read_text()
    assert (env.path / "cwd").read_text() == "/workspace"
    assert not list((bare.parent / "worktrees").iterdir())


def test_checks_cannot_write_into_the_environment(
        project: Project, bare: Path, sample_repo: Path, tmp_path: Path) -> None:
    project.setup_command = COUNTING
    env = prepare(project, bare, tmp_path / "envs")
    run = check_in(env, sample_repo, ["python3", "-c", "open('/env/runs', 'a').write('evil')"])
    assert not run.passed
    assert "Read-only file system" in run.stderr
    assert (env.path / "runs").read_text() == "run\n"


@pytest.fixture
def listener() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    thread = threading.Thread(target=lambda: server.accept()[0].close(), daemon=True)
    thread.start()
    yield server.getsockname()[1]
    server.close()


def test_the_setup_command_has_no_network_unless_allowed(
        project: Project, bare: Path, tmp_path: Path, listener: int) -> None:
    project.setup_command = [BASE_PYTHON, "-c",
                             f"import socket; socket.create_connection(('127.0.0.1', {listener}),"
                             " timeout=5); open('/env/connected', 'w').write('yes')"]
    with pytest.raises(EnvironmentSetupFailed) as failure:
        prepare(project, bare, tmp_path / "envs")
    assert "Connection refused" in failure.value.message
    env = prepare(project, bare, tmp_path / "envs", network=True)
    assert (env.path / "connected").read_text() == "yes"


@pytest.mark.parametrize(("command", "problem"), [
    ("pip install -e .", "list of arguments"),
    (["sh", "-c", "pip install -e ."], "sh -c"),
    (["python3", ""], "non-empty texts"),
])
def test_a_malformed_setup_command_is_refused_by_name(
        project: Project, bare: Path, tmp_path: Path, command: Any, problem: str) -> None:
    project.setup_command = command
    with pytest.raises(CheckInvalid) as refused:
        prepare(project, bare, tmp_path / "envs")
    assert problem in refused.value.message
    assert refused.value.status == 400
    assert not (tmp_path / "envs").exists()


def test_an_unknown_base_commit_is_refused(project: Project, bare: Path, tmp_path: Path) -> None:
    project.setup_command = COUNTING
    with pytest.raises(ApplicationError) as refused:
        prepare(project, bare, tmp_path / "envs", base_commit="0" * 40)
    assert refused.value.code == "commit_missing"
    with pytest.raises(ApplicationError) as malformed:
        prepare(project, bare, tmp_path / "envs", base_commit="main")
    assert malformed.value.code == "invalid_commit"


def test_a_writable_bind_lets_the_sandbox_write_there(tmp_path: Path) -> None:
    worktree, target = tmp_path / "w", tmp_path / "out"
    worktree.mkdir()
    target.mkdir()
    target.chmod(0o777)
    run = run_check(worktree=worktree, check=CheckSpec(
        name="w", command=("/usr/bin/python3", "-c", "open('/env/x', 'w').write('hi')"),
        timeout_seconds=30), limits=LIMITS, binds=[Bind(source=target, target="/env",
                                                        writable=True)])
    assert run.passed, run.stderr
    assert (target / "x").read_text() == "hi"


@pytest.mark.parametrize("target", ["/usr/env", "/workspace", "/tmp/env", "env", "/", "/etc"])
def test_a_bind_over_the_sandboxs_own_mounts_is_refused(tmp_path: Path, target: str) -> None:
    worktree, source = tmp_path / "w", tmp_path / "env"
    worktree.mkdir()
    source.mkdir()
    with pytest.raises(CheckInvalid) as refused:
        run_check(worktree=worktree, check=CheckSpec(name="w", command=("true",),
                                                     timeout_seconds=5),
                  limits=LIMITS, binds=[Bind(source=source, target=target)])
    assert "bind target" in refused.value.message
