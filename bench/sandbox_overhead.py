"""Wall time of `true` run bare versus through the sandbox: the cost HAAO adds to each check."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.sandbox import CheckSpec, SandboxLimits, run_check, sandbox_available


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def time_bare(runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(["/bin/true"], check=True)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def time_sandboxed(runs: int, worktree: Path) -> list[float]:
    check = CheckSpec(name="true", command=("/bin/true",), timeout_seconds=10)
    limits = SandboxLimits()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        run = run_check(worktree=worktree, check=check, limits=limits)
        samples.append((time.perf_counter() - started) * 1000)
        if not run.passed:
            raise SystemExit(f"sandboxed true failed: {run.expectation}\n{run.stderr}")
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    if not sandbox_available():
        raise SystemExit("bubblewrap cannot start a sandbox here")
    with tempfile.TemporaryDirectory(prefix="haao-bench-") as scratch:
        time_bare(10), time_sandboxed(10, Path(scratch))  # warm caches
        bare = time_bare(args.runs)
        sandboxed = time_sandboxed(args.runs, Path(scratch))
    bare_median, sandbox_median = statistics.median(bare), statistics.median(sandboxed)
    print(f"runs={args.runs}")
    print(f"bare_median_ms={bare_median:.2f}")
    print(f"bare_p95_ms={percentile(bare, 0.95):.2f}")
    print(f"sandbox_median_ms={sandbox_median:.2f}")
    print(f"sandbox_p95_ms={percentile(sandboxed, 0.95):.2f}")
    print(f"overhead_median_ms={sandbox_median - bare_median:.2f}")
    print(f"overhead_p95_ms={percentile(sandboxed, 0.95) - percentile(bare, 0.95):.2f}")


if __name__ == "__main__":
    main()
