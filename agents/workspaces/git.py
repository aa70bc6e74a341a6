"""Running git for workspaces: a fixed, hook-free configuration and a scrubbed environment."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from haao.errors import ApplicationError
from haao.text import redact_userinfo

AUTHOR_NAME = "HAAO"
AUTHOR_EMAIL = "haao@localhost"
DEFAULT_TIMEOUT = 120.0
FETCH_TIMEOUT = 900.0
LOCK_TIMEOUT = 300.0
# Transports a customer's repository may use; `ext::`, `fd::` and helpers are never allowed.
# Plain http only reaches hosts the operator allowlisted (tickets.services.project_settings).
ALLOWED_PROTOCOLS = "file:http:https:ssh"

# Passed on every call, so neither a repository's config nor the machine's can run code or
# change how content is read: no hooks, no fsmonitor, no pager, no signing, no auto-gc.
_CONFIG = (
    "core.hooksPath=/dev/null",
    "core.symlinks=true",
    "core.fsmonitor=false",
    "core.autocrlf=false",
    "core.protectNTFS=true",
    "core.protectHFS=true",
    "core.pager=cat",
    "protocol.ext.allow=never",
    "protocol.fd.allow=never",
    "protocol.file.allow=always",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "rerere.enabled=false",
    "advice.detachedHead=false",
    "init.defaultBranch=main",
    "user.name=" + AUTHOR_NAME,
    "user.email=" + AUTHOR_EMAIL,
)


class WorkspaceError(ApplicationError):
    """A git operation on a workspace failed; the message says which and why."""

    code = "workspace_error"
    status = 500


@functools.cache
def _home() -> str:
    # An empty, private HOME: no ~/.gitconfig, ~/.ssh/config or credential store is read.
    return tempfile.mkdtemp(prefix="haao-git-home-")


def git_env() -> dict[str, str]:
    """The whole environment git runs with; nothing else of the worker's is inherited."""
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": _home(),
        "LC_ALL": "C",
        "LANG": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "SSH_ASKPASS": "/bin/false",
        "GIT_ALLOW_PROTOCOL": ALLOWED_PROTOCOLS,
        # Paths from edits are file names, never pathspec magic like ':(glob)*'.
        "GIT_LITERAL_PATHSPECS": "1",
        "GIT_AUTHOR_NAME": AUTHOR_NAME,
        "GIT_AUTHOR_EMAIL": AUTHOR_EMAIL,
        "GIT_COMMITTER_NAME": AUTHOR_NAME,
        "GIT_COMMITTER_EMAIL": AUTHOR_EMAIL,
        "GIT_MERGE_AUTOEDIT": "no",
        "GIT_EDITOR": "true",
    }


def git(args: Sequence[str], *, cwd: Path, check: bool = True, input_text: str | None = None,
        timeout: float = DEFAULT_TIMEOUT, env: Mapping[str, str] | None = None,
        input_bytes: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run `git <args>` in cwd with the fixed configuration; raise WorkspaceError on failure.

    `env` adds to git_env() (e.g. the credentials of agents.workspaces.remote); `input_bytes`
    feeds binary standard input (a bundle)."""
    if input_text is not None:
        input_bytes = input_text.encode("utf-8", "surrogateescape")
    raw = _run(args, cwd=cwd, check=check, input_bytes=input_bytes, timeout=timeout, env=env)
    # Decoded as text mode would, without turning a CR into a line break.
    return subprocess.CompletedProcess(raw.args, raw.returncode,
                                       raw.stdout.decode("utf-8", "surrogateescape"),
                                       raw.stderr.decode("utf-8", "surrogateescape"))


def git_bytes(args: Sequence[str], *, cwd: Path, input_text: str = "") -> bytes:
    """The standard output of `git <args>` as bytes (a pack); WorkspaceError on failure."""
    return _run(args, cwd=cwd, check=True, input_bytes=input_text.encode(),
                timeout=DEFAULT_TIMEOUT, env=None).stdout


def _run(args: Sequence[str], *, cwd: Path, check: bool, input_bytes: bytes | None,
         timeout: float, env: Mapping[str, str] | None) -> subprocess.CompletedProcess[bytes]:
    argv = ["git"]
    for item in _CONFIG:
        argv += ["-c", item]
    argv += list(args)
    try:
        environment = {**git_env(), **env} if env else git_env()
        result = subprocess.run(  # noqa: S603 - an argv list, never a shell
            argv, cwd=cwd, env=environment, input=input_bytes, capture_output=True,
            timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise WorkspaceError(f"git {args[0]} took longer than {timeout:.0f} s and was stopped.",
                             details={"command": args[0]}) from None
    except FileNotFoundError:
        raise WorkspaceError("git is not installed on this worker.") from None
    if check and result.returncode != 0:
        output = (result.stderr or result.stdout).decode("utf-8", "replace")
        raise WorkspaceError(f"git {args[0]} failed: {redact_userinfo(_tail(output))}",
                             details={"command": args[0], "exit_code": result.returncode})
    return result


def _tail(text: str, limit: int = 800) -> str:
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


@contextlib.contextmanager
def file_lock(path: Path, *, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold an exclusive flock on path; other processes and threads wait their turn."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise WorkspaceError(f"The workspace is busy: {path} stayed locked for "
                                         f"{timeout:.0f} s.", code="workspace_busy") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing releases the lock
