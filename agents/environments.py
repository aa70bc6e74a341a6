"""A project's dependencies, prepared once per base commit for every check to see read-only.

The project's setup command (the only step that may be given network access, by policy)
runs once per project and base commit in the sandbox, with a checkout of that commit as its
working directory and the environment directory writable at /env. When the toolchain has a
Python, HAAO first makes a virtualenv at /env/venv with it and runs the setup command inside
it, so `pip install -e .` works as on a laptop. Checks then see the same directory read-only
at /env, so they start fast and offline. See docs/sandbox.md.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from agents.sandbox import (
    DEFAULT_SANDBOX_UID,
    SANDBOX_PATH,
    SYSTEM_DIRS,
    Bind,
    CheckInvalid,
    CheckSpec,
    SandboxLimits,
    run_check,
)
from agents.workspaces.git import file_lock
from agents.workspaces.repos import check_project_id, commit_checkout
from haao.errors import ApplicationError

# Where the environment appears inside the sandbox, writable for setup, read-only for checks.
ENV_MOUNT = "/env"
# Written last: its presence alone means the environment is complete.
READY_MARKER = ".haao-ready"
# How much of the setup command's output an error carries.
OUTPUT_TAIL_CHARS = 2000
# The virtualenv HAAO makes for the setup command, inside the sandbox.
VENV_MOUNT = f"{ENV_MOUNT}/venv"

logger = logging.getLogger(__name__)

_COMMIT = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")
# argv only: a shell would turn the setup command back into a script nobody reviewed.
_SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "fish", "csh", "tcsh", "busybox"}


# An interpreter's executable: python, python3, python3.11 (not python3-config).
_PYTHON = re.compile(r"python[0-9.]*")
# Run by each toolchain interpreter to learn where its standard library and libpython live.
_PREFIX_PROBE = ("import json, sys; print(json.dumps([sys.prefix, sys.base_prefix, "
                 "sys.exec_prefix, sys.base_exec_prefix]))")


class ToolchainMissing(ApplicationError):
    """A toolchain directory the checks need does not exist on this machine."""

    code = "toolchain_missing"
    status = 503


class EnvironmentSetupFailed(ApplicationError):
    """The project's setup command failed; the message carries its output's tail."""

    code = "environment_setup_failed"
    status = 422


@dataclass(frozen=True)
class PreparedEnvironment:
    """A ready environment: its host directory and what each check needs to see it."""

    path: Path
    env_extra: Mapping[str, str]
    readonly_paths: tuple[Path, ...]
    binds: tuple[Bind, ...]


def setup_command_clean(command: Any) -> list[str]:
    """The setup command as an argv list; CheckInvalid names what is wrong with it."""
    if isinstance(command, str) or not isinstance(command, Sequence):
        raise CheckInvalid("The setup command must be a list of arguments (argv), not text.",
                           details={"setup_command": "must be a list of arguments"})
    argv = list(command)
    if not all(isinstance(arg, str) and arg and "\0" not in arg for arg in argv):
        raise CheckInvalid("The setup command must hold non-empty texts without NUL characters.",
                           details={"setup_command": "must hold non-empty texts"})
    if argv and os.path.basename(argv[0]) in _SHELLS and "-c" in argv[1:]:
        raise CheckInvalid("The setup command must be one program and its arguments; "
                           "a shell script (sh -c) is not allowed.",
                           details={"setup_command": "sh -c is not allowed"})
    return argv


def environment_prepare(*, project: Any, repo_path: Path, base_commit: str, root: Path,
                        limits: SandboxLimits, network: bool = False,
                        readonly_paths: Sequence[Path] = (),
                        sandbox_uid: int = DEFAULT_SANDBOX_UID) -> PreparedEnvironment:
    """Prepare (once) the environment of `project` at `base_commit` and return it."""
    argv = setup_command_clean(project.setup_command)
    if not isinstance(base_commit, str) or not _COMMIT.fullmatch(base_commit):
        raise ApplicationError(f"The base commit {str(base_commit)[:80]!r} must be a full "
                               "commit id.", code="invalid_commit",
                               details={"base_commit": "must be a full commit id"})
    if not isinstance(limits, SandboxLimits):
        raise CheckInvalid("limits must be SandboxLimits.", details={"limits": "invalid"})
    if not isinstance(network, bool):
        raise CheckInvalid("network must be true or false.",
                           details={"network": "must be true or false"})
    repo = Path(repo_path)
    path = Path(root).absolute() / check_project_id(project.pk) / base_commit
    given = [Path(p) for p in readonly_paths]
    readonly = toolchain_paths(given)
    # The setup command finds the given interpreters' programs first (python3 -m venv).
    setup_path = ":".join([*(str(p / "bin") for p in given if (p / "bin").is_dir()),
                           SANDBOX_PATH])
    python = toolchain_python(given) if argv and not makes_own_venv(argv) else None
    with file_lock(path.with_name(f"{base_commit}.lock")):
        if not (path / READY_MARKER).is_file():
            _build(argv=argv, repo=repo, path=path, base_commit=base_commit,
                   limits=dataclasses.replace(limits, network=network), readonly=readonly,
                   sandbox_uid=sandbox_uid, setup_path=setup_path, python=python)
    # The environment's own interpreters link to their base (pyvenv.cfg's home): it is seen
    # too. Nothing in the directory the setup command wrote is run to find out.
    behind = toolchain_paths([path], trusted=False)[1:]
    return PreparedEnvironment(path=path, env_extra=_env_extra(path),
                               readonly_paths=tuple(dict.fromkeys([*readonly, *behind])),
                               binds=(Bind(source=path, target=ENV_MOUNT, writable=False),))


def project_environment(*, project: Any, repo_path: Path,
                        base_commit: str) -> PreparedEnvironment | None:
    """The project's environment at `base_commit` as the loop prepares it (its setup command
    with the network, HAAO_CHECK_TOOLCHAIN), or None when it has no setup command."""
    if not project.setup_command:
        return None
    return environment_prepare(project=project, repo_path=repo_path, base_commit=base_commit,
                               root=settings.DATA_DIR / "environments",
                               limits=SandboxLimits(), network=True,
                               readonly_paths=settings.HAAO_CHECK_TOOLCHAIN)


def toolchain_python(directories: Sequence[Path]) -> Path | None:
    """The first `python3` (or `python`) in the toolchain directories' `bin`, or None."""
    for directory in directories:
        for name in ("python3", "python"):
            candidate = Path(directory) / "bin" / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
    return None


