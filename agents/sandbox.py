"""Run one Definition-of-Done check of a ticket inside a bubblewrap sandbox with hard limits."""

from __future__ import annotations

import errno
import functools
import os
import resource
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from haao.errors import ApplicationError

# Where the worktree appears inside the sandbox; the check's working directory.
SANDBOX_WORKDIR = "/workspace"
# Paths inside the sandbox's own private tmpfs, not the host's /tmp.
SANDBOX_TMP = "/tmp"  # noqa: S108
SANDBOX_HOME = "/tmp/home"  # noqa: S108
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
# The last bytes of each stream kept for the result (tickets.models.OUTPUT_TAIL_LIMIT).
OUTPUT_TAIL_BYTES = 16 * 1024
# Who the checked code runs as when HAAO itself runs as root (see _sandbox_user).
DEFAULT_SANDBOX_UID = 65534

# System directories a toolchain needs, read-only. Merged-/usr systems have symlinks here.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
# Files and directories of /etc that hold secrets: masked even though /etc is visible.
_HIDDEN_ETC = (
    "/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/sudoers",
    "/etc/security/opasswd", "/etc/ssl/private", "/etc/ssh", "/etc/sudoers.d", "/etc/haao",
)
# Output that tells a process died from the address-space limit rather than a plain failure.
_MEMORY_SIGNS = (b"MemoryError", b"Cannot allocate memory", b"std::bad_alloc",
                 b"out of memory", b"Out of memory")


class SandboxError(ApplicationError):
    """The sandbox could not run a check; the check itself never started."""

    code = "sandbox_error"
    status = 500


class SandboxUnavailable(SandboxError):
    """bubblewrap is missing or cannot create namespaces on this machine."""

    code = "sandbox_unavailable"
    status = 503


class CheckInvalid(ApplicationError):
    """A check or its limits are malformed; the message names the field."""

    code = "check_invalid"


@dataclass(frozen=True)
class SandboxLimits:
    """Hard limits for one check; the wall timeout caps the check's own timeout."""

    timeout_seconds: float = 600
    cpu_seconds: int = 600
    memory_bytes: int = 4 * 1024**3
    max_processes: int = 256
    max_file_size_bytes: int = 1024**3
    max_open_files: int = 1024
    tmp_size_bytes: int = 512 * 1024**2
    network: bool = False

    def __post_init__(self) -> None:
        minimums = {"timeout_seconds": 0.1, "cpu_seconds": 1, "memory_bytes": 32 * 1024**2,
                    "max_processes": 4, "max_file_size_bytes": 1024, "max_open_files": 16,
                    "tmp_size_bytes": 1024**2}
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise CheckInvalid(f"Sandbox limit {name} must be a number.",
                                   details={name: "must be a number"})
            if value < minimum:
                raise CheckInvalid(f"Sandbox limit {name} must be at least {minimum}.",
                                   details={name: f"must be at least {minimum}"})
        if not isinstance(self.network, bool):
            raise CheckInvalid("Sandbox limit network must be true or false.",
                               details={"network": "must be true or false"})


@dataclass(frozen=True)
class CheckSpec:
    """One Definition-of-Done check: an argv list and the outcome it must have."""

    name: str
    command: tuple[str, ...]
    timeout_seconds: float
    expected_exit_code: int = 0
    output_must_contain: tuple[str, ...] = ()
    output_must_not_contain: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        def bad(name: str, problem: str) -> CheckInvalid:
            return CheckInvalid(f"Check {self.name!r}: {name} {problem}.",
                                details={name: problem})

        if not isinstance(self.name, str) or not self.name:
            raise CheckInvalid("Check name must be a non-empty text.",
                               details={"name": "must be a non-empty text"})
        command = self.command
        if isinstance(command, str) or not isinstance(command, Sequence) or not command:
            raise bad("command", "must be a non-empty list of arguments")
        if not all(isinstance(arg, str) and arg and "\0" not in arg for arg in command):
            raise bad("command", "must hold non-empty texts without NUL characters")
        object.__setattr__(self, "command", tuple(command))
        timeout = self.timeout_seconds
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise bad("timeout_seconds", "must be a positive number")
        code = self.expected_exit_code
        if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code <= 255:
            raise bad("expected_exit_code", "must be an integer from 0 to 255")
        for name in ("output_must_contain", "output_must_not_contain"):
            texts = getattr(self, name)
            if isinstance(texts, str) or not isinstance(texts, Iterable):
                raise bad(name, "must be a list of texts")
            texts = tuple(texts)
            if not all(isinstance(text, str) and text for text in texts):
                raise bad(name, "must hold non-empty texts")
            object.__setattr__(self, name, texts)

    @classmethod
    def from_spec(cls, data: Mapping[str, Any]) -> CheckSpec:
        """A check from one `definition_of_done` entry of an Atomic Ticket."""
        return cls(
            name=data.get("name", ""),
            command=data.get("command", ()),
            timeout_seconds=data.get("timeout_seconds", 0),
            expected_exit_code=data.get("expected_exit_code", 0),
            output_must_contain=data.get("output_must_contain", ()),
            output_must_not_contain=data.get("output_must_not_contain", ()),
        )


