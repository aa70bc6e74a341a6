"""The Atomic Ticket: loading its JSON Schema, validating specs, and normalizing them."""

from __future__ import annotations

import copy
import functools
import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from jsonschema import Draft202012Validator, ValidationError

from haao.errors import ApplicationError

SCHEMA_VERSION = "1"
SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / f"atomic-ticket-v{SCHEMA_VERSION}.json"

MAX_SPEC_BYTES = 256 * 1024
MAX_CONTENT_BYTES = 64 * 1024
# A valid ticket nests 5 levels deep; jsonschema's messages repr() whole values, which
# overflows the stack on deeply nested input, so such input is refused before validation.
MAX_DEPTH = 32

# Allowed paths are simple globs ('*', '?'); brackets and braces mean different things to
# fnmatch, pathlib and shells, so a ticket using them could not say exactly what it allows.
_GLOB_SPECIALS = "[]{}"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TYPE_NAMES = {
    "array": "an array",
    "boolean": "true or false",
    "integer": "an integer",
    "null": "null",
    "number": "a number",
    "object": "an object",
    "string": "a string",
}
_PATTERN_RULES = {
    "^(?:[A-Z][A-Z0-9]{1,9}-[0-9]+|#[1-9][0-9]*)$":
        "must be a ticket reference like PAY-12 or #2",
}

PathParts = tuple[str | int, ...]


@dataclass(frozen=True)
class SpecError:
    """One broken rule: where in the spec (a JSON path such as `$.title`) and what is wrong."""

    path: str
    message: str

    def as_dict(self) -> dict[str, str]:
        """The error as the API reports it."""
        return {"path": self.path, "message": self.message}


class SpecInvalid(ApplicationError):
    """A ticket spec broke the Atomic Ticket schema or one of HAAO's rules."""

    code = "spec_invalid"

    def __init__(self, errors: Sequence[SpecError]) -> None:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"Invalid ticket spec: {first.path} {first.message}{more}.",
                         details={"errors": [error.as_dict() for error in errors]})
        self.errors = tuple(errors)


@functools.cache
def _schema() -> dict[str, Any]:
    with SCHEMA_PATH.open(encoding="utf-8") as handle:
        schema: dict[str, Any] = json.load(handle)
    return schema


def load_schema() -> dict[str, Any]:
    """The Atomic Ticket JSON Schema (read once; each caller gets its own copy)."""
    return copy.deepcopy(_schema())


@functools.cache
def _validator() -> Draft202012Validator:
    schema = _schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def json_path(parts: PathParts) -> str:
    """`("definition_of_done", 2, "name")` as the JSON path `$.definition_of_done[2].name`."""
    out = ["$"]
    for part in parts:
        if isinstance(part, int) and not isinstance(part, bool):
            out.append(f"[{part}]")
        elif _IDENTIFIER.match(str(part)):
            out.append(f".{part}")
        else:
            escaped = str(part).replace("\\", "\\\\").replace("'", "\\'")
            out.append(f"['{escaped}']")
    return "".join(out)


def _sort_key(item: tuple[PathParts, str]) -> tuple[tuple[tuple[int, int, str], ...], str]:
    # Indices sort numerically ([2] before [10]) and before names at the same depth.
    parts, message = item
    return tuple((0, p, "") if isinstance(p, int) and not isinstance(p, bool) else (1, 0, str(p))
                 for p in parts), message


def validate_spec(data: object) -> list[SpecError]:
    """Every way `data` breaks the Atomic Ticket schema or HAAO's rules, sorted by path."""
    found: set[tuple[PathParts, str]] = set()
    for parts, value in _walk(data):
        if isinstance(value, dict | list) and len(parts) >= MAX_DEPTH:
            message = f"is nested too deeply: at most {MAX_DEPTH} levels"
            return [SpecError(json_path(parts), message)]
        if isinstance(value, str):
            found.update(_text_errors(parts, value))
    for error in _validator().iter_errors(data):
        found.update(_explain(error))
    found.update(_semantic_errors(data))
    return [SpecError(json_path(parts), message) for parts, message in sorted(found, key=_sort_key)]