def makes_own_venv(argv: Sequence[str]) -> bool:
    """Whether the setup command itself makes a virtualenv (`python -m venv`, `virtualenv`,
    `uv venv`): then HAAO leaves /env to it, as before it made one itself."""
    program = os.path.basename(argv[0]) if argv else ""
    module = any(argv[i] == "-m" and argv[i + 1] in ("venv", "virtualenv")
                 for i in range(len(argv) - 1))
    return module or program == "virtualenv" or (program == "uv" and argv[1:2] == ["venv"])


def _build(*, argv: list[str], repo: Path, path: Path, base_commit: str,
           limits: SandboxLimits, readonly: tuple[Path, ...], sandbox_uid: int,
           setup_path: str = SANDBOX_PATH, python: Path | None = None) -> None:
    # Whatever a failed earlier preparation left is not trusted: start from nothing.
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    if argv:
        if os.geteuid() == 0:
            # The setup command runs as the unprivileged sandbox uid (docs/sandbox.md).
            os.chown(path, sandbox_uid, sandbox_uid)
        try:
            _run_setup(argv=argv, repo=repo, path=path, base_commit=base_commit, limits=limits,
                       readonly=readonly, sandbox_uid=sandbox_uid, setup_path=setup_path,
                       python=python)
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
    marker = path / READY_MARKER
    marker.write_text(f"{base_commit}\n")
    os.chown(marker, os.geteuid(), os.getegid())


