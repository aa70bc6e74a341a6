"""Audit: the Tech Lead judges a diff that already passed the machine checks.

The verdict arrives through the forced `submit_audit` tool. A malformed verdict is sent back
once; if it is still malformed the audit fails with `error` set, and the caller treats it as
a failed audit rather than crashing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator

from agents.models import CallRole, InferenceEndpoint
from agents.techlead.client import (
    CallContext,
    InvalidAnswer,
    TechLeadClient,
    block_dicts,
    tool_input,
)
from agents.techlead.prompts import (
    AUDIT_INSTRUCTIONS,
    AUDIT_SCHEMA,
    EPHEMERAL,
    submit_audit_tool,
    ticket_text,
)
from tickets.models import Ticket

MAX_REPAIRS = 1
MAX_OUTPUT_TOKENS = 4_000
MAX_DIFF_CHARS = 120_000
MAX_OUTPUT_TAIL = 4_000
_VALIDATOR = Draft202012Validator(AUDIT_SCHEMA)


@dataclass(frozen=True)
class AuditVerdict:
    """The audit's outcome; `error` is set when no well-formed verdict could be obtained."""

    passed: bool
    summary: str
    findings: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""


def verdict_errors(data: Mapping[str, Any] | None) -> list[str]:
    """What is wrong with a `submit_audit` input, as `<json path>: <problem>` lines."""
    if data is None:
        return ["$: answer by calling the submit_audit tool"]
    problems = []
    for error in sorted(_VALIDATOR.iter_errors(dict(data)), key=lambda e: list(map(str, e.path))):
        path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path)
        problems.append(f"{path}: {error.message}")
    return problems


def _check_text(check: Any) -> str:
    def get(name: str, default: Any = "") -> Any:
        if isinstance(check, Mapping):
            return check.get(name, default)
        return getattr(check, name, default)

    status = "passed" if get("passed", False) else "FAILED"
    lines = [f"- {get('name')}: {status} (exit {get('exit_code')}, expected "
             f"{get('expected_exit_code', 0)}) `{' '.join(map(str, get('command', [])))}`"]
    for stream in ("stdout_tail", "stderr_tail", "stdout", "stderr"):
        text = str(get(stream) or "")
        if text.strip():
            lines.append(f"  {stream.split('_')[0]}:\n{text[-MAX_OUTPUT_TAIL:]}")
    return "\n".join(lines)


def audit_request(*, ticket: Ticket, diff: str, check_results: Sequence[Any]) -> dict[str, Any]:
    """Instructions and the ticket (cached), then the diff and the check results."""
    shown = diff if len(diff) <= MAX_DIFF_CHARS else diff[:MAX_DIFF_CHARS] + "\n[diff truncated]"
    checks = "\n".join(_check_text(check) for check in check_results) or "(no checks recorded)"
    spec = ticket_text(ticket.spec)
    return {
        "max_tokens": MAX_OUTPUT_TOKENS,
        "tools": [submit_audit_tool()],
        "tool_choice": {"type": "tool", "name": "submit_audit"},
        "system": [
            {"type": "text", "text": AUDIT_INSTRUCTIONS},
            {"type": "text", "text": f"Ticket {ticket.key}:\n{spec}",
             "cache_control": dict(EPHEMERAL)},
        ],
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": f"Machine checks:\n{checks}\n\nDiff:\n```diff\n{shown}\n```"},
        ]}],
    }


def audit(*, ticket: Ticket, diff: str, check_results: Sequence[Any],
          endpoint: InferenceEndpoint, attempt: Any = None,
          client: TechLeadClient | None = None, idempotency_key: str | None = None
          ) -> AuditVerdict:
    """The Tech Lead's verdict on the diff; a verdict that stays malformed is a failed audit."""
    client = client or TechLeadClient(endpoint)
    if attempt is None and check_results:
        attempt = getattr(check_results[0], "attempt", None)
    context = CallContext(
        organization=ticket.organization, role=CallRole.AUDIT, project=ticket.project,
        ticket=ticket, attempt=attempt,
        key=idempotency_key or f"audit:{ticket.pk}:{getattr(attempt, 'pk', 'none')}")
    request = audit_request(ticket=ticket, diff=diff, check_results=check_results)
    problems: list[str] = []
    for round_number in range(MAX_REPAIRS + 1):
        try:
            message = client.create(context=context.for_round(f"r{round_number}"), **request)
        except InvalidAnswer as empty:
            problems = [empty.message]
            continue
        tool_id, data = tool_input(message, "submit_audit")
        problems = verdict_errors(data)
        if not problems and data is not None:
            findings = [dict(finding) for finding in data["findings"]]
            blocking = any(f["severity"] in ("blocker", "major") for f in findings)
            return AuditVerdict(passed=bool(data["passed"]) and not blocking,
                                summary=str(data["summary"]), findings=findings)
        report = "The verdict is malformed; call submit_audit again with:\n" + "\n".join(
            f"- {problem}" for problem in problems[:30])
        reply: list[dict[str, Any]] = (
            [{"type": "tool_result", "tool_use_id": tool_id, "is_error": True,
              "content": report}] if tool_id else [{"type": "text", "text": report}])
        request["messages"] = [*request["messages"],
                               {"role": "assistant", "content": block_dicts(message)},
                               {"role": "user", "content": reply}]
    return AuditVerdict(passed=False, summary="The audit gave no well-formed verdict.",
                        error="; ".join(problems[:10])[:2000])
