"""The keys people read and type: a project's `PAY`, a ticket's `PAY-12`, a requirement's
`PAY-R3`. Formatted and parsed here only.

Numbers are bounded so that no key overflows an integer column: a malformed or absurd key is
"not found" without a query.
"""

from __future__ import annotations

import re

from django.core.validators import RegexValidator

PROJECT_KEY = r"[A-Z][A-Z0-9]{1,9}"
_NUMBER = r"[1-9][0-9]{0,8}"
PROJECT_KEY_RE = re.compile(rf"({PROJECT_KEY})\Z")
TICKET_KEY_RE = re.compile(rf"({PROJECT_KEY})-({_NUMBER})\Z")
REQUIREMENT_KEY_RE = re.compile(rf"({PROJECT_KEY})-R({_NUMBER})\Z")

project_key_validator = RegexValidator(
    rf"^{PROJECT_KEY}$", "Use 2-10 capital letters or digits, starting with a letter.")
requirement_key_validator = RegexValidator(REQUIREMENT_KEY_RE,
                                           "Use a requirement key like PAY-R3.")


def ticket_key(project_key: str, number: int) -> str:
    return f"{project_key}-{number}"


def requirement_key(project_key: str, number: int) -> str:
    return f"{project_key}-R{number}"


def parse_ticket_key(key: str) -> tuple[str, int] | None:
    """(project key, number) of `PAY-12`; None when it is not a ticket key."""
    match = TICKET_KEY_RE.match(key)
    return (match[1], int(match[2])) if match else None


def parse_requirement_key(key: str) -> tuple[str, int] | None:
    """(project key, number) of `PAY-R3`; None when it is not a requirement key."""
    match = REQUIREMENT_KEY_RE.match(key)
    return (match[1], int(match[2])) if match else None