def _run_setup(*, argv: list[str], repo: Path, path: Path, base_commit: str,
               limits: SandboxLimits, readonly: tuple[Path, ...], sandbox_uid: int,
               setup_path: str = SANDBOX_PATH, python: Path | None = None) -> None:
    binds = [Bind(source=path, target=ENV_MOUNT, writable=True)]
    env_extra = {"PATH": setup_path}
    with commit_checkout(repo=repo, commit=base_commit, label="env") as checkout:
        if python is not None:
            # Made by the toolchain's interpreter itself, in the sandbox: pip then installs
            # into /env/venv instead of refusing a system interpreter (externally managed).
            made = run_check(worktree=checkout, check=CheckSpec(
                name="venv", command=(str(python), "-m", "venv", VENV_MOUNT),
                timeout_seconds=limits.timeout_seconds), limits=limits,
                readonly_paths=readonly, env_extra=env_extra, sandbox_uid=sandbox_uid,
                binds=binds)
            if not made.passed:
                output = (made.stdout + made.stderr).strip()[-OUTPUT_TAIL_CHARS:]
                raise EnvironmentSetupFailed(
                    f"HAAO could not make the project's virtualenv with `{python} -m venv "
                    f"{VENV_MOUNT}` ({made.expectation}). An admin can install Python's venv "
                    "module on the worker (Debian: apt-get install python3-venv) or name "
                    "another interpreter in HAAO_CHECK_TOOLCHAIN. Its output ended with:\n"
                    f"{output or '(no output)'}",
                    details={"setup_command": made.expectation, "output_tail": output})
            env_extra = {"PATH": f"{VENV_MOUNT}/bin:{setup_path}", "VIRTUAL_ENV": VENV_MOUNT}
        check = CheckSpec(name="setup", command=tuple(argv),
                          timeout_seconds=limits.timeout_seconds)
        run = run_check(worktree=checkout, check=check, limits=limits, readonly_paths=readonly,
                        env_extra=env_extra, sandbox_uid=sandbox_uid, binds=binds)
    if not run.passed:
        output = (run.stdout + run.stderr).strip()[-OUTPUT_TAIL_CHARS:]
        raise EnvironmentSetupFailed(
            f"The project's setup command {' '.join(argv)!r} failed ({run.expectation}). "
            f"Its output ended with:\n{output or '(no output)'}",
            details={"setup_command": run.expectation, "output_tail": output})


def _env_extra(path: Path) -> dict[str, str]:
    """PATH (and VIRTUAL_ENV) that put the environment's programs first inside the sandbox."""
    if (path / "venv" / "bin").is_dir():
        return {"PATH": f"{VENV_MOUNT}/bin:{SANDBOX_PATH}", "VIRTUAL_ENV": VENV_MOUNT}
    if (path / "bin").is_dir():
        return {"PATH": f"{ENV_MOUNT}/bin:{SANDBOX_PATH}"}
    return {}


# --- What a check needs to see of the host's interpreters --------------------------------------

def toolchain_paths(directories: Sequence[Path], *, trusted: bool = True) -> tuple[Path, ...]:
    """Each directory and the real host directories behind its interpreters, to mount read-only.

    A virtualenv's `python` is a link into the interpreter it was made from (pyenv, uv,
    conda, /usr/local): without that prefix the sandbox cannot start it (exit 127). Programs
    inside an untrusted directory (one a sandboxed setup command wrote) are never run here.
    """
    found: dict[Path, None] = {}
    for raw in directories:
        directory = Path(raw)
        found.setdefault(directory)
        for path in _interpreter_dirs(directory, trusted):
            found.setdefault(path)
    return tuple(found)


@functools.lru_cache(maxsize=256)
def _interpreter_dirs(directory: Path, trusted: bool) -> tuple[Path, ...]:
    """The prefixes of the interpreters in `directory` (and its `venv`): each link's target as
    written (the sandbox must have that path) and as resolved (where the files are)."""
    home_dir = Path(os.path.realpath(directory))
    candidates: list[Path] = []
    for venv in (directory, directory / "venv"):
        home = _venv_home(venv / "pyvenv.cfg")
        if home is not None:
            candidates += [_prefix_of(home), _prefix_of(Path(os.path.realpath(home)))]
    bins = [directory / "bin", directory / "venv" / "bin"]
    if directory.name == "bin":
        bins.append(directory)
    probed: set[Path] = set()
    for bin_dir in bins:
        if not bin_dir.is_dir():
            continue
        for entry in sorted(bin_dir.iterdir()):
            if not _PYTHON.fullmatch(entry.name):
                continue
            real = Path(os.path.realpath(entry))
            if not real.is_file():
                continue
            for hop in (*_link_chain(entry), real):
                if not Path(os.path.realpath(hop.parent)).is_relative_to(home_dir):
                    candidates.append(_prefix_of(hop.parent))
            inside = real.is_relative_to(home_dir)
            if real in probed or not _PYTHON.fullmatch(real.name) or (inside and not trusted):
                continue
            probed.add(real)
            candidates.extend(_reported_prefixes(real))
    found: dict[Path, None] = {}
    for candidate in candidates:
        for path in (Path(os.path.normpath(candidate)), Path(os.path.realpath(candidate))):
            if Path(os.path.realpath(path)) != home_dir and _mountable(path):
                found.setdefault(path)
    return tuple(found)


