"""The sample project's rounding task for tests and benchmarks: as a proposal in the shape
the real Tech Lead gives (no code content), and as a stored spec with its code. The ticket and
its fixes themselves live with the sample models (sample_models.rounding)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agents.workspaces.samples import SAMPLE_PROJECT, git_checkout
from sample_models.rounding import RIGHT_FIX, ROUNDING_TICKET, WRONG_FIX
from tests.factories import spec_example

__all__ = ["RIGHT_FIX", "SAMPLE_PROJECT", "WRONG_FIX", "file_lines", "git_checkout",
           "invoice_proposal", "invoice_ticket", "sample_spec"]


def invoice_ticket(**overrides: Any) -> dict[str, Any]:
    """The ticket a Tech Lead proposes for the sample's rounding defect, as the real model gives
    it (no code content): the sample models' own (sample_models.rounding)."""
    return {**copy.deepcopy(ROUNDING_TICKET), **overrides}


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


def sample_spec() -> dict[str, Any]:
    content = (SAMPLE_PROJECT / "invoice_calc" / "totals.py").read_text()
    lines = content.splitlines(keepends=True)
    return spec_example(
        title="Round invoice totals half-up to the cent",
        objective="total() rounds exact half cents down (0.125 -> 0.12); it must round "
                  "half-up (0.125 -> 0.13) without going through float.",
        code_context=[{"path": "invoice_calc/totals.py", "line_start": 1,
                       "line_end": len(lines), "content": content}],
        allowed_paths=["invoice_calc/totals.py"],
        constraints=["Keep amounts as Decimal; never convert to float."],
        definition_of_done=[{"name": "unit tests",
                             "command": ["python", "-m", "pytest", "-q", "-p",
                                         "no:cacheprovider", "tests"],
                             "expected_exit_code": 0, "timeout_seconds": 120,
                             "output_must_contain": ["passed"]}],
    )