@dataclass(frozen=True)
class Bind:
    """A host directory shown at `target` inside the sandbox, read-only unless `writable`."""

    source: Path
    target: str
    writable: bool = False


@dataclass(frozen=True)
class CheckRun:
    """What one check did: exit code, verdict, why it failed, and the tail of its output."""

    name: str
    command: tuple[str, ...]
    expected_exit_code: int
    exit_code: int | None
    passed: bool
    expectation: str
    duration_ms: int
    stdout: str
    stderr: str
    stdout_bytes: int
    stderr_bytes: int
    timed_out: bool = False
    killed_by: str | None = None
    sandboxed: bool = True


@dataclass
class _Tail:
    """The last `limit` bytes of a stream, its total size, and which needles ever appeared."""

    needles: tuple[bytes, ...] = ()
    limit: int = OUTPUT_TAIL_BYTES
    data: bytearray = field(default_factory=bytearray)
    total: int = 0
    found: set[bytes] = field(default_factory=set)
    _carry: bytes = b""

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        if self.needles:
            # Search the whole stream, not just the tail: keep enough of the previous chunk
            # to catch a needle split across two reads.
            window = self._carry + chunk
            self.found.update(n for n in self.needles if n not in self.found and n in window)
            keep = max(len(n) for n in self.needles) - 1
            self._carry = window[-keep:] if keep else b""
        self.data += chunk
        if len(self.data) > self.limit:
            del self.data[: len(self.data) - self.limit]

    def text(self) -> str:
        body = bytes(self.data).decode("utf-8", errors="replace")
        dropped = self.total - len(self.data)
        if dropped <= 0:
            return body
        return f"[{dropped} earlier bytes omitted; {self.total} bytes in total]\n{body}"


@functools.cache
def _tool(name: str) -> str | None:
    """The absolute path of a system tool; only /usr and /bin count, they are visible inside."""
    if name == "bwrap" and not _enabled():
        return None
    return shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin")


def _enabled() -> bool:
    """False when the operator declared this machine has no sandbox (HAAO_SANDBOX=false).
    This module also runs without Django (agents/tests/test_sandbox_escape.py)."""
    try:
        from django.conf import settings
    except ImportError:
        return True
    return not settings.configured or bool(getattr(settings, "HAAO_SANDBOX", True))


@functools.cache
def sandbox_available() -> bool:
    """True when bubblewrap (and the helpers it needs here) can start a sandbox."""
    needed = ["bwrap", "prlimit"] + (["setpriv"] if os.geteuid() == 0 else [])
    if not all(_tool(name) for name in needed):
        return False
    probe = CheckSpec(name="probe", command=("true",), timeout_seconds=10)
    with tempfile.TemporaryDirectory(prefix="haao-sandbox-probe-") as scratch:
        try:
            run = run_check(worktree=Path(scratch), check=probe,
                            limits=SandboxLimits(timeout_seconds=10))
        except SandboxError:
            return False
    return run.passed


