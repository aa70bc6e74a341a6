"""Template filters of the ticket pages: diffs, money, durations and event summaries."""

from __future__ import annotations

import functools
import shlex
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import TextLexer, get_lexer_for_filename
from pygments.util import ClassNotFound

register = template.Library()

_MICRO = Decimal("0.000001")


@dataclass(frozen=True)
class DiffLine:
    """One line of a unified diff and what it is: file, hunk, add, remove or context.

    `html` is the line ready to show: a code line's text highlighted for its file's
    language (Pygments escapes it), anything else escaped.
    """

    kind: str
    text: str
    html: SafeString


_FORMATTER = HtmlFormatter(nowrap=True, classprefix="tok-")


@functools.lru_cache(maxsize=64)
def _lexer_for(path: str) -> Lexer:
    try:
        return get_lexer_for_filename(path, stripnl=False, stripall=False, ensurenl=False)
    except ClassNotFound:
        return TextLexer(stripnl=False, ensurenl=False)


def _code_html(prefix: str, code: str, lexer: Lexer) -> SafeString:
    return mark_safe(escape(prefix) + highlight(code, lexer, _FORMATTER))  # noqa: S308


def diff_lines(diff: str) -> list[DiffLine]:
    """A unified diff split into classified lines, code highlighted by its file's language."""
    lines: list[DiffLine] = []
    lexer: Lexer = TextLexer(stripnl=False, ensurenl=False)
    for raw in (diff or "").splitlines():
        if raw.startswith(("diff --git", "--- ", "+++ ", "index ", "new file", "deleted file",
                           "rename ", "similarity ")):
            if raw.startswith("+++ "):
                lexer = _lexer_for(raw[4:].removeprefix("b/").strip())
            lines.append(DiffLine("file", raw, escape(raw)))
            continue
        if raw.startswith("@@"):
            lines.append(DiffLine("hunk", raw, escape(raw)))
            continue
        kind = "add" if raw.startswith("+") else "remove" if raw.startswith("-") else "context"
        prefix, code = (raw[:1], raw[1:]) if raw[:1] in "+- " else ("", raw)
        lines.append(DiffLine(kind, raw, _code_html(prefix, code, lexer) if code
                              else escape(raw)))
    return lines


register.filter("diff_lines", diff_lines)


@dataclass(frozen=True)
class CodeLine:
    """One line of a code excerpt: its number in the file (padded to align) and its HTML."""

    number: str
    html: SafeString


@register.filter
def code_lines(excerpt: Any) -> list[CodeLine]:
    """A spec's code excerpt as numbered lines, highlighted for its file's language.

    Pygments closes its spans at each line end, so splitting its output keeps every line
    well-formed (a docstring spanning lines stays highlighted as one).
    """
    if not isinstance(excerpt, dict):
        return []
    content = str(excerpt.get("content") or "")
    start = excerpt.get("line_start")
    first = start if isinstance(start, int) and not isinstance(start, bool) else 1
    if not content:
        return []
    # As many lines as the content has (a final newline ends the last line, it does not
    # start another); Pygments may add a newline of its own at the end.
    count = content.count("\n") + (0 if content.endswith("\n") else 1)
    html = highlight(content, _lexer_for(str(excerpt.get("path") or "")), _FORMATTER)
    rows = html.split("\n")[:count]
    rows += [""] * (count - len(rows))
    width = len(str(first + len(rows) - 1))
    return [CodeLine(str(first + index).rjust(width), mark_safe(row))  # noqa: S308
            for index, row in enumerate(rows)]


@register.filter
def check_expects(check: Any) -> str:
    """What a Definition of Done check expects, in words (as the coder's prompt says it)."""
    if not isinstance(check, dict):
        return ""
    parts = [f"exit code {check.get('expected_exit_code', 0)}"]
    parts += [f"output contains “{text}”" for text in check.get("output_must_contain") or []]
    parts += [f"output lacks “{text}”" for text in check.get("output_must_not_contain") or []]
    return "; ".join(parts)


@register.filter
def argv(command: Any) -> str:
    """A check's argument list as one line a person can read and type back (shell quoting)."""
    if not isinstance(command, list):
        return ""
    return shlex.join(str(part) for part in command)


@register.filter
def diff_stats(diff: str) -> dict[str, int]:
    """Files, added and removed lines of a unified diff."""
    files = added = removed = 0
    for line in diff_lines(diff):
        if line.kind == "file" and line.text.startswith("+++ "):
            files += 1
        elif line.kind == "add":
            added += 1
        elif line.kind == "remove":
            removed += 1
    return {"files": files, "added": added, "removed": removed}


