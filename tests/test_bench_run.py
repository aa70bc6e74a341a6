"""`make bench`'s runner (bench/run.py): figures read from a script, blocks written in markdown."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.run import (
    REGISTRY,
    machine_info,
    parse_figures,
    render_figures,
    render_machine,
    replace_block,
    select,
)

DOC = """# Benchmarks

Intro prose.

## Ticket list

Prose about the list.

<!-- bench:ticket_list -->
old figures
<!-- /bench:ticket_list -->

History that stays.

## Sandbox overhead

Why the sandbox costs what it costs.

## Guardrails

Prose.
"""


def test_the_figures_are_the_trailing_name_value_lines_in_order() -> None:
    output = "seeded 1000 tickets\nnote=an early line\nprogress...\n\nruns=20\np95_ms=4.10\n\n"
    assert parse_figures(output) == [("runs", "20"), ("p95_ms", "4.10")]


def test_a_value_may_itself_hold_an_equals_sign() -> None:
    assert parse_figures("workers=2x--concurrency=1\n") == [("workers", "2x--concurrency=1")]


def test_output_ending_in_prose_has_no_figures() -> None:
    assert parse_figures("runs=20\nTraceback (most recent call last):\n") == []
    assert parse_figures("") == []


def test_an_existing_block_is_replaced_and_the_prose_around_it_kept() -> None:
    text = replace_block(DOC, "ticket_list", "new figures\n")
    assert "old figures" not in text
    assert "<!-- bench:ticket_list -->\nnew figures\n<!-- /bench:ticket_list -->" in text
    assert "Prose about the list." in text and "History that stays." in text
    assert replace_block(text, "ticket_list", "new figures\n") == text


def test_a_missing_block_goes_at_the_end_of_its_section() -> None:
    text = replace_block(DOC, "sandbox_overhead", "| a | b |", section="## Sandbox overhead")
    costs = text.index("Why the sandbox costs")
    block = text.index("<!-- bench:sandbox_overhead -->")
    assert costs < block < text.index("## Guardrails")
    assert "<!-- /bench:sandbox_overhead -->\n\n## Guardrails" in text


def test_a_block_of_the_last_section_or_of_no_section_goes_at_the_end() -> None:
    last = replace_block(DOC, "guardrails", "x", section="## Guardrails")
    assert last.endswith("Prose.\n\n<!-- bench:guardrails -->\nx\n<!-- /bench:guardrails -->\n")
    nowhere = replace_block(DOC, "cost_sim", "y", section="## Cost simulation")
    assert nowhere.endswith("<!-- bench:cost_sim -->\ny\n<!-- /bench:cost_sim -->\n")


def test_the_machine_block_goes_before_the_first_section() -> None:
    text = replace_block(DOC, "machine", "2 cores", before_first_section=True)
    assert text.startswith("# Benchmarks\n\nIntro prose.\n\n<!-- bench:machine -->\n2 cores\n"
                           "<!-- /bench:machine -->\n\n## Ticket list")


def test_a_block_without_its_end_marker_is_refused_rather_than_mangled() -> None:
    broken = DOC.replace("<!-- /bench:ticket_list -->\n", "")
    with pytest.raises(ValueError, match="ticket_list"):
        replace_block(broken, "ticket_list", "new")


def test_a_block_shows_the_command_the_date_and_a_table() -> None:
    body = render_figures(runner="make bench", command="python bench/x.py --runs 2",
                          when="2026-11-24 13:00 UTC", seconds=3.2,
                          figures=[("runs", "2"), ("odd", "a|b")])
    assert "`make bench` on 2026-11-24 13:00 UTC, in 3 s" in body
    assert "```sh\npython bench/x.py --runs 2\n```" in body
    assert "| name | value |\n|---|---|\n| `runs` | 2 |\n| `odd` | a\\|b |" in body


def test_machine_info_reads_cores_memory_cpu_and_os(tmp_path: Path) -> None:
    (tmp_path / "meminfo").write_text("MemTotal:       24576000 kB\nMemFree: 1 kB\n")
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nmodel name\t: AMD EPYC 7B13\n")
    (tmp_path / "loadavg").write_text("0.52 0.40 0.31 1/200 4242\n")
    release = tmp_path / "os-release"
    release.write_text('NAME="Debian"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
    info = machine_info(proc=tmp_path, os_release=release, cores=2)
    assert info["cores"] == "2"
    assert info["memory"] == "23.4 GiB"
    assert info["CPU"] == "AMD EPYC 7B13"
    assert info["OS"] == "Debian GNU/Linux 12 (bookworm)"
    assert info["Python"].count(".") == 2
    assert info["load average at the start (1, 5, 15 min)"] == "0.52, 0.40, 0.31"


def test_the_header_warns_when_the_machine_was_busy() -> None:
    info = {"cores": "2", "load average at the start (1, 5, 15 min)": "9.60, 7.68, 4.51"}
    busy = render_machine(info, command="make bench", when="today", commit="abc1234")
    assert "| cores | 2 |" in busy and "| git commit | abc1234 |" in busy
    assert "The machine was busy" in busy
    info["load average at the start (1, 5, 15 min)"] = "0.40, 0.50, 0.60"
    assert "busy" not in render_machine(info, command="make bench", when="today", commit="x")


def test_every_benchmark_script_is_registered_with_a_quick_mode_or_a_reason() -> None:
    scripts = {path.stem for path in Path("bench").glob("*.py")} - {"__init__", "run",
                                                                   "scratch"}
    names = {bench.name for bench in REGISTRY}
    assert scripts <= names
    assert "cost_sim" in names
    # Each of these says why in the registry: nothing to shrink.
    assert [bench.name for bench in REGISTRY if bench.quick is None] == ["first_run", "recovery"]


def test_only_and_skip_pick_benchmarks_and_unknown_names_are_refused() -> None:
    assert [bench.name for bench in select("loop,live", "live")] == ["loop"]
    with pytest.raises(SystemExit, match="nope"):
        select("nope", "")
