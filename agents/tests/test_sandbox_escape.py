"""Escape suite: code under test tries to leave the sandbox or exhaust the host, and cannot."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.sandbox import CheckRun, CheckSpec, SandboxLimits, run_check

PY = "/usr/bin/python3"
REPO = Path(__file__).resolve().parents[2]
LIMITS = SandboxLimits(timeout_seconds=20, cpu_seconds=10, memory_bytes=256 * 1024**2,
                       max_processes=32, max_file_size_bytes=1024**2, max_open_files=64)


@pytest.fixture(autouse=True)
def escape_tools(require_sandbox: None) -> None:
    """The escape attempts run in a Python the sandbox can see."""
    if not Path(PY).exists():
        pytest.skip(f"{PY} is needed to run the escape attempts")


@pytest.fixture
def host(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """A fake HAAO installation next to the worktree: data dir, .env, database, other project."""
    marker = f"host-secret-{uuid.uuid4().hex}"
    haao = tmp_path / "haao"
    (haao / "data").mkdir(parents=True)
    (haao / ".env").write_text(f"SECRET_KEY={marker}\n")
    (haao / "data" / "db.sqlite3").write_text(f"SQLite format 3 {marker}")
    other = tmp_path / "worktrees" / "other-project"
    other.mkdir(parents=True)
    (other / "secret.py").write_text(f"TOKEN = '{marker}'\n")
    worktree = tmp_path / "worktrees" / "this-project"
    worktree.mkdir()
    host_tmp = Path("/tmp") / f"haao-escape-{uuid.uuid4().hex}"
    yield {"marker": Path(marker), "haao": haao, "other": other, "worktree": worktree,
           "host_tmp": host_tmp}
    if host_tmp.exists():
        shutil.rmtree(host_tmp) if host_tmp.is_dir() else host_tmp.unlink()


def attempt(worktree: Path, code: str, limits: SandboxLimits = LIMITS,
            timeout: float = 15) -> CheckRun:
    return run_check(worktree=worktree, limits=limits, check=CheckSpec(
        name="escape", command=(PY, "-c", code), timeout_seconds=timeout))


def gone(tag: str, *, within: float = 5.0) -> bool:
    """Whether no host process mentions `tag` once the kernel has reaped the sandbox's (a
    killed process tree takes a moment to disappear from /proc)."""
    deadline = time.monotonic() + within
    while host_processes_mentioning(tag) and time.monotonic() < deadline:
        time.sleep(0.05)
    return host_processes_mentioning(tag) == []


def host_processes_mentioning(text: str) -> list[int]:
    """Pids on the host whose command line contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


# --- network ---------------------------------------------------------------------------

