"""Properties of spec validation over generated tickets and arbitrary JSON."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tickets.spec import SpecError, json_path, spec_clean, validate_spec

FAST = settings(max_examples=150, deadline=None)

Parts = tuple[Any, ...]

# --- valid tickets -----------------------------------------------------------------------

_segment = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,11}", fullmatch=True)
relative_paths = st.lists(_segment, min_size=1, max_size=4).map("/".join)
globs = st.tuples(relative_paths, st.sampled_from(["*.py", "test_?.py", "*", "**/*.md"])).map(
    "/".join)
ticket_refs = st.one_of(
    st.from_regex(r"[A-Z][A-Z0-9]{1,9}-[0-9]{1,6}", fullmatch=True),
    st.integers(min_value=1, max_value=999).map(lambda n: f"#{n}"),
)


def texts(min_size: int = 0, max_size: int = 30) -> st.SearchStrategy[str]:
    """Any text HAAO can store: every character UTF-8 can encode except NUL."""
    alphabet = st.characters(codec="utf-8", exclude_characters="\0")
    return st.text(alphabet, min_size=min_size, max_size=max_size)


argument = texts()
literal = texts(min_size=1)


def _integer(low: int, high: int) -> st.SearchStrategy[int | float]:
    """Integers, some written as whole-number floats (valid JSON Schema integers)."""
    return st.one_of(st.integers(min_value=low, max_value=high),
                     st.integers(min_value=low, max_value=high).map(float))


@st.composite
def excerpts(draw: st.DrawFn) -> dict[str, Any]:
    start = draw(st.integers(min_value=1, max_value=10_000))
    return {
        "path": draw(relative_paths),
        "line_start": start,
        "line_end": draw(st.integers(min_value=start, max_value=start + 500)),
        "content": draw(texts(max_size=200)),
    }


@st.composite
def checks(draw: st.DrawFn) -> dict[str, Any]:
    program = draw(texts(min_size=1))
    check: dict[str, Any] = {
        "name": draw(texts(min_size=1, max_size=200)),
        "command": [program, *draw(st.lists(argument, max_size=6))],
        "timeout_seconds": draw(_integer(1, 3600)),
    }
    optional = {
        "expected_exit_code": _integer(0, 255),
        "output_must_contain": st.lists(literal, max_size=4),
        "output_must_not_contain": st.lists(literal, max_size=4),
    }
    for name in draw(st.sets(st.sampled_from(sorted(optional)))):
        check[name] = draw(optional[name])
    return check


@st.composite
def valid_specs(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "schema_version": "1",
        "title": draw(texts(min_size=1, max_size=200)),
        "objective": draw(texts(min_size=1, max_size=400)),
        "code_context": draw(st.lists(excerpts(), max_size=4)),
        "allowed_paths": draw(st.lists(st.one_of(relative_paths, globs), min_size=1,
                                       max_size=6)),
        "constraints": draw(st.lists(texts(min_size=1, max_size=100), max_size=5)),
        "definition_of_done": draw(st.lists(checks(), min_size=1, max_size=4)),
        "dependencies": draw(st.lists(ticket_refs, max_size=5, unique=True)),
        "complexity": draw(_integer(1, 5)),
    }


@FAST
@given(valid_specs())
def test_every_generated_valid_ticket_validates_and_cleaning_it_twice_changes_nothing(
        spec: dict[str, Any]) -> None:
    original = copy.deepcopy(spec)
    assert validate_spec(spec) == []
    clean = spec_clean(spec)
    assert spec == original
    assert validate_spec(clean) == []
    assert spec_clean(clean) == clean
    assert all("expected_exit_code" in check for check in clean["definition_of_done"])


# --- one field of the wrong type ---------------------------------------------------------

_ITEM_FIELDS = {
    "code_context": {"path": "string", "line_start": "integer", "line_end": "integer",
                     "content": "string"},
    "definition_of_done": {"name": "string", "command": "array", "expected_exit_code": "integer",
                           "output_must_contain": "array", "output_must_not_contain": "array",
                           "timeout_seconds": "integer"},
}
_TOP_FIELDS = {"schema_version": "const", "title": "string", "objective": "string",
               "code_context": "array", "allowed_paths": "array", "constraints": "array",
               "definition_of_done": "array", "dependencies": "array", "complexity": "integer"}
_STRING_LISTS = {"allowed_paths", "constraints", "dependencies", "command",
                 "output_must_contain", "output_must_not_contain"}


def typed_locations(spec: dict[str, Any]) -> Iterator[tuple[Parts, str]]:
    """Every field and list item present in `spec`, with the JSON type it must have."""
    for name, kind in _TOP_FIELDS.items():
        yield (name,), kind
    for name in ("allowed_paths", "constraints", "dependencies"):
        for index in range(len(spec[name])):
            yield (name, index), "string"
    for name, fields in _ITEM_FIELDS.items():
        for index, item in enumerate(spec[name]):
            yield (name, index), "object"
            for field, kind in fields.items():
                if field in item:
                    yield (name, index, field), kind
                if field in _STRING_LISTS and field in item:
                    for position in range(len(item[field])):
                        yield (name, index, field, position), "string"


_VALUES_BY_TYPE: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "integer": st.integers(),
    "fraction": st.floats(allow_nan=False).filter(lambda f: not f.is_integer()),
    "string": st.text(max_size=8),
    "array": st.lists(st.integers(), max_size=3),
    "object": st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
}


def wrong_values(kind: str) -> st.SearchStrategy[Any]:
    """Values of every JSON type except `kind` (any value but "1" for the schema version)."""
    if kind == "const":
        return st.one_of(*_VALUES_BY_TYPE.values()).filter(lambda v: v != "1")
    others = [strategy for name, strategy in _VALUES_BY_TYPE.items() if name != kind]
    return st.one_of(*others)


@FAST
@given(valid_specs(), st.data())
def test_a_field_of_the_wrong_type_is_reported_at_that_field_and_nowhere_else(
        spec: dict[str, Any], data: st.DataObject) -> None:
    parts, kind = data.draw(st.sampled_from(list(typed_locations(spec))), label="field")
    value = data.draw(wrong_values(kind), label="value")
    node: Any = spec
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value
    field = json_path(parts)

    errors = validate_spec(spec)

    assert errors, f"{field} = {value!r} was accepted"
    assert all(error.path == field or error.path.startswith((f"{field}.", f"{field}["))
               for error in errors), errors


# --- arbitrary input ---------------------------------------------------------------------

# json.loads turns "\ud800" into an unpaired surrogate, so arbitrary input includes them.
json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    | st.sampled_from(["\ud800", "a\udfffb", "\0"]),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)


def _assert_reported(errors: object) -> None:
    assert isinstance(errors, list)
    assert all(isinstance(error, SpecError) and error.path.startswith("$") and error.message
               for error in errors)


@FAST
@given(json_like)
def test_arbitrary_json_never_crashes_the_validator(data: object) -> None:
    errors = validate_spec(data)
    _assert_reported(errors)
    assert errors, "no arbitrary value is a complete ticket"


@FAST
@given(valid_specs(), st.data())
def test_arbitrary_json_anywhere_in_a_ticket_is_reported_not_raised(
        spec: dict[str, Any], data: st.DataObject) -> None:
    parts, _ = data.draw(st.sampled_from(list(typed_locations(spec))), label="field")
    node: Any = spec
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = data.draw(json_like, label="value")
    _assert_reported(validate_spec(spec))
