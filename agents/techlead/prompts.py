"""The Tech Lead's instructions and tool definitions; stable text, so it stays in the cache."""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

from tickets.spec import load_schema

MAX_TICKETS = 20
MAX_DECLINED = 1000
EPHEMERAL = {"type": "ephemeral"}

DECOMPOSE_INSTRUCTIONS = """\
You are the Tech Lead of a software team whose developers are small local coder models.
Break the product owner's requirement into the fewest atomic tickets that together deliver it.

Each ticket must be:
- self-contained: a small model reads only the ticket, never the repository. Name in
  `code_context` every existing file range the coder needs to see (path and line range from
  the repository map below); HAAO inserts the exact file content itself, so leave `content`
  out. Only list files that exist in the map. Line numbers count from 1.
- small: one focused change, touching few files; `allowed_paths` lists exactly the files it
  may create or change.
- verifiable: `definition_of_done` is a list of commands (argv lists, no shell) that prove it
  is done, with the exit code they must return, and a timeout. Prefer the project's own tests;
  add or extend a test when the requirement changes behaviour.
- ordered: a ticket that needs another one first lists it in `dependencies` as "#n" (the n-th
  ticket of your proposal, counting from 1).

Always answer by calling the `propose_tickets` tool once, with `schema_version` "1" in every
ticket. If HAAO reports errors in your tickets, call the tool again with every ticket corrected.
If the requirement cannot be done in this repository at all, call the tool with no tickets and
say why in `declined`; the product owner reads it.
"""

AUDIT_INSTRUCTIONS = """\
You are the Tech Lead auditing a change a coder model made for one atomic ticket. The change
already passed the ticket's machine checks (shown below). Judge whether the diff does what the
ticket's objective asks, respects its constraints and allowed paths, and does not weaken or
delete tests to make them pass. Report concrete findings with a severity (blocker, major,
minor, info) and the file path when there is one. Pass the change only if no finding is a
blocker or major. Always answer by calling the `submit_audit` tool once.
"""

SOLVE_INSTRUCTIONS = """\
You are the Tech Lead taking over a ticket that local coder models could not finish. Read the
ticket, the code it includes and the failed attempts with their check output and feedback,
then write the complete fix.

Answer only with edit blocks in this exact format (markers at the start of a line):

<<<<<<< SEARCH path/to/file.py
lines copied exactly from the current file (they must occur exactly once)
=======
the lines that replace them
>>>>>>> REPLACE

<<<<<<< FILE path/to/new_file.py
the whole content of a new or fully rewritten file
>>>>>>> END

<<<<<<< DELETE path/to/obsolete.py
>>>>>>> END

Paths are relative to the repository root and must be among the ticket's allowed paths. Text
outside blocks is ignored. The edits are applied to the original files, not to earlier attempts.
"""

AUDIT_SEVERITIES = ("blocker", "major", "minor", "info")


@functools.cache
def _ticket_item_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """The Atomic Ticket schema as a tool item (content left to HAAO) and its $defs."""
    schema = load_schema()
    defs = schema.pop("$defs", {})
    for key in ("$schema", "$id", "examples"):
        schema.pop(key, None)
    excerpt = defs["code_excerpt"]
    excerpt["properties"].pop("content", None)
    excerpt["required"] = [name for name in excerpt["required"] if name != "content"]
    excerpt["description"] = ("A line range of one existing file; HAAO inserts the file's "
                              "content itself.")
    return schema, defs


def propose_tickets_tool() -> dict[str, Any]:
    """The forced tool whose input is the proposal: `{"tickets": [<atomic ticket>, …]}`."""
    item, defs = _ticket_item_schema()
    return {
        "name": "propose_tickets",
        "description": "Propose the atomic tickets that implement the requirement, in order.",
        "input_schema": {
            "type": "object",
            "additionalProperties": False,
            "required": ["tickets"],
            "properties": {
                "tickets": {"type": "array", "maxItems": MAX_TICKETS,
                            "items": copy.deepcopy(item)},
                "declined": {"type": "string", "maxLength": MAX_DECLINED,
                             "description": "Only with no tickets: why this requirement "
                                            "cannot be done in this repository."},
            },
            "$defs": copy.deepcopy(defs),
        },
    }


def submit_audit_tool() -> dict[str, Any]:
    """The forced tool of an audit verdict."""
    return {
        "name": "submit_audit",
        "description": "Submit the audit verdict of the change.",
        "input_schema": AUDIT_SCHEMA,
    }


AUDIT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["passed", "summary", "findings"],
    "properties": {
        "passed": {"type": "boolean",
                   "description": "True only if no finding is a blocker or major."},
        "summary": {"type": "string", "minLength": 1, "maxLength": 2000},
        "findings": {
            "type": "array",
            "maxItems": 50,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["severity", "message"],
                "properties": {
                    "severity": {"enum": list(AUDIT_SEVERITIES)},
                    "path": {"type": "string", "minLength": 1, "maxLength": 1000},
                    "message": {"type": "string", "minLength": 1, "maxLength": 2000},
                },
            },
        },
    },
}


def ticket_text(spec: dict[str, Any]) -> str:
    """A ticket for the Tech Lead to read: its fields as JSON, and the injected code as plain
    text after them (readable, and each line scanned for secrets as the line it is)."""
    fields = copy.deepcopy(spec)
    blocks = []
    for index, context in enumerate(fields.get("code_context") or [], start=1):
        content = context.pop("content", None)
        if content is None:
            continue
        context["content"] = f"(code block {index} below)"
        blocks.append(f"Code block {index}: {context.get('path')} lines "
                      f"{context.get('line_start')}-{context.get('line_end')}\n"
                      f"```\n{content}\n```")
    text = json.dumps(fields, indent=1, sort_keys=True, ensure_ascii=False)
    return "\n\n".join([text, *blocks])