def run_check(*, worktree: Path, check: CheckSpec, limits: SandboxLimits,
              env_extra: Mapping[str, str] | None = None,
              readonly_paths: Sequence[Path] = (),
              allow_unsandboxed: bool = False,
              sandbox_uid: int = DEFAULT_SANDBOX_UID,
              binds: Sequence[Bind] = (), handed_over: bool = False) -> CheckRun:
    """Run `check` in `worktree` inside bubblewrap and judge its outcome. `handed_over`: the
    caller gave the worktree to `sandbox_uid` and wrote nothing since (an earlier check of
    the same run could create only files of that uid), so it is not walked again."""
    worktree = _checked_worktree(worktree)
    readonly = _checked_readonly_paths(readonly_paths, worktree)
    extra = _checked_binds(binds, worktree)
    env = _environment(env_extra)
    timeout = min(float(check.timeout_seconds), float(limits.timeout_seconds))
    bwrap = _tool("bwrap")
    if bwrap is None or not _tool("prlimit") or (os.geteuid() == 0 and not _tool("setpriv")):
        if not allow_unsandboxed:
            raise SandboxUnavailable(
                "bubblewrap (bwrap), prlimit and setpriv are needed to run checks in a "
                "sandbox; install the Debian packages bubblewrap and util-linux, or let the "
                "organization allow unsandboxed checks explicitly.")
        if extra:
            raise SandboxUnavailable(
                "Checks that need a directory at a fixed path (such as the project's prepared "
                "environment) cannot run without bubblewrap; install the Debian package "
                "bubblewrap.")
        return _run_unsandboxed(worktree=worktree, check=check, limits=limits, env=env,
                                timeout=timeout)
    if os.geteuid() == 0 and not handed_over:
        hand_over(worktree, uid=sandbox_uid)
    argv = _bwrap_argv(bwrap=bwrap, worktree=worktree, check=check, limits=limits,
                       env=env, readonly=readonly, sandbox_uid=sandbox_uid, binds=extra)
    outcome = _execute(argv, cwd=None, env={"PATH": SANDBOX_PATH, "LANG": "C.UTF-8"},
                       preexec=None, timeout=timeout, needles=_needles(check))
    if outcome.setup_failure:
        raise SandboxError(f"The sandbox did not start: {outcome.setup_failure}",
                           details={"bwrap": outcome.setup_failure})
    return _judge(check, limits, outcome, timeout=timeout, sandboxed=True)


def _checked_worktree(worktree: Path) -> Path:
    path = Path(worktree)
    if not path.is_absolute():
        raise CheckInvalid(f"The worktree {path} must be an absolute path.",
                           details={"worktree": "must be an absolute path"})
    path = path.resolve()
    if not path.is_dir() or path == Path("/"):
        raise CheckInvalid(f"The worktree {path} is not a directory.",
                           details={"worktree": "is not a directory"})
    return path


def _checked_readonly_paths(paths: Sequence[Path], worktree: Path) -> list[Path]:
    checked: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_absolute() or not path.exists():
            raise CheckInvalid(f"The read-only path {path} must be an existing absolute path.",
                               details={"readonly_paths": f"{path} does not exist"})
        path = Path(os.path.normpath(path))
        if path == Path("/") or worktree.is_relative_to(path):
            # Exposing a parent of the worktree would expose its sibling worktrees too.
            raise CheckInvalid(f"The read-only path {path} contains the worktree.",
                               details={"readonly_paths": f"{path} contains the worktree"})
        if path.is_relative_to(SANDBOX_WORKDIR):
            raise CheckInvalid(f"The read-only path {path} collides with {SANDBOX_WORKDIR}.",
                               details={"readonly_paths": f"{path} collides with the worktree"})
        checked.append(path)
    return checked


# Where a bind may not go: the sandbox's own mounts and the system view.
_RESERVED_TARGETS = ("/", SANDBOX_WORKDIR, SANDBOX_TMP, "/proc", "/dev", *SYSTEM_DIRS)


def _checked_binds(binds: Sequence[Bind], worktree: Path) -> list[Bind]:
    checked: list[Bind] = []
    for bind in binds:
        source = Path(bind.source)
        if not source.is_absolute() or not source.is_dir():
            raise CheckInvalid(f"The bind source {source} must be an existing absolute directory.",
                               details={"binds": f"{source} is not a directory"})
        source = Path(os.path.normpath(source))
        if source == Path("/") or worktree.is_relative_to(source):
            raise CheckInvalid(f"The bind source {source} contains the worktree.",
                               details={"binds": f"{source} contains the worktree"})
        target = bind.target
        if not isinstance(target, str) or not target.startswith("/") or "\0" in target \
                or os.path.normpath(target) != target:
            raise CheckInvalid(f"The bind target {target!r} must be a normalised absolute path.",
                               details={"binds": f"{target!r} is not an absolute path"})
        if any(Path(target).is_relative_to(r) if r != "/" else target == "/"
               for r in _RESERVED_TARGETS) or any(
                   Path(r).is_relative_to(target) for r in _RESERVED_TARGETS if r != "/"):
            raise CheckInvalid(f"The bind target {target} collides with the sandbox's own "
                               "mounts.", details={"binds": f"{target} is reserved"})
        checked.append(Bind(source=source, target=target, writable=bool(bind.writable)))
    return checked


