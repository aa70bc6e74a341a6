"""Checks run whatever installed the host's interpreter: pyenv, uv, conda or Debian's own."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from agents.environments import check_toolchain, environment_prepare, toolchain_paths
from agents.sandbox import SANDBOX_PATH, CheckSpec, SandboxLimits, run_check, sandbox_available
from agents.workspaces.git import git
from agents.workspaces.samples import git_checkout
from tests.factories import ProjectFactory

pytestmark = pytest.mark.skipif(not sandbox_available(), reason="bubblewrap cannot run here")

LIMITS = SandboxLimits(timeout_seconds=60, memory_bytes=1024**3)
VERSION = CheckSpec(name="version", command=("python", "-c", "import sys; print(sys.version)"),
                    timeout_seconds=60)
# The real interpreter behind HAAO's own, wherever it was installed.
BASE = Path(os.path.realpath(sys.base_prefix))


def venv(python: str, at: Path) -> Path:
    subprocess.run([python, "-m", "venv", "--without-pip", str(at)], check=True)
    return at


@pytest.fixture
def pyenv_venv(tmp_path: Path) -> Path:
    """A virtualenv made from a pyenv-style prefix (~/.pyenv/versions/X, a link to the real
    interpreter here) that no sandbox mounts: its bin/python links out of every mount."""
    versions = tmp_path / "pyenv" / "versions"
    versions.mkdir(parents=True)
    (versions / "3.11.7").symlink_to(BASE, target_is_directory=True)
    python = versions / "3.11.7" / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    return venv(str(python), tmp_path / "venv")


@pytest.fixture
def worktree(tmp_path: Path) -> Path:
    path = tmp_path / "worktree"
    path.mkdir()
    return path


def run_in(worktree: Path, readonly: list[Path] | tuple[Path, ...], toolchain: Path) -> object:
    return run_check(worktree=worktree, check=VERSION, limits=LIMITS, readonly_paths=readonly,
                     env_extra={"PATH": f"{toolchain}/bin:{SANDBOX_PATH}"})


def test_a_pyenv_virtualenv_runs_once_the_interpreter_behind_it_is_mounted(
        pyenv_venv: Path, worktree: Path) -> None:
    assert not os.path.realpath(pyenv_venv / "bin" / "python").startswith(str(pyenv_venv))

    bare = run_check(worktree=worktree, check=VERSION, limits=LIMITS,
                     readonly_paths=[pyenv_venv],
                     env_extra={"PATH": f"{pyenv_venv}/bin:{SANDBOX_PATH}"})
    resolved = run_check(worktree=worktree, check=VERSION, limits=LIMITS,
                         readonly_paths=toolchain_paths([pyenv_venv]),
                         env_extra={"PATH": f"{pyenv_venv}/bin:{SANDBOX_PATH}"})

    # The venv alone: its python is a link to a directory the sandbox does not have.
    assert (bare.passed, bare.exit_code) == (False, 127)
    assert bare.expectation == "command not found: python"
    assert "failed to execute python" in bare.stderr
    # With the directories behind it (pyvenv.cfg's home, the link's target, sys.base_prefix).
    assert resolved.passed, resolved.stderr
    assert resolved.stdout.startswith(sys.version.split()[0])
    paths = toolchain_paths([pyenv_venv])
    # The link's target as the venv names it, and the real files behind it.
    assert paths[0] == pyenv_venv and pyenv_venv.parent / "pyenv/versions/3.11.7" in paths
    assert BASE in paths or BASE.is_relative_to("/usr")


def test_haao_s_own_interpreter_is_the_default_toolchain(worktree: Path) -> None:
    readonly, env_extra = check_toolchain()

    run = run_check(worktree=worktree, check=VERSION, limits=LIMITS, readonly_paths=readonly,
                    env_extra=env_extra)
    assert run.passed, run.stderr
    assert Path(os.path.realpath(sys.prefix)) in readonly
    assert env_extra["PATH"].startswith(f"{os.path.realpath(sys.prefix)}/bin:")


@pytest.mark.skipif(not Path("/usr/bin/python3").is_file(), reason="no Debian python3 here")
def test_a_debian_virtualenv_needs_nothing_beyond_itself(tmp_path: Path, worktree: Path) -> None:
    debian = venv("/usr/bin/python3", tmp_path / "debian-venv")

    assert toolchain_paths([debian]) == (debian,)  # /usr is in every sandbox already
    run = run_check(worktree=worktree, check=VERSION, limits=LIMITS, readonly_paths=[debian],
                    env_extra={"PATH": f"{debian}/bin:{SANDBOX_PATH}"})
    assert run.passed, run.stderr


def test_nothing_holding_haao_s_own_files_or_the_whole_system_is_mounted(
        tmp_path: Path, settings: object) -> None:
    """pyvenv.cfg files naming a home above HAAO's data, or /bin, show no part of either."""
    data = tmp_path / "owner" / "data"
    (data / "bin").mkdir(parents=True)
    settings.DATA_DIR = data / "var"  # type: ignore[attr-defined]
    above, root = tmp_path / "above", tmp_path / "root"
    for env, home in ((above, f"{tmp_path / 'owner'}/bin"), (root, "/bin")):
        (env / "bin").mkdir(parents=True)
        (env / "pyvenv.cfg").write_text(f"home = {home}\n")

    assert toolchain_paths([above, root], trusted=False) == (above, root)


