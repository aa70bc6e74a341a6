"""Solve: the Tech Lead writes the edits for a ticket the local coders could not finish.

The ticket (instructions, spec with its injected code) is the cached prefix; the failed
attempts follow. The answer must parse as edit blocks (`agents.edits`); a malformed answer is
sent back once, then refused with `InvalidAnswer`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agents.edits import EditParseError, parse_edits
from agents.models import CallOutcome, CallRole, InferenceEndpoint
from agents.techlead.client import CallContext, InvalidAnswer, TechLeadClient, block_dicts
from agents.techlead.prompts import EPHEMERAL, SOLVE_INSTRUCTIONS, ticket_text
from tickets.models import Ticket

MAX_REPAIRS = 1
MAX_OUTPUT_TOKENS = 16_000
MAX_ATTEMPTS_SHOWN = 5
MAX_DIFF_CHARS = 20_000
MAX_OUTPUT_TAIL = 4_000


def _get(item: Any, name: str, default: Any = "") -> Any:
    if isinstance(item, Mapping):
        return item.get(name, default)
    return getattr(item, name, default)


def _checks_of(attempt: Any) -> list[Any]:
    checks = _get(attempt, "checks", None)
    if checks is None:
        return []
    if hasattr(checks, "all"):
        return list(checks.all())
    return list(checks)


def history_text(history: Sequence[Any]) -> str:
    """The failed attempts, newest last: outcome, error, failing checks' output, diff."""
    parts = []
    for attempt in list(history)[-MAX_ATTEMPTS_SHOWN:]:
        lines = [f"## Attempt {_get(attempt, 'number', '?')} "
                 f"({_get(attempt, 'model', '') or 'unknown model'}): "
                 f"{_get(attempt, 'outcome', 'unknown')}"]
        if _get(attempt, "error"):
            lines.append(f"Error: {str(_get(attempt, 'error'))[-MAX_OUTPUT_TAIL:]}")
        for check in _checks_of(attempt):
            if _get(check, "passed", False):
                continue
            lines.append(f"Failed check {_get(check, 'name')} (exit {_get(check, 'exit_code')}):")
            for stream in ("stdout_tail", "stderr_tail"):
                text = str(_get(check, stream) or "")
                if text.strip():
                    lines.append(text[-MAX_OUTPUT_TAIL:])
        diff = str(_get(attempt, "diff") or "")
        if diff:
            lines.append("Its diff:\n```diff\n" + diff[:MAX_DIFF_CHARS] + "\n```")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) or "(no attempt was recorded)"


def solve_request(*, ticket: Ticket, history: Sequence[Any]) -> dict[str, Any]:
    """Instructions and ticket (cached), then the attempts and the latest feedback."""
    spec = ticket_text(ticket.spec)
    feedback = f"\n\nReviewer feedback: {ticket.feedback}" if ticket.feedback else ""
    return {
        "max_tokens": MAX_OUTPUT_TOKENS,
        "system": [
            {"type": "text", "text": SOLVE_INSTRUCTIONS},
            {"type": "text", "text": f"Ticket {ticket.key}:\n{spec}",
             "cache_control": dict(EPHEMERAL)},
        ],
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Failed attempts:\n\n" + history_text(history) + feedback
             + "\n\nWrite the edit blocks that complete the ticket."}]}],
    }


def _text_of(message: Any) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def solve(*, ticket: Ticket, history: Sequence[Any], endpoint: InferenceEndpoint,
          attempt: Any = None, client: TechLeadClient | None = None,
          idempotency_key: str | None = None) -> str:
    """The Tech Lead's answer as edit-block text that `agents.edits.parse_edits` accepts."""
    client = client or TechLeadClient(endpoint)
    context = CallContext(
        organization=ticket.organization, role=CallRole.SOLVE, project=ticket.project,
        ticket=ticket, attempt=attempt,
        key=idempotency_key or f"solve:{ticket.pk}:{getattr(attempt, 'pk', len(history))}")
    request = solve_request(ticket=ticket, history=history)
    problem = ""
    for round_number in range(MAX_REPAIRS + 1):
        message = client.create(context=context.for_round(f"r{round_number}"), **request)
        text = _text_of(message)
        try:
            parse_edits(text)
        except EditParseError as error:
            problem = error.message
        else:
            return text
        request["messages"] = [
            *request["messages"],
            {"role": "assistant", "content": block_dicts(message)},
            {"role": "user", "content": [{"type": "text", "text":
                f"Your answer could not be applied: {problem} Answer again with edit blocks "
                "only, in the exact format given."}]}]
    raise InvalidAnswer(f"The Tech Lead's edits could not be parsed: {problem}",
                        outcome=CallOutcome.INVALID_OUTPUT)
