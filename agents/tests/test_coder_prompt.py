"""The coder prompt: everything the ticket says, past failures, feedback, and the edit grammar."""

from __future__ import annotations

import re

from agents.coder.prompt import (
    SYSTEM_PROMPT,
    TAIL_CHARS,
    PreviousAttempt,
    PreviousCheck,
    coder_messages,
)
from agents.edits import EditKind, parse_edits
from tests.factories import spec_example


def user_text(**kwargs: object) -> str:
    return coder_messages(**kwargs)[1]["content"]  # type: ignore[arg-type]


def failing_attempt(stdout: str = "FAILED tests/test_totals.py::test_half - assert 0.12 == 0.13",
                    stderr: str = "") -> PreviousAttempt:
    return PreviousAttempt(number=1, outcome="tests_failed", error="unit tests: exit code 1",
                           checks=[PreviousCheck(name="unit tests", command=["pytest", "-q"],
                                                 passed=False, exit_code=1,
                                                 expectation="exit code 1, expected 0",
                                                 stdout_tail=stdout, stderr_tail=stderr)])


def test_the_prompt_carries_every_part_of_the_ticket() -> None:
    spec = spec_example(definition_of_done=[{"name": "unit tests", "command": ["pytest", "-q"],
                                   "expected_exit_code": 0, "timeout_seconds": 60,
                                   "output_must_contain": ["passed"],
                                   "output_must_not_contain": ["error"]}])

    text = user_text(spec=spec)

    assert "# Ticket: Round totals to cents" in text
    assert "Invoice totals must be rounded half-up to two decimals." in text
    assert "- Do not change the public signature of total()." in text
    assert "- billing/totals.py\n- tests/test_totals.py" in text
    assert "billing/totals.py (lines 1-3):\n```\ndef total(items):\n    return sum(items)\n```" \
        in text
    assert ('- unit tests: run ["pytest", "-q"], expect exit code 0; output must contain '
            '"passed"; output must not contain "error"') in text
    assert "What went wrong" not in text and "Reviewer feedback" not in text


def test_the_same_ticket_always_gives_the_same_prompt() -> None:
    first = coder_messages(spec=spec_example(), previous=failing_attempt(), feedback="Again.")
    second = coder_messages(spec=spec_example(), previous=failing_attempt(), feedback="Again.")

    assert first == second


def test_the_system_prompt_example_is_valid_edit_grammar() -> None:
    example = SYSTEM_PROMPT.split("Example:\n", 1)[1]

    edits = parse_edits(example)

    assert [(e.kind, e.path) for e in edits] == [(EditKind.REPLACE, "app/greet.py")]
    assert 'f"Hello, {name}!"' in edits[0].text
    for marker in ("<<<<<<< SEARCH <path>", "<<<<<<< FILE <path>", "<<<<<<< DELETE <path>",
                   "=======", ">>>>>>> REPLACE", ">>>>>>> END"):
        assert marker in SYSTEM_PROMPT


def test_a_retry_shows_the_failing_check_output_and_the_feedback() -> None:
    text = user_text(spec=spec_example(), previous=failing_attempt(stderr="Traceback: boom"),
                     feedback="Round half-up, not half-even.")

    assert "## What went wrong in attempt 1 (tests_failed)" in text
    assert '- unit tests (["pytest", "-q"]) FAILED: exit code 1, expected 0' in text
    assert "FAILED tests/test_totals.py::test_half - assert 0.12 == 0.13" in text
    assert "Errors (end):\n```\nTraceback: boom\n```" in text
    assert "## Reviewer feedback on earlier work\n\nRound half-up, not half-even." in text


def test_only_the_tail_of_a_long_failing_output_is_shown() -> None:
    output = "".join(f"line {n}\n" for n in range(5000)) + "1 failed, 16 passed"

    text = user_text(spec=spec_example(), previous=failing_attempt(stdout=output))

    assert "1 failed, 16 passed" in text
    assert "line 10\n" not in text
    assert "[…]" in text
    assert len(text) < TAIL_CHARS + 3000


def test_code_with_backticks_gets_a_longer_fence() -> None:
    spec = spec_example(code_context=[{"path": "README.md", "line_start": 1, "line_end": 3,
                                       "content": "```sh\nmake run\n```\n"}])

    text = user_text(spec=spec)

    assert re.search(r"````\n```sh\nmake run\n```\n````", text)