# --- The virtualenv HAAO makes for the setup command -------------------------------------------

TINY = "tinypkg"
WHEEL = f"{TINY}-0.1-py3-none-any.whl"
# Offline: the wheel is in the repository, as a vendored dependency would be.
REQUIREMENTS_INSTALL = ["pip", "install", "--no-index", "--disable-pip-version-check",
                        "-r", "requirements.txt"]


def tiny_repository(tmp_path: Path) -> Path:
    """A repository whose requirements.txt installs a tiny package from a wheel it carries."""
    source = tmp_path / "tiny-src"
    (source / "wheels").mkdir(parents=True)
    info = f"{TINY}-0.1.dist-info"
    with zipfile.ZipFile(source / "wheels" / WHEEL, "w") as wheel:
        wheel.writestr(f"{TINY}/__init__.py", "GREETING = 'hello from tinypkg'\n")
        wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {TINY}\n"
                                           "Version: 0.1\n")
        wheel.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: haao-test\n"
                                        "Root-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{info}/RECORD", f"{TINY}/__init__.py,,\n{info}/METADATA,,\n"
                                         f"{info}/WHEEL,,\n{info}/RECORD,,\n")
    (source / "requirements.txt").write_text(f"./wheels/{WHEEL}\n")
    return git_checkout(source, tmp_path / "tiny")


def debian_toolchain(tmp_path: Path) -> Path:
    return Path("/usr")


def pyenv_toolchain(tmp_path: Path) -> Path:
    """A virtualenv whose python is a chain of links into a pyenv-style prefix elsewhere."""
    versions = tmp_path / "pyenv" / "versions"
    versions.mkdir(parents=True)
    (versions / "3.11.7").symlink_to(BASE, target_is_directory=True)
    python = versions / "3.11.7" / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    return venv(str(python), tmp_path / "toolchain-venv")


@pytest.mark.django_db
@pytest.mark.parametrize("layout", [
    pytest.param(debian_toolchain, id="debian", marks=pytest.mark.skipif(
        not Path("/usr/bin/python3").is_file(), reason="no Debian python3 here")),
    pytest.param(pyenv_toolchain, id="pyenv"),
])
def test_the_setup_command_installs_into_a_virtualenv_haao_made(
        layout: Any, tmp_path: Path, worktree: Path, settings: Any) -> None:
    """`pip install -r requirements.txt` works as on a laptop, and checks import the result."""
    toolchain = layout(tmp_path)
    settings.HAAO_CHECK_TOOLCHAIN = [toolchain]
    repo = tiny_repository(tmp_path)
    project = ProjectFactory(repository=str(repo), setup_command=REQUIREMENTS_INSTALL)
    head = git(["rev-parse", "HEAD"], cwd=repo).stdout.strip()

    environment = environment_prepare(project=project, repo_path=repo, base_commit=head,
                                      root=tmp_path / "envs", limits=LIMITS,
                                      readonly_paths=[toolchain])
    readonly, env_extra = check_toolchain(environment)
    run = run_check(worktree=worktree, check=CheckSpec(
        name="import", command=("python", "-c", "import sys, tinypkg; "
                                "print(tinypkg.GREETING, sys.prefix)"), timeout_seconds=60),
        limits=LIMITS, readonly_paths=readonly, env_extra=env_extra, binds=environment.binds)

    assert run.passed, run.stdout + run.stderr
    assert run.stdout.strip() == "hello from tinypkg /env/venv"
    assert env_extra["VIRTUAL_ENV"] == "/env/venv"
    assert env_extra["PATH"].startswith("/env/venv/bin:")
    assert (environment.path / "venv" / "pyvenv.cfg").is_file()
