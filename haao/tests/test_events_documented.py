"""Every audit event type HAAO's code writes is listed in docs/events.md."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
APPS = {"haao", "accounts", "tickets", "agents", "policies"}


def written_types() -> tuple[set[str], set[str]]:
    """(event types passed as `type=` to any call, prefixes of those built with an f-string),
    in HAAO's code outside tests."""
    types: set[str] = set()
    prefixes: set[str] = set()
    for path in ROOT.glob("*/**/*.py"):
        parts = path.relative_to(ROOT).parts
        if parts[0] not in APPS or "tests" in parts or "migrations" in parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            for keyword in node.keywords:
                if keyword.arg != "type":
                    continue
                values = [keyword.value]
                if isinstance(keyword.value, ast.IfExp):  # "sso.created" if … else "sso.updated"
                    values = [keyword.value.body, keyword.value.orelse]
                for value in values:
                    if isinstance(value, ast.Constant) and isinstance(value.value, str) \
                            and re.fullmatch(r"[a-z_]+\.[a-z_.]+", value.value):
                        types.add(value.value)
                    elif isinstance(value, ast.JoinedStr) and value.values and isinstance(
                            value.values[0], ast.Constant):
                        prefixes.add(str(value.values[0].value))
    return types, prefixes


def documented() -> set[str]:
    return set(re.findall(r"`([a-z_]+\.[a-z_.]+)`", (ROOT / "docs/events.md").read_text()))


def test_the_scan_finds_the_types_the_loop_writes() -> None:
    types, prefixes = written_types()
    assert {"ticket.transition", "attempt.finished", "policy.changed", "sso.updated"} <= types
    assert "requirement." in prefixes


def test_every_event_type_written_is_documented() -> None:
    types, prefixes = written_types()
    listed = documented()
    missing = sorted(types - listed)
    assert missing == [], f"Describe these event types in docs/events.md: {missing}"
    for prefix in prefixes:
        assert any(name.startswith(prefix) for name in listed), (
            f"docs/events.md lists no event type starting with {prefix!r}")
