"""How far a running attempt is, as its events tell it: the board's cards and the ticket page
fold the same events the same way (and static/js mirrors it live)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The tail of a running attempt's streamed output a page shows (the answer is kept whole).
OUTPUT_SHOWN = 20_000


@dataclass
class Progress:
    """Checks passed and run so far, tokens streamed, and the text written so far."""

    attempt: int = 0
    checks_passed: int = 0
    checks_run: int = 0
    checks_total: int = 0
    tokens: int = 0
    output: str = ""

    def apply(self, type: str, data: dict[str, Any]) -> None:
        """Fold one event of the attempt in."""
        if type == "attempt.tokens":
            self.tokens = max(self.tokens, int(data.get("tokens") or 0))
            self.output = (self.output + str(data.get("text") or ""))[-OUTPUT_SHOWN:]
        elif type == "attempt.answered":
            self.tokens = max(self.tokens, int(data.get("output_tokens") or 0))
        elif type == "attempt.check":
            self.checks_run += 1
            self.checks_passed += 1 if data.get("passed") else 0
            self.checks_total = int(data.get("of") or self.checks_total)

    @property
    def percent(self) -> int:
        """Share of the checks passed so far, for a progress bar."""
        return round(100 * self.checks_passed / self.checks_total) if self.checks_total else 0

    @property
    def tokens_shown(self) -> str:
        return f"{self.tokens:,}"
