"""Helpers shared by the Tech Lead tests and the prompt-cache benchmark: sample checkouts and
answers in the shape the real model gives (a `propose_tickets` input without code content)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agents.workspaces.samples import SAMPLE_PROJECT, git_checkout

__all__ = ["SAMPLE_PROJECT", "git_checkout", "invoice_proposal", "invoice_ticket"]


def invoice_ticket(**overrides: Any) -> dict[str, Any]:
    """The ticket a Tech Lead proposes for the sample's rounding defect (no code content)."""
    ticket: dict[str, Any] = {
        "schema_version": "1",
        "title": "Round money half-up with Decimal",
        "objective": "round_money() goes through float and rounds 0.125 down. Quantize the "
                     "Decimal to cents with ROUND_HALF_UP instead.",
        "code_context": [{"path": "invoice_calc/totals.py", "line_start": 14, "line_end": 21},
                         {"path": "tests/test_totals.py", "line_start": 1, "line_end": 12}],
        "allowed_paths": ["invoice_calc/totals.py"],
        "constraints": ["Do not change the signature of round_money()."],
        "definition_of_done": [{"name": "unit tests",
                                "command": ["python", "-m", "pytest", "-q"],
                                "expected_exit_code": 0, "timeout_seconds": 120}],
        "dependencies": [],
        "complexity": 1,
    }
    ticket.update(overrides)
    return ticket


def invoice_proposal(prompt: str = "", tool: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A two-ticket proposal for the sample project (usable as `SampleTechLead`'s answer)."""
    second = invoice_ticket(
        title="Test rounding of totals at half a cent",
        objective="Add a test that total([Decimal('0.125')]) is Decimal('0.13').",
        code_context=[{"path": "tests/test_totals.py", "line_start": 1, "line_end": 12}],
        allowed_paths=["tests/test_totals.py"], dependencies=["#1"], complexity=1)
    return {"tickets": [invoice_ticket(), second]}


def file_lines(path: Path, start: int, end: int) -> str:
    """Lines `start`..`end` (from 1, inclusive) of a file, exactly as stored."""
    return "".join(path.read_text(encoding="utf-8").splitlines(keepends=True)[start - 1:end])