def _environment(env_extra: Mapping[str, str] | None) -> dict[str, str]:
    """A fresh environment: nothing of HAAO's own (secrets, database URL) leaks in."""
    env = {"PATH": SANDBOX_PATH, "HOME": SANDBOX_HOME, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
           "TMPDIR": SANDBOX_TMP}
    for key, value in (env_extra or {}).items():
        if (not isinstance(key, str) or not key or "=" in key or "\0" in key
                or not isinstance(value, str) or "\0" in value):
            raise CheckInvalid(f"The environment variable {key!r} has an invalid name or value.",
                               details={"env_extra": f"{key!r} is invalid"})
        env[key] = value
    return env


def hand_over(worktree: Path, *, uid: int) -> None:
    """Give the worktree to the sandbox user, never following its symlinks out of it."""
    os.chown(worktree, uid, uid, follow_symlinks=False)
    for _root, dirs, files, root_fd in os.fwalk(worktree, follow_symlinks=False):
        for name in (*dirs, *files):
            try:
                if os.stat(name, dir_fd=root_fd, follow_symlinks=False).st_uid != uid:
                    os.chown(name, uid, uid, dir_fd=root_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue


def _bwrap_argv(*, bwrap: str, worktree: Path, check: CheckSpec, limits: SandboxLimits,
                env: Mapping[str, str], readonly: Sequence[Path], sandbox_uid: int,
                binds: Sequence[Bind] = ()) -> list[str]:
    as_root = os.geteuid() == 0
    argv = [bwrap, "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc",
            "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox"]
    if not limits.network:
        argv.append("--unshare-net")
    if as_root:
        # Root cannot be held by RLIMIT_NPROC, so the command drops to an unprivileged uid
        # (setpriv below); a user namespace would map it back to root and is not created.
        # CAP_DAC_READ_SEARCH lets bwrap enter the worktree the sandbox user owns; setpriv's
        # change of uid clears every capability before the check starts.
        argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                 "--cap-add", "CAP_SETPCAP", "--cap-add", "CAP_DAC_READ_SEARCH"]
    else:
        argv += ["--unshare-user", "--disable-userns"]
    for system in SYSTEM_DIRS:
        if os.path.islink(system):
            argv += ["--symlink", os.readlink(system), system]
        elif os.path.isdir(system):
            argv += ["--ro-bind", system, system]
    for secret in _HIDDEN_ETC:
        if os.path.isdir(secret) and not os.path.islink(secret):
            argv += ["--tmpfs", secret, "--remount-ro", secret]
        elif os.path.lexists(secret):
            argv += ["--ro-bind", "/dev/null", secret]
    argv += ["--proc", "/proc", "--dev", "/dev",
             "--size", str(limits.tmp_size_bytes), "--perms", "1777", "--tmpfs", SANDBOX_TMP,
             "--perms", "0777", "--dir", SANDBOX_HOME]
    for path in readonly:
        if path.is_relative_to("/usr") or path.is_relative_to("/etc"):
            continue  # already visible read-only
        for parent in reversed(path.parents):
            if parent not in (Path("/"), Path(SANDBOX_TMP)):
                argv += ["--perms", "0755", "--dir", str(parent)]
        argv += ["--ro-bind", str(path), str(path)]
    for bind in binds:
        argv += ["--bind" if bind.writable else "--ro-bind", str(bind.source), bind.target]
    argv += ["--bind", str(worktree), SANDBOX_WORKDIR, "--chdir", SANDBOX_WORKDIR, "--clearenv"]
    for key, value in env.items():
        argv += ["--setenv", key, value]
    argv.append("--")
    if as_root:
        argv += [str(_tool("setpriv")), f"--reuid={sandbox_uid}", f"--regid={sandbox_uid}",
                 "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
    # The limits are set by prlimit, the last program before the check, rather than in a
    # preexec_fn: that would make Python fork() its whole heap instead of using vfork (~10 ms
    # a check). Inside the namespace the process count is this sandbox's own (see docs).
    argv += [str(_tool("prlimit")), *_prlimit_options(limits), "--", *check.command]
    return argv


def _prlimit_options(limits: SandboxLimits) -> list[str]:
    cpu = int(limits.cpu_seconds)
    # SIGXCPU at the limit, SIGKILL a second later for code that ignores SIGXCPU.
    return [f"--cpu={cpu}:{cpu + 1}", f"--as={limits.memory_bytes}",
            f"--fsize={limits.max_file_size_bytes}", f"--nofile={limits.max_open_files}",
            f"--nproc={limits.max_processes}", "--core=0"]


def _limit_child(limits: SandboxLimits) -> Callable[[], None]:
    """Resource limits applied in the forked child before exec, for unsandboxed runs."""

    def apply() -> None:
        cpu = int(limits.cpu_seconds)
        # SIGXCPU at the limit, SIGKILL a second later for code that ignores SIGXCPU.
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE,
                           (limits.max_file_size_bytes, limits.max_file_size_bytes))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.max_open_files, limits.max_open_files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        # Counted per uid across the machine, and never enforced for root (see docs).
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_processes, limits.max_processes))
        # SIGPIPE and SIGXFSZ get their default actions back from Popen(restore_signals=True).

    return apply