@register.filter
def money(value: Any) -> str:
    """A cost as every page shows it: USD with 2 to 6 decimals and thousands separated,
    e.g. "1,234.5 USD" → "1,234.50 USD" (never through a float)."""
    try:
        amount = Decimal(str(value if value is not None else "0")).quantize(_MICRO)
    except (InvalidOperation, ValueError):
        return "—"
    text = format(amount, ",f")
    whole, _, fraction = text.partition(".")
    fraction = fraction.rstrip("0").ljust(2, "0")
    return f"{whole}.{fraction} USD"


@register.filter
def seconds(value: Any) -> str:
    """A duration in seconds as people read it: 850 ms, 12.3 s, 4 min 05 s."""
    if value is None or value == "":
        return "—"
    total = float(value)
    if total < 1:
        return f"{round(total * 1000)} ms"
    if total < 60:
        return f"{total:.1f} s"
    minutes, rest = divmod(round(total), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@register.filter
def millis(value: Any) -> str:
    """A duration in milliseconds, shown like `seconds`."""
    if value is None or value == "":
        return "—"
    return seconds(int(value) / 1000)


@register.filter
def event_summary(event: Any) -> str:
    """One line saying what an event means (static/js/ticket.js mirrors these words)."""
    data = getattr(event, "data", None) or {}
    kind = getattr(event, "type", "")
    return summarize(kind, data)


def summarize(kind: str, data: dict[str, Any]) -> str:
    """The words of `event_summary` for an event type and its data."""
    attempt = f"Attempt {data['attempt']}" if "attempt" in data else "Attempt"
    if kind == "ticket.transition":
        text = f"{_state(data.get('from'))} → {_state(data.get('to'))}"
        why = data.get("feedback") or data.get("reason")
        return f"{text}: {why}" if why else text
    if kind == "ticket.dispatched":
        return (f"{attempt} dispatched to {data.get('endpoint', '?')} "
                f"({data.get('model', '?')}, {data.get('executor', '?')})")
    if kind == "attempt.started":
        return f"{attempt} started on {data.get('endpoint', '?')} ({data.get('model', '?')})"
    if kind == "attempt.tokens":
        return f"{attempt}: {data.get('tokens', 0)} tokens streamed"
    if kind == "attempt.answered":
        return f"{attempt}: the model answered ({data.get('output_tokens', 0)} tokens)"
    if kind == "attempt.check":
        verdict = "passed" if data.get("passed") else "failed"
        position = f"{data.get('index', '?')} of {data.get('of', '?')}"
        text = (f"{attempt}: check {position} “{data.get('check', '')}” {verdict} "
                f"(exit {data.get('exit_code')})")
        return f"{text}: {data['expectation']}" if data.get("expectation") else text
    if kind == "attempt.finished":
        text = f"{attempt} finished: {str(data.get('outcome', '?')).replace('_', ' ')}"
        if data.get("cost") is not None:
            text += f", {money(data['cost'])}"
        return f"{text} — {data['error']}" if data.get("error") else text
    if kind == "attempt.waiting":
        return f"{attempt} waits for {data.get('endpoint', '?')}: {data.get('reason', '')}"
    if kind == "attempt.moved":
        return f"{attempt} moved from {data.get('from', '?')} to {data.get('to', '?')}"
    if kind == "ticket.escalated":
        return f"Escalated to the Tech Lead: {data.get('reason', '')}"
    if kind == "ticket.audited":
        verdict = "passed" if data.get("passed") else "failed"
        return f"Audit {verdict}: {data.get('summary', '')}"
    if kind == "guardrail.refused":
        return (f"Guardrail refused ({data.get('rule', '?')} at {data.get('point', '?')}): "
                f"{data.get('message', '')}")
    if kind == "ticket.merged":
        return (f"Merged into {data.get('branch', '?')} as "
                f"{str(data.get('commit', ''))[:12]}")
    if kind in ("ticket.merge_conflict", "ticket.merge_failed"):
        return f"Merge failed: {data.get('summary') or data.get('reason') or ''}"
    if kind == "ticket.spec_edited":
        return "Spec edited: " + ", ".join(data.get("changed", []) or ["no change"])
    if kind == "ticket.proposed":
        return f"Proposed for {data.get('requirement', '?')}"
    return kind.replace(".", " ").replace("_", " ").capitalize()


def _state(value: Any) -> str:
    return str(value or "?").replace("_", " ")
