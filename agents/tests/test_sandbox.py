"""Definition-of-Done checks in the sandbox: verdicts, explanations, output capping, inputs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from agents import sandbox
from agents.sandbox import (
    OUTPUT_TAIL_BYTES,
    CheckInvalid,
    CheckSpec,
    SandboxLimits,
    SandboxUnavailable,
    run_check,
    sandbox_available,
)

PY = "/usr/bin/python3"
LIMITS = SandboxLimits(timeout_seconds=30, cpu_seconds=20, memory_bytes=512 * 1024**2,
                       max_processes=64, max_file_size_bytes=64 * 1024**2, max_open_files=256)

pytestmark = pytest.mark.usefixtures("require_sandbox")


@pytest.fixture
def worktree(tmp_path: Path) -> Path:
    path = tmp_path / "worktree"
    path.mkdir()
    (path / "README").write_text("hello from the worktree\n")
    return path


def check(*command: str, **kwargs: object) -> CheckSpec:
    kwargs.setdefault("timeout_seconds", 20)
    return CheckSpec(name="check", command=command, **kwargs)  # type: ignore[arg-type]


def python(code: str, **kwargs: object) -> CheckSpec:
    return check(PY, "-c", code, **kwargs)


def test_a_command_that_meets_its_expectations_passes(worktree: Path) -> None:
    run = run_check(worktree=worktree, limits=LIMITS, check=check(
        "sh", "-c", "cat README; echo 3 passed", output_must_contain=("passed", "hello"),
        output_must_not_contain=("failed",)))

    assert run.passed and run.expectation == ""
    assert run.exit_code == 0 and run.sandboxed and not run.timed_out
    assert "3 passed" in run.stdout
    assert run.duration_ms < 5000


def test_a_wrong_exit_code_fails_saying_which_code_was_expected(worktree: Path) -> None:
    run = run_check(worktree=worktree, limits=LIMITS, check=check("sh", "-c", "exit 1"))

    assert not run.passed
    assert run.exit_code == 1
    assert run.expectation == "exit code 1, expected 0"


def test_an_expected_nonzero_exit_code_passes(worktree: Path) -> None:
    run = run_check(worktree=worktree, limits=LIMITS,
                    check=check("sh", "-c", "exit 3", expected_exit_code=3))

    assert run.passed and run.exit_code == 3


def test_missing_required_output_fails_naming_the_text(worktree: Path) -> None:
    run = run_check(worktree=worktree, limits=LIMITS,
                    check=check("echo", "all good", output_must_contain=("OK",)))

    assert not run.passed
    assert run.expectation == "output lacks 'OK'"


def test_forbidden_output_on_stderr_fails_naming_the_text(worktree: Path) -> None:
    run = run_check(worktree=worktree, limits=LIMITS, check=check(
        "sh", "-c", "echo 1 FAILED >&2", output_must_not_contain=("FAILED",)))

    assert not run.passed
    assert run.expectation == "output contains 'FAILED'"
    assert "1 FAILED" in run.stderr


def test_expected_text_is_found_even_when_it_scrolled_out_of_the_kept_tail(
        worktree: Path) -> None:
    code = "print('SUMMARY: OK'); print('x' * 100); [print('y' * 99) for _ in range(2000)]"
    run = run_check(worktree=worktree, limits=LIMITS,
                    check=python(code, output_must_contain=("SUMMARY: OK",),
                                 output_must_not_contain=("NEVER",)))

    assert run.passed, run.expectation
    assert "SUMMARY: OK" not in run.stdout


def test_a_check_past_its_timeout_fails_as_timed_out(worktree: Path) -> None:
    run = run_check(worktree=worktree, limits=LIMITS, check=check("sleep", "30", timeout_seconds=1))

    assert not run.passed
    assert run.timed_out and run.exit_code is None and run.killed_by == "timeout"
    assert run.expectation == "timed out after 1 s"
    assert run.duration_ms < 2000


def test_the_policy_timeout_caps_the_checks_own_timeout(worktree: Path) -> None:
    limits = SandboxLimits(timeout_seconds=1)
    run = run_check(worktree=worktree, limits=limits, check=check("sleep", "30",
                                                                  timeout_seconds=600))

    assert run.timed_out and run.expectation == "timed out after 1 s"


def test_an_unknown_program_fails_as_command_not_found(worktree: Path) -> None:
    run = run_check(worktree=worktree, limits=LIMITS, check=check("pytset", "-q"))

    assert not run.passed
    assert run.expectation == "command not found: pytset"


def test_output_is_capped_to_the_last_16_kib_with_the_total_noted(worktree: Path) -> None:
    code = ("import sys; sys.stdout.write('a' * 3_000_000 + 'THE END'); "
            "sys.stderr.write('e' * 50_000)")
    run = run_check(worktree=worktree, limits=LIMITS, check=python(code))

    assert run.passed
    assert run.stdout_bytes == 3_000_007 and run.stderr_bytes == 50_000
    assert run.stdout.endswith("THE END")
    assert run.stdout.startswith(f"[{3_000_007 - OUTPUT_TAIL_BYTES} earlier bytes omitted; "
                                 "3000007 bytes in total]\n")
    assert len(run.stdout) < OUTPUT_TAIL_BYTES + 100
    assert len(run.stderr) < OUTPUT_TAIL_BYTES + 100


def test_a_gigabyte_of_output_does_not_grow_haaos_memory(worktree: Path) -> None:
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run = run_check(worktree=worktree, limits=LIMITS,
                    check=check("sh", "-c", "head -c 1000000000 /dev/zero"))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    assert run.passed and run.stdout_bytes == 1_000_000_000
    assert after - before < 50 * 1024  # kilobytes: far below the gigabyte printed


def test_the_worktree_is_the_writable_working_directory(worktree: Path) -> None:
    run = run_check(worktree=worktree, limits=LIMITS, check=check(
        "sh", "-c", "pwd; cat README; echo built > out.txt"))

    assert run.passed, run.stderr
    assert run.stdout.splitlines()[0] == "/workspace"
    assert (worktree / "out.txt").read_text() == "built\n"


def test_home_and_tmp_are_private_and_writable(worktree: Path) -> None:
    run = run_check(worktree=worktree, limits=LIMITS, check=check(
        "sh", "-c", 'echo "$HOME $TMPDIR"; touch "$HOME/.cache" /tmp/scratch && echo writable'))

    assert run.passed, run.stderr
    assert "/tmp/home /tmp" in run.stdout and "writable" in run.stdout
    assert not Path("/tmp/scratch").exists()


def test_env_extra_reaches_the_check(worktree: Path) -> None:
    run = run_check(worktree=worktree, limits=LIMITS, env_extra={"CI": "1", "PYTHONHASHSEED": "0"},
                    check=check("sh", "-c", "echo ci=$CI seed=$PYTHONHASHSEED"))

    assert "ci=1 seed=0" in run.stdout


def test_a_readonly_path_is_visible_but_not_writable(worktree: Path, tmp_path: Path) -> None:
    toolchain = tmp_path / "toolchain"
    (toolchain / "bin").mkdir(parents=True)
    tool = toolchain / "bin" / "greet"
    tool.write_text("#!/bin/sh\necho hello from the toolchain\n")
    tool.chmod(0o755)
    run = run_check(worktree=worktree, limits=LIMITS, readonly_paths=[toolchain],
                    env_extra={"PATH": f"{toolchain}/bin:/usr/bin:/bin"},
                    check=check("sh", "-c", f"greet; touch {toolchain}/bin/x || echo refused"))

    assert "hello from the toolchain" in run.stdout
    assert "refused" in run.stdout
    assert not (toolchain / "bin" / "x").exists()


def test_the_check_spec_is_read_from_an_atomic_ticket_entry() -> None:
    spec = CheckSpec.from_spec({"name": "unit tests", "command": ["pytest", "-q"],
                                "timeout_seconds": 60, "output_must_contain": ["passed"]})

    assert spec.command == ("pytest", "-q")
    assert spec.expected_exit_code == 0
    assert spec.output_must_contain == ("passed",)


@pytest.mark.parametrize(("data", "problem"), [
    ({"name": "c", "command": "pytest -q", "timeout_seconds": 5}, "command"),
    ({"name": "c", "command": [], "timeout_seconds": 5}, "command"),
    ({"name": "c", "command": ["a\0b"], "timeout_seconds": 5}, "command"),
    ({"name": "c", "command": ["true"], "timeout_seconds": 0}, "timeout_seconds"),
    ({"name": "c", "command": ["true"], "timeout_seconds": "5"}, "timeout_seconds"),
    ({"name": "c", "command": ["true"], "timeout_seconds": 5, "expected_exit_code": 300},
     "expected_exit_code"),
    ({"name": "c", "command": ["true"], "timeout_seconds": 5, "output_must_contain": "OK"},
     "output_must_contain"),
    ({"name": "", "command": ["true"], "timeout_seconds": 5}, "name"),
])
def test_a_malformed_check_is_rejected_naming_the_field(data: dict, problem: str) -> None:
    with pytest.raises(CheckInvalid) as raised:
        CheckSpec.from_spec(data)

    assert problem in raised.value.details
    assert raised.value.status == 400


def test_malformed_limits_are_rejected_naming_the_limit() -> None:
    with pytest.raises(CheckInvalid, match="memory_bytes"):
        SandboxLimits(memory_bytes=1024)
    with pytest.raises(CheckInvalid, match="max_processes"):
        SandboxLimits(max_processes="many")  # type: ignore[arg-type]


def test_a_bad_worktree_or_readonly_path_is_rejected_before_anything_runs(
        worktree: Path, tmp_path: Path) -> None:
    marker = check("sh", "-c", "touch ran")
    with pytest.raises(CheckInvalid, match="absolute"):
        run_check(worktree=Path("relative/dir"), check=marker, limits=LIMITS)
    with pytest.raises(CheckInvalid, match="not a directory"):
        run_check(worktree=tmp_path / "missing", check=marker, limits=LIMITS)
    with pytest.raises(CheckInvalid, match="contains the worktree"):
        run_check(worktree=worktree, check=marker, limits=LIMITS, readonly_paths=[tmp_path])
    with pytest.raises(CheckInvalid, match="must be an existing absolute path"):
        run_check(worktree=worktree, check=marker, limits=LIMITS,
                  readonly_paths=[tmp_path / "nope"])
    with pytest.raises(CheckInvalid, match="environment variable"):
        run_check(worktree=worktree, check=marker, limits=LIMITS, env_extra={"A=B": "x"})
    assert not (worktree / "ran").exists()


def test_without_bubblewrap_it_refuses_unless_unsandboxed_runs_are_allowed(
        worktree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "_tool", lambda name: None)
    monkeypatch.setenv("HAAO_SANDBOX_TEST_SECRET", "leaked")

    with pytest.raises(SandboxUnavailable, match="bubblewrap"):
        run_check(worktree=worktree, check=check("true"), limits=LIMITS)

    run = run_check(worktree=worktree, limits=LIMITS, allow_unsandboxed=True,
                    check=check("sh", "-c", "env; pwd"))
    assert run.passed and not run.sandboxed
    assert "HAAO_SANDBOX_TEST_SECRET" not in run.stdout
    assert "SECRET_KEY" not in run.stdout
    assert str(worktree) in run.stdout


def test_unsandboxed_runs_still_enforce_the_timeout_and_find_missing_commands(
        worktree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "_tool", lambda name: None)

    slow = run_check(worktree=worktree, limits=LIMITS, allow_unsandboxed=True,
                     check=check("sleep", "30", timeout_seconds=1))
    missing = run_check(worktree=worktree, limits=LIMITS, allow_unsandboxed=True,
                        check=check("pytset"))

    assert slow.timed_out and slow.duration_ms < 2000 and not slow.sandboxed
    assert missing.expectation == "command not found: pytset"


def test_sandbox_available_reports_a_working_bubblewrap() -> None:
    assert sandbox_available() is True
    assert sys.platform == "linux"