@dataclass
class _Outcome:
    returncode: int | None
    stdout: _Tail
    stderr: _Tail
    duration_ms: int
    timed_out: bool
    setup_failure: str = ""


def _execute(argv: list[str], *, cwd: Path | None, env: Mapping[str, str],
             preexec: Callable[[], None] | None, timeout: float,
             needles: tuple[bytes, ...] = ()) -> _Outcome:
    """Run argv with a bounded reader and a wall-clock timeout that kills its process group."""
    started = time.monotonic()
    proc = subprocess.Popen(  # noqa: S603 - argv is built here, no shell involved
        argv, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, start_new_session=True, preexec_fn=preexec, close_fds=True)
    out, err = _Tail(needles=needles), _Tail(needles=needles)
    tails = {proc.stdout: out, proc.stderr: err}
    deadline = started + timeout
    timed_out = exited = False
    with selectors.DefaultSelector() as selector:
        for stream in tails:
            assert stream is not None
            os.set_blocking(stream.fileno(), False)
            selector.register(stream, selectors.EVENT_READ)
        while selector.get_map():
            now = time.monotonic()
            if not exited and _has_exited(proc.pid):
                exited = True
                # Without a pid namespace a background child may hold the pipes open.
                _kill_group(proc.pid)
                deadline = min(deadline, now + 1)
            if now >= deadline:
                if exited or timed_out:
                    break
                timed_out = True
                _kill_group(proc.pid)
                deadline = now + 2  # then drain what the pipes still hold
            for key, _ in selector.select(timeout=min(0.05, max(0.0, deadline - now))):
                try:
                    chunk = os.read(key.fd, 65536)
                except BlockingIOError:
                    continue
                if chunk:
                    tails[key.fileobj].feed(chunk)  # type: ignore[index]
                else:
                    selector.unregister(key.fileobj)
    # The leader is not reaped yet, so its pid (the group id) cannot have been reused.
    _kill_group(proc.pid)
    _pid, status = os.waitpid(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    for stream in tails:
        assert stream is not None
        stream.close()
    duration_ms = int((time.monotonic() - started) * 1000)
    setup_failure = ""
    if proc.returncode == 1 and bytes(err.data).startswith(b"bwrap: "):
        # bwrap's own errors (bad mount, no namespaces) all exit 1 with a "bwrap:" prefix.
        setup_failure = bytes(err.data).decode("utf-8", "replace").strip()
    return _Outcome(returncode=None if timed_out else proc.returncode, stdout=out, stderr=err,
                    duration_ms=duration_ms, timed_out=timed_out, setup_failure=setup_failure)


def _has_exited(pid: int) -> bool:
    """Whether the child has exited, leaving it unreaped (WNOWAIT) for waitpid to collect."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError as error:  # already gone, or reaped
        if error.errno not in (errno.ESRCH, errno.EPERM):
            raise


def _run_unsandboxed(*, worktree: Path, check: CheckSpec, limits: SandboxLimits,
                     env: dict[str, str], timeout: float) -> CheckRun:
    """The organization's explicit opt-in: limits and a clean environment, no isolation."""
    with tempfile.TemporaryDirectory(prefix="haao-check-") as scratch:
        home = Path(scratch, "home")
        home.mkdir()
        env = {**env, "HOME": str(home), "TMPDIR": scratch}
        argv = list(check.command)
        resolved = shutil.which(argv[0], path=env["PATH"]) if "/" not in argv[0] else argv[0]
        if resolved is None:
            outcome = _Outcome(returncode=127, stdout=_Tail(), stderr=_Tail(), duration_ms=0,
                               timed_out=False)
            outcome.stderr.feed(f"command not found: {argv[0]}\n".encode())
        else:
            argv[0] = resolved
            outcome = _execute(argv, cwd=worktree, env=env, timeout=timeout,
                               preexec=_limit_child(limits), needles=_needles(check))
    return _judge(check, limits, outcome, timeout=timeout, sandboxed=False)


def _judge(check: CheckSpec, limits: SandboxLimits, outcome: _Outcome, *, timeout: float,
           sandboxed: bool) -> CheckRun:
    """The verdict and the one sentence that explains a failure."""
    code = outcome.returncode
    signum = 0
    if code is not None and code < 0:  # killed by a signal, unsandboxed
        signum = -code
    elif sandboxed and code is not None and code - 128 in _SIGNALS:  # bwrap reports 128 + n
        signum = code - 128
    stderr_end = bytes(outcome.stderr.data)[-512:]
    found = outcome.stdout.found | outcome.stderr.found
    killed_by: str | None = None
    if outcome.timed_out:
        killed_by = "timeout"
        expectation = f"timed out after {timeout:g} s"
    elif signum == signal.SIGXCPU or (signum == signal.SIGKILL and
                                      outcome.duration_ms >= limits.cpu_seconds * 1000 - 500):
        # RLIMIT_CPU sends SIGXCPU, then SIGKILL a second later to code that ignores it. The
        # CPU time itself is not visible here: bwrap does not wait for its pid 1, so its
        # rusage never reaches us; a SIGKILL counts only when it came late enough.
        killed_by = "cpu"
        expectation = f"killed: CPU limit ({limits.cpu_seconds:g} s)"
    elif signum == signal.SIGXFSZ:
        killed_by = "file_size"
        expectation = f"killed: file size limit ({limits.max_file_size_bytes} bytes)"
    elif code != check.expected_exit_code and \
            any(sign in bytes(outcome.stderr.data) for sign in _MEMORY_SIGNS):
        killed_by = "memory"
        expectation = f"killed: memory limit ({limits.memory_bytes // 1024**2} MiB)"
    elif code == 127 and (b"failed to execute" in stderr_end
                          or b"command not found" in stderr_end):
        expectation = f"command not found: {check.command[0]}"
    elif code != check.expected_exit_code:
        how = f" (killed by {signal.Signals(signum).name})" if signum else ""
        expectation = f"exit code {code}{how}, expected {check.expected_exit_code}"
    else:
        missing = [t for t in check.output_must_contain if t.encode() not in found]
        present = [t for t in check.output_must_not_contain if t.encode() in found]
        if missing:
            expectation = f"output lacks {missing[0]!r}"
        elif present:
            expectation = f"output contains {present[0]!r}"
        else:
            expectation = ""
    if signum and killed_by not in (None, "timeout"):
        code = None
    return CheckRun(
        name=check.name, command=check.command, expected_exit_code=check.expected_exit_code,
        exit_code=code, passed=expectation == "", expectation=expectation,
        duration_ms=outcome.duration_ms, stdout=outcome.stdout.text(),
        stderr=outcome.stderr.text(), stdout_bytes=outcome.stdout.total,
        stderr_bytes=outcome.stderr.total, timed_out=outcome.timed_out, killed_by=killed_by,
        sandboxed=sandboxed)


def _needles(check: CheckSpec) -> tuple[bytes, ...]:
    return tuple({t.encode() for t in (*check.output_must_contain,
                                       *check.output_must_not_contain)})


_SIGNALS = {int(s) for s in signal.Signals}