def test_the_check_cannot_reach_a_listener_on_the_hosts_loopback(host: dict[str, Path]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        server.settimeout(0.2)
        run = attempt(host["worktree"], f"""
import socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2)
    print("CONNECTED")
except OSError as error:
    print("blocked:", type(error).__name__)
""")
        with pytest.raises(TimeoutError):
            server.accept()

    assert "blocked: ConnectionRefusedError" in run.stdout
    assert "CONNECTED" not in run.stdout


def test_the_check_cannot_resolve_names(host: dict[str, Path]) -> None:
    run = attempt(host["worktree"], """
import socket
try:
    socket.getaddrinfo("example.com", 443)
    print("RESOLVED")
except OSError as error:
    print("no dns:", type(error).__name__)
""")

    assert "no dns: gaierror" in run.stdout


def test_network_can_be_allowed_explicitly(host: dict[str, Path]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        run = attempt(host["worktree"], f"""
import socket
socket.create_connection(("127.0.0.1", {port}), timeout=2)
print("CONNECTED")
""", limits=SandboxLimits(network=True))

    assert "CONNECTED" in run.stdout


# --- processes, memory, CPU, time --------------------------------------------------------

def test_a_fork_bomb_is_held_at_the_process_limit_and_the_host_stays_responsive(
        host: dict[str, Path]) -> None:
    tag = f"forkbomb-{uuid.uuid4().hex}"
    latencies: list[float] = []
    done = threading.Event()

    def probe_host() -> None:
        while not done.is_set():
            started = time.monotonic()
            subprocess.run(["true"], check=True)
            latencies.append(time.monotonic() - started)
            time.sleep(0.1)

    prober = threading.Thread(target=probe_host)
    prober.start()
    try:
        run = attempt(host["worktree"], f"""
import os, sys
tag = "{tag}"
refused = False
while True:
    try:
        os.fork()
    except OSError as error:
        if not refused:
            refused = True
            print("refused:", error.errno, flush=True)
""", timeout=3)
    finally:
        done.set()
        prober.join()

    assert run.timed_out and run.killed_by == "timeout"
    assert run.duration_ms < 4000
    assert "refused: 11" in run.stdout  # EAGAIN: the process limit held
    assert latencies and max(latencies) < 1.0
    assert gone(tag)


def test_a_memory_bomb_fails_at_the_memory_limit(host: dict[str, Path]) -> None:
    run = attempt(host["worktree"], """
chunks = [bytearray(128 * 1024 * 1024)]
print("128 MiB fine", flush=True)
chunks.append(bytearray(200 * 1024 * 1024))
print("EXCEEDED")
""")

    assert "128 MiB fine" in run.stdout and "EXCEEDED" not in run.stdout
    assert not run.passed
    assert run.killed_by == "memory"
    assert run.expectation == "killed: memory limit (256 MiB)"


def test_a_cpu_spin_is_killed_at_the_cpu_limit(host: dict[str, Path]) -> None:
    run = attempt(host["worktree"], "while True: pass",
                  limits=SandboxLimits(cpu_seconds=2, timeout_seconds=20))

    assert run.killed_by == "cpu" and not run.timed_out
    assert run.expectation == "killed: CPU limit (2 s)"
    assert run.exit_code is None
    assert run.duration_ms < 10_000  # well before the 20 s wall timeout


def test_the_cpu_limit_holds_within_a_second_of_its_value(host: dict[str, Path]) -> None:
    # A parent inside the sandbox measures the spinning child's CPU time exactly (wait4);
    # wall time would also count time the busy host did not give it.
    run = attempt(host["worktree"], """
import os, signal, subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
_, status, usage = os.wait4(child.pid, 0)
print(signal.Signals(os.WTERMSIG(status)).name, round(usage.ru_utime + usage.ru_stime, 2))
""", limits=SandboxLimits(cpu_seconds=2, timeout_seconds=20))

    name, cpu = run.stdout.split()
    assert name == "SIGXCPU"
    assert 1.0 <= float(cpu) <= 3.0


def test_sleeping_past_the_timeout_kills_the_check_and_its_background_children(
        host: dict[str, Path]) -> None:
    tag = f"{uuid.uuid4().int % 10**6}.{uuid.uuid4().int % 10**6}"
    run = run_check(worktree=host["worktree"], limits=LIMITS, check=CheckSpec(
        name="sleeper", command=("sh", "-c", f"sleep 1{tag} & sleep 2{tag}"), timeout_seconds=1))

    assert run.timed_out and run.expectation == "timed out after 1 s"
    assert run.duration_ms < 2000
    assert gone(f"1{tag}") and gone(f"2{tag}")


def test_a_file_bigger_than_the_limit_cannot_be_written(host: dict[str, Path]) -> None:
    run = attempt(host["worktree"], """
import errno
with open("big.bin", "wb") as f:
    f.write(b"x" * (1024 * 1024))
    print("1 MiB written", flush=True)
    try:
        f.write(b"x")
        f.flush()
        print("EXCEEDED")
    except OSError as error:
        print("refused:", errno.errorcode[error.errno])
""")

    assert "1 MiB written" in run.stdout
    assert "refused: EFBIG" in run.stdout
    assert (host["worktree"] / "big.bin").stat().st_size == 1024 * 1024


def test_a_shell_writing_past_the_file_limit_is_killed_by_sigxfsz(
        host: dict[str, Path]) -> None:
    run = run_check(worktree=host["worktree"], limits=LIMITS, check=CheckSpec(
        name="dd", command=("sh", "-c", "head -c 3000000 /dev/zero > big.bin"),
        timeout_seconds=10))

    assert not run.passed and run.killed_by == "file_size"
    assert (host["worktree"] / "big.bin").stat().st_size <= 1024 * 1024


def test_opening_too_many_files_fails_with_emfile(host: dict[str, Path]) -> None:
    run = attempt(host["worktree"], """
import errno
files = []
try:
    for _ in range(1000):
        files.append(open("/dev/null"))
    print("EXCEEDED")
except OSError as error:
    print("refused after", len(files), errno.errorcode[error.errno])
""")

    assert "refused: " not in run.stdout and "EMFILE" in run.stdout
    opened = int(run.stdout.split()[2])
    assert 50 <= opened < 64


# --- what HAAO holds --------------------------------------------------------------------

def test_haaos_environment_does_not_reach_the_check(
        host: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAAO_ESCAPE_MARKER", str(host["marker"]))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-should-not-leak")
    monkeypatch.setenv("DATABASE_URL", "postgres://haao:pw@db/haao")
    run = attempt(host["worktree"], "import os; print(sorted(os.environ))")

    names = set(eval(run.stdout))  # noqa: S307 - a list printed by our own one-liner
    assert names <= {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PWD", "LC_CTYPE"}
    assert str(host["marker"]) not in run.stdout


def test_haaos_files_and_other_worktrees_are_invisible(host: dict[str, Path]) -> None:
    targets = [host["haao"] / ".env", host["haao"] / "data" / "db.sqlite3",
               host["other"] / "secret.py", REPO / "haao" / "settings" / "__init__.py",
               Path("/root"), Path("/home"), Path("/srv"), Path("/var"), Path("/work")]
    run = attempt(host["worktree"], f"""
import os
for path in {[str(t) for t in targets]!r}:
    try:
        with open(path, "rb") as f:
            print("READ", path, f.read())
    except OSError as error:
        print("hidden", path, os.path.exists(path), type(error).__name__)
print(sorted(os.listdir("/")))
""")

    assert str(host["marker"]) not in run.stdout + run.stderr
    assert "READ" not in run.stdout
    assert run.stdout.count("hidden") == len(targets)
    assert "True" not in run.stdout.replace("'", "").split("[")[0]  # none even exists inside
    visible_root = json.loads(run.stdout.strip().splitlines()[-1].replace("'", '"'))
    assert set(visible_root) <= {"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc",
                                 "sbin", "tmp", "usr", "workspace"}


def test_password_hashes_in_etc_are_masked(host: dict[str, Path]) -> None:
    run = attempt(host["worktree"], """
for path in ("/etc/shadow", "/etc/gshadow"):
    try:
        print(path, len(open(path).read()))
    except OSError as error:
        print(path, "masked", type(error).__name__)
print("passwd", len(open("/etc/passwd").read()) > 0)
""")

    assert "/etc/shadow masked" in run.stdout
    assert "/etc/gshadow masked" in run.stdout
    assert "passwd True" in run.stdout


def test_writes_outside_the_worktree_do_not_reach_the_host(host: dict[str, Path]) -> None:
    env_before = (host["haao"] / ".env").read_bytes()
    targets = ["/usr/escape", "/etc/escape", str(host["haao"] / ".env"),
               str(host["haao"] / "escape"), str(host["host_tmp"]), str(host["other"] / "x")]
    run = attempt(host["worktree"], f"""
import os
for path in {targets!r}:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write("pwned")
        print("wrote (inside only)", path)
    except OSError as error:
        print("refused", path, type(error).__name__)
""")

    assert "refused /usr/escape" in run.stdout and "refused /etc/escape" in run.stdout
    assert not Path("/usr/escape").exists() and not Path("/etc/escape").exists()
    assert (host["haao"] / ".env").read_bytes() == env_before
    assert not (host["haao"] / "escape").exists()
    assert not host["host_tmp"].exists()
    assert not (host["other"] / "x").exists()


def test_symlinks_in_the_worktree_do_not_lead_out_of_the_sandbox(host: dict[str, Path]) -> None:
    worktree = host["worktree"]
    (worktree / "hostname").symlink_to("/etc/hostname")
    (worktree / "dotenv").symlink_to(host["haao"] / ".env")
    (worktree / "other").symlink_to(host["other"])
    env_before = (host["haao"] / ".env").read_bytes()
    hostname_before = Path("/etc/hostname").read_bytes()
    run = attempt(worktree, """
import os
for name in ("hostname", "dotenv", "other/secret.py"):
    try:
        print("read", name, open(name).read().strip())
    except OSError as error:
        print("unreadable", name, type(error).__name__)
    try:
        with open(name, "a") as f:
            f.write("pwned")
        print("wrote", name)
    except OSError as error:
        print("unwritable", name, type(error).__name__)
""")

    assert str(host["marker"]) not in run.stdout + run.stderr
    assert "unreadable dotenv" in run.stdout and "unreadable other/secret.py" in run.stdout
    assert "unwritable hostname" in run.stdout and "unwritable dotenv" in run.stdout
    assert (host["haao"] / ".env").read_bytes() == env_before
    assert Path("/etc/hostname").read_bytes() == hostname_before
    assert os.readlink(worktree / "dotenv") == str(host["haao"] / ".env")  # host owner untouched
    assert (host["haao"] / ".env").stat().st_uid == os.geteuid()


def test_the_check_sees_only_its_own_processes(host: dict[str, Path]) -> None:
    run = attempt(host["worktree"], "import os; print(sorted(int(p) for p in os.listdir('/proc')"
                  " if p.isdigit()))")

    assert max(json.loads(run.stdout)) < 10


def test_the_check_runs_without_privileges(host: dict[str, Path]) -> None:
    run = attempt(host["worktree"], """
import os
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print("uid", os.getuid(), os.geteuid())
print("caps", status["CapEff"].strip(), status["CapBnd"].strip(), status["NoNewPrivs"].strip())
""")

    assert "uid 0" not in run.stdout
    assert "caps 0000000000000000 0000000000000000 1" in run.stdout


# --- the same limits when HAAO itself runs as an unprivileged user -------------------------

@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become an unprivileged user")
def test_an_unprivileged_haao_contains_a_fork_bomb_too(tmp_path: Path) -> None:
    # Run the module under the system Python as uid 65534, as a non-root worker would; the
    # sandbox then uses a user namespace instead of setpriv. haao.errors is copied next to it
    # so the import does not pull in Django and Celery.
    base = Path("/tmp") / f"haao-unprivileged-{uuid.uuid4().hex}"
    try:
        for package in ("agents", "haao"):
            (base / "code" / package).mkdir(parents=True)
            (base / "code" / package / "__init__.py").write_text("")
        shutil.copy(REPO / "agents" / "sandbox.py", base / "code" / "agents" / "sandbox.py")
        shutil.copy(REPO / "haao" / "errors.py", base / "code" / "haao" / "errors.py")
        (base / "worktree").mkdir()
        for path in (base, base / "worktree"):
            os.chown(path, 65534, 65534)
        script = f"""
import json, os
from pathlib import Path
from agents.sandbox import CheckSpec, SandboxLimits, run_check
code = ("import os\\nwhile True:\\n    try: os.fork()\\n"
        "    except OSError as e: print(e.errno, flush=True); break")
run = run_check(worktree=Path("{base}/worktree"), limits=SandboxLimits(max_processes=16),
                check=CheckSpec(name="bomb", command=("{PY}", "-c", code), timeout_seconds=3))
probe = run_check(worktree=Path("{base}/worktree"), limits=SandboxLimits(),
                  check=CheckSpec(name="id", command=("sh", "-c", "id -u; ls /"),
                                  timeout_seconds=5))
print(json.dumps({{"bomb": run.stdout, "timed_out": run.timed_out, "ms": run.duration_ms,
                  "probe": probe.stdout, "euid": os.geteuid()}}))
"""
        result = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", PY, "-c", script],
            cwd=base / "code", env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(base / "code")},
            capture_output=True, text=True, timeout=30)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["euid"] == 65534
    assert "11" in outcome["bomb"].split()  # EAGAIN in at least one process
    assert outcome["ms"] < 4000
    assert "workspace" in outcome["probe"] and "root" not in outcome["probe"]