def _walk(data: object) -> Iterator[tuple[PathParts, object]]:
    """Every value in `data` with its path, without recursion and no deeper than MAX_DEPTH."""
    stack: list[tuple[PathParts, object]] = [((), data)]
    while stack:
        parts, value = stack.pop()
        yield parts, value
        if len(parts) >= MAX_DEPTH:
            continue
        if isinstance(value, dict):
            stack.extend(((*parts, key), item) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend(((*parts, index), item) for index, item in enumerate(value))


def _text_errors(parts: PathParts, text: str) -> Iterator[tuple[PathParts, str]]:
    # PostgreSQL's jsonb cannot store NUL or unpaired surrogates (json.loads accepts both as
    # escapes), and a NUL would cut a command argument or a path short in the sandbox.
    if "\0" in text:
        yield parts, "must not contain a NUL byte"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        yield parts, "must be valid Unicode text (it contains an unpaired surrogate)"


def spec_clean(data: object) -> dict[str, Any]:
    """A validated, normalized copy of `data`; raises SpecInvalid listing every error."""
    errors = validate_spec(data)
    if errors:
        raise SpecInvalid(errors)
    assert isinstance(data, dict)  # the schema requires an object
    clean: dict[str, Any] = _normalize(data)
    for check in clean["definition_of_done"]:
        check.setdefault("expected_exit_code", 0)
    return clean


def _normalize(value: Any) -> Any:
    """A deep copy with whole-number floats as ints (JSON Schema counts 2.0 as an integer)."""
    if isinstance(value, dict):
        return {key: _normalize(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_normalize(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _explain(error: ValidationError) -> Iterator[tuple[PathParts, str]]:
    """Plain messages naming the rule, at the path of the value that breaks it."""
    parts: PathParts = tuple(error.absolute_path)
    rule, limit, instance = error.validator, error.validator_value, error.instance
    if rule == "required":
        # jsonschema reports each missing property separately but names it only in prose.
        for name in limit:
            if isinstance(instance, dict) and name not in instance:
                yield (*parts, name), "is required"
    elif rule == "additionalProperties":
        known = error.schema.get("properties", {})
        for name in instance:
            if name not in known:
                yield (*parts, name), "is not allowed (unknown property)"
    elif rule == "type":
        if parts and parts[-1] == "command" and isinstance(instance, str):
            yield parts, "must be a list of arguments, not a shell string"
        else:
            yield parts, f"must be {_TYPE_NAMES.get(str(limit), str(limit))}"
    elif rule == "const":
        yield parts, f"must be {json.dumps(limit)}"
    elif rule == "minLength":
        yield parts, "must not be empty" if limit == 1 else f"must be at least {limit} characters"
    elif rule == "maxLength":
        yield parts, f"must be at most {limit} characters"
    elif rule == "minItems":
        yield parts, f"must have at least {limit} item{'s' if limit != 1 else ''}"
    elif rule == "maxItems":
        yield parts, f"must have at most {limit} items"
    elif rule == "minimum":
        yield parts, f"must be at least {limit}"
    elif rule == "maximum":
        yield parts, f"must be at most {limit}"
    elif rule == "pattern":
        yield parts, _PATTERN_RULES.get(str(limit), f"must match the pattern {limit}")
    else:
        yield parts, error.message


def _semantic_errors(data: object) -> Iterator[tuple[PathParts, str]]:
    """HAAO's rules that JSON Schema cannot express; checked only where the shape allows."""
    if not isinstance(data, dict):
        return
    yield from _size_errors(data)
    checks = data.get("definition_of_done")
    if isinstance(checks, list):
        for index, check in enumerate(checks):
            if isinstance(check, dict) and isinstance(check.get("command"), list):
                yield from _command_errors(("definition_of_done", index, "command"),
                                           check["command"])
    paths = data.get("allowed_paths")
    if isinstance(paths, list):
        for index, path in enumerate(paths):
            if isinstance(path, str):
                yield from _path_errors(("allowed_paths", index), path, glob=True)
    excerpts = data.get("code_context")
    if isinstance(excerpts, list):
        for index, excerpt in enumerate(excerpts):
            if isinstance(excerpt, dict):
                yield from _excerpt_errors(("code_context", index), excerpt)
    refs = data.get("dependencies")
    if isinstance(refs, list):
        first_seen: dict[str, int] = {}
        for index, ref in enumerate(refs):
            if not isinstance(ref, str):
                continue
            if ref in first_seen:
                earlier = json_path(("dependencies", first_seen[ref]))
                yield ("dependencies", index), f"must not repeat an earlier dependency ({earlier})"
            else:
                first_seen[ref] = index


def _size_errors(data: dict[Any, Any]) -> Iterator[tuple[PathParts, str]]:
    try:
        size = len(json.dumps(data, ensure_ascii=False, separators=(",", ":"),
                              default=repr).encode("utf-8", "surrogatepass"))
    except (TypeError, ValueError, RecursionError):
        yield (), "cannot be serialized as JSON"
        return
    if size > MAX_SPEC_BYTES:
        yield (), f"is too large: {size} bytes, at most {MAX_SPEC_BYTES}"


def _command_errors(parts: PathParts, command: list[Any]) -> Iterator[tuple[PathParts, str]]:
    if command and command[0] == "":
        yield (*parts, 0), "must not be empty (it names the program to run)"


def _path_errors(parts: PathParts, path: str, *, glob: bool) -> Iterator[tuple[PathParts, str]]:
    if "\\" in path:
        yield parts, "must use / as the separator, not a backslash"
    if path.startswith("/"):
        yield parts, "must be a relative path (no leading /)"
    if ".." in path.split("/"):
        yield parts, "must not contain a '..' segment"
    if glob and any(char in path for char in _GLOB_SPECIALS):
        yield parts, "must be a path or a simple glob using only * and ?"


def _excerpt_errors(parts: PathParts, excerpt: dict[Any, Any]) -> Iterator[tuple[PathParts, str]]:
    path = excerpt.get("path")
    if isinstance(path, str):
        yield from _path_errors((*parts, "path"), path, glob=False)
    start, end = excerpt.get("line_start"), excerpt.get("line_end")
    if _is_int(start) and _is_int(end) and start > end:
        yield (*parts, "line_end"), f"must be at least line_start ({int(start)})"
    content = excerpt.get("content")
    # Longer content already fails the schema's character limit; don't report it twice.
    if isinstance(content, str) and len(content) <= MAX_CONTENT_BYTES:
        size = len(content.encode("utf-8", "surrogatepass"))
        if size > MAX_CONTENT_BYTES:
            yield (*parts, "content"), f"is too large: {size} bytes, at most {MAX_CONTENT_BYTES}"


def _is_int(value: object) -> TypeGuard[int | float]:
    """An integer as JSON Schema counts it: not a bool, and 3.0 counts."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)
                                      and value.is_integer())
