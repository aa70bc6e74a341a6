"""The coder's prompt, built deterministically from an Atomic Ticket and what went wrong before."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.edits import CLOSE, DIVIDER, OPEN

# Enough of a failing test run's end for the summary and the first traceback, small enough
# for the context window of a 7B local model.
TAIL_CHARS = 3000
ERROR_CHARS = 2000

SYSTEM_PROMPT = f"""\
You are a careful software engineer. You receive one small, self-contained ticket and change
the code so that every check of its Definition of Done passes.

Answer ONLY with edit blocks in this exact format (each marker on its own line, starting at
the first column). Text outside blocks is ignored.

Replace one exact excerpt of an existing file (the SEARCH lines must occur exactly once):
{OPEN} SEARCH <path>
<lines copied exactly from the file>
{DIVIDER}
<the lines to put instead>
{CLOSE} REPLACE

Create a file or replace its whole content:
{OPEN} FILE <path>
<the full content>
{CLOSE} END

Delete a file:
{OPEN} DELETE <path>
{CLOSE} END

Rules:
- Paths are relative to the repository root, with '/' between folders.
- Only change the files listed under "Allowed paths"; any other path is refused.
- Copy SEARCH lines character for character, including indentation.
- No line inside a block may start with '{OPEN}' or '{CLOSE}'.

Example:
{OPEN} SEARCH app/greet.py
def greet(name):
    return "Hello " + name
{DIVIDER}
def greet(name):
    return f"Hello, {{name}}!"
{CLOSE} REPLACE
"""


@dataclass(frozen=True)
class PreviousCheck:
    """A Definition-of-Done check of an earlier attempt and how it ended."""

    name: str
    command: Sequence[str]
    passed: bool
    exit_code: int | None = None
    expectation: str = ""
    stdout_tail: str = ""
    stderr_tail: str = ""


@dataclass(frozen=True)
class PreviousAttempt:
    """The last attempt's outcome, error and checks, shown to the coder on its next try."""

    number: int
    outcome: str
    error: str = ""
    checks: Sequence[PreviousCheck] = field(default_factory=tuple)


def _tail(text: str, limit: int = TAIL_CHARS) -> str:
    text = text.rstrip()
    return text if len(text) <= limit else "[…]\n" + text[-limit:]


def _fence(text: str) -> str:
    """A Markdown fence longer than any backtick run inside the text."""
    longest = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    return "`" * max(3, longest + 1)


def _block(text: str, info: str = "") -> str:
    fence = _fence(text)
    body = text if text.endswith("\n") else text + "\n"
    return f"{fence}{info}\n{body}{fence}"


def _command(command: Sequence[Any]) -> str:
    return json.dumps([str(arg) for arg in command])


def _check_line(check: Mapping[str, Any]) -> str:
    line = f"- {check.get('name', 'check')}: run {_command(check.get('command') or [])}, " \
           f"expect exit code {check.get('expected_exit_code', 0)}"
    if check.get("output_must_contain"):
        line += "; output must contain " + ", ".join(
            json.dumps(t) for t in check["output_must_contain"])
    if check.get("output_must_not_contain"):
        line += "; output must not contain " + ", ".join(
            json.dumps(t) for t in check["output_must_not_contain"])
    return line


def _previous_section(previous: PreviousAttempt) -> list[str]:
    lines = [f"## What went wrong in attempt {previous.number} ({previous.outcome})", ""]
    if previous.error:
        lines += [_tail(previous.error, ERROR_CHARS), ""]
    for check in previous.checks:
        if check.passed:
            lines.append(f"- {check.name}: passed")
            continue
        why = check.expectation or f"exit code {check.exit_code}"
        lines.append(f"- {check.name} ({_command(check.command)}) FAILED: {why}")
        if check.stdout_tail.strip():
            lines += ["", "Output (end):", _block(_tail(check.stdout_tail))]
        if check.stderr_tail.strip():
            lines += ["", "Errors (end):", _block(_tail(check.stderr_tail))]
    lines += ["", "Fix these failures in your new edits; the repository is back at its "
                  "original state, so send every change again.", ""]
    return lines


def coder_user_prompt(*, spec: Mapping[str, Any], previous: PreviousAttempt | None = None,
                      feedback: str = "") -> str:
    """The ticket as the coder reads it: objective, rules, code, paths, checks, past failures."""
    lines = [f"# Ticket: {spec.get('title', '')}", "", "## Objective", "",
             str(spec.get("objective", "")).strip(), ""]
    constraints = spec.get("constraints") or []
    if constraints:
        lines += ["## Constraints", ""] + [f"- {rule}" for rule in constraints] + [""]
    lines += ["## Allowed paths (the only files you may change)", ""]
    lines += [f"- {path}" for path in spec.get("allowed_paths") or []] + [""]
    excerpts = spec.get("code_context") or []
    if excerpts:
        lines += ["## Code", ""]
        for excerpt in excerpts:
            lines += [f"{excerpt['path']} (lines {excerpt['line_start']}-{excerpt['line_end']}):",
                      _block(str(excerpt.get("content", ""))), ""]
    lines += ["## Definition of Done (every check must pass)", ""]
    lines += [_check_line(check) for check in spec.get("definition_of_done") or []] + [""]
    if previous is not None:
        lines += _previous_section(previous)
    if feedback.strip():
        lines += ["## Reviewer feedback on earlier work", "", feedback.strip(), ""]
    lines += ["Answer with edit blocks only."]
    return "\n".join(lines) + "\n"


def coder_messages(*, spec: Mapping[str, Any], previous: PreviousAttempt | None = None,
                   feedback: str = "") -> list[dict[str, str]]:
    """The chat messages of one coder call: the format rules, then the ticket."""
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": coder_user_prompt(spec=spec, previous=previous,
                                                          feedback=feedback)}]