def _link_chain(path: Path) -> list[Path]:
    """Every path a chain of symbolic links passes through, as written (not resolved)."""
    chain: list[Path] = []
    for _ in range(40):  # the kernel's own limit on nested links
        if not path.is_symlink():
            break
        path = Path(os.path.normpath(path.parent / os.readlink(path)))
        chain.append(path)
    return chain


def _venv_home(config: Path) -> Path | None:
    """The `home =` of a virtualenv's pyvenv.cfg: its base interpreter's bin directory."""
    try:
        lines = config.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip() == "home" and value.strip().startswith("/"):
            return Path(value.strip())
    return None


def _prefix_of(bin_dir: Path) -> Path:
    return bin_dir.parent if bin_dir.name == "bin" else bin_dir


def _reported_prefixes(python: Path) -> list[Path]:
    """sys.prefix and sys.base_prefix (and the exec ones) as the interpreter itself says."""
    try:
        done = subprocess.run(  # noqa: S603 - a fixed probe, no shell
            [str(python), "-I", "-c", _PREFIX_PROBE], capture_output=True, text=True,
            timeout=20, env={"PATH": SANDBOX_PATH, "LANG": "C.UTF-8"}, check=False)
        reported = json.loads(done.stdout) if done.returncode == 0 else []
    except (OSError, subprocess.SubprocessError, ValueError):
        reported = []
    if not reported:
        logger.warning("The interpreter %s did not report its prefix.", python)
    return [Path(p) for p in reported if isinstance(p, str) and p.startswith("/")]


def _mountable(path: Path) -> bool:
    """A directory a check may see: not the whole system, not visible already, not a parent
    of HAAO's own source, data or worktrees (that would expose its secrets)."""
    real = Path(os.path.realpath(path))
    if not real.is_dir() or min(len(path.parts), len(real.parts)) < 3:
        return False  # "/" or a top-level directory such as /root or /home
    if any(path.is_relative_to(system) for system in SYSTEM_DIRS):
        return False  # the sandbox shows the system directories already
    own = [Path(os.path.realpath(p)) for p in (settings.BASE_DIR, settings.DATA_DIR,
                                               settings.HAAO_WORKSPACE_ROOT)]
    return not any(mine.is_relative_to(path) or mine.is_relative_to(real) for mine in own)


def check_toolchain(environment: PreparedEnvironment | None = None,
                    ) -> tuple[list[Path], dict[str, str]]:
    """What checks see read-only and their environment: the project's prepared environment
    first, then the operator's toolchain (HAAO_CHECK_TOOLCHAIN, by default the interpreter
    HAAO runs with), then the system; each with the interpreters behind it."""
    toolchain = list(settings.HAAO_CHECK_TOOLCHAIN)
    missing = [str(path) for path in toolchain if not path.is_dir()]
    if missing:
        raise ToolchainMissing(
            f"HAAO_CHECK_TOOLCHAIN names {', '.join(missing)}, which does not exist on this "
            "worker; an admin can install the toolchain there or change HAAO_CHECK_TOOLCHAIN.",
            details={"HAAO_CHECK_TOOLCHAIN": missing})
    readonly = [*(environment.readonly_paths if environment else ()),
                *toolchain_paths(toolchain)]
    env_extra = dict(environment.env_extra) if environment else {}
    system = SANDBOX_PATH.split(":")
    own = [d for d in env_extra.get("PATH", "").split(":") if d and d not in system]
    bins = [str(p / "bin") for p in toolchain if (p / "bin").is_dir()]
    env_extra["PATH"] = ":".join(dict.fromkeys([*own, *bins, *system]))
    return list(dict.fromkeys(readonly)), env_extra
