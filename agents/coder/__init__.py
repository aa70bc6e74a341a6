"""The local coder: its OpenAI-compatible client and the prompt built from a ticket."""

from __future__ import annotations

from agents.coder.client import CoderFailure, CoderReply, Usage, complete
from agents.coder.prompt import PreviousAttempt, PreviousCheck, coder_messages

__all__ = [
    "CoderFailure",
    "CoderReply",
    "PreviousAttempt",
    "PreviousCheck",
    "Usage",
    "coder_messages",
    "complete",
]
