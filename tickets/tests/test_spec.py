"""The Atomic Ticket schema and HAAO's rules: each broken rule is reported at the right path."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from haao.errors import ApplicationError
from tickets.spec import (
    SCHEMA_VERSION,
    SpecError,
    SpecInvalid,
    json_path,
    load_schema,
    spec_clean,
    validate_spec,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "atomic-ticket.md"
Spec = dict[str, Any]


def example() -> Spec:
    """A fresh copy of the complete ticket shown in the schema's `examples`."""
    spec: Spec = copy.deepcopy(load_schema()["examples"][0])
    return spec


def paths(errors: list[SpecError]) -> list[str]:
    return [error.path for error in errors]


def _walk_schemas(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for key, value in node.items():
            if key not in ("examples", "default", "const"):
                yield from _walk_schemas(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk_schemas(item)


# --- the schema itself -------------------------------------------------------------------


def test_the_schema_is_a_valid_draft_2020_12_schema_with_its_published_id() -> None:
    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == "https://haao.dev/schemas/atomic-ticket/v1.json"
    assert schema["properties"]["schema_version"]["const"] == SCHEMA_VERSION


def test_every_object_in_the_schema_refuses_unknown_properties() -> None:
    objects = [node for node in _walk_schemas(load_schema()) if node.get("type") == "object"]
    assert len(objects) == 3  # the ticket, a code excerpt, a check
    assert all(node.get("additionalProperties") is False for node in objects)


def test_every_property_in_the_schema_is_described() -> None:
    undescribed = [name for node in _walk_schemas(load_schema())
                   for name, prop in node.get("properties", {}).items()
                   if not prop.get("description")]
    assert undescribed == []


def test_the_schema_example_is_a_valid_ticket() -> None:
    assert validate_spec(example()) == []


def test_the_documentation_shows_the_same_example_as_the_schema() -> None:
    blocks = re.findall(r"```json\n(.*?)\n```", DOCS.read_text(encoding="utf-8"), re.DOTALL)
    documented = [json.loads(block) for block in blocks]
    assert example() in documented


def test_the_small_spec_the_test_factories_use_is_valid() -> None:
    from tests.factories import spec_example

    assert validate_spec(spec_example()) == []


def test_callers_get_their_own_copy_of_the_schema() -> None:
    load_schema()["properties"].clear()
    assert "title" in load_schema()["properties"]
    assert validate_spec(example()) == []


# --- valid edge cases --------------------------------------------------------------------


@pytest.mark.parametrize("change", [
    pytest.param(lambda s: s.update(code_context=[]), id="no code context"),
    pytest.param(lambda s: s.update(constraints=[], dependencies=[]), id="no constraints or deps"),
    pytest.param(lambda s: s.update(title="t" * 200, objective="o" * 4000), id="longest texts"),
    pytest.param(lambda s: s.update(allowed_paths=["src/pkg/*.py", "docs/?.md", "a/**/b.txt"]),
                 id="simple globs"),
    pytest.param(lambda s: s.update(dependencies=["PAY-12", "AB-1", "A123456789-7", "#1", "#12"]),
                 id="every kind of ticket ref"),
    pytest.param(lambda s: s["code_context"][0].update(line_start=5, line_end=5), id="one line"),
    pytest.param(lambda s: s["definition_of_done"][0].update(expected_exit_code=255,
                                                           timeout_seconds=3600),
                 id="highest exit code and timeout"),
    pytest.param(lambda s: s["definition_of_done"][0].update(command=["make", ""]),
                 id="empty argument after the program"),
    pytest.param(lambda s: s.update(complexity=5), id="highest complexity"),
    pytest.param(lambda s: s["code_context"][0].update(content="é" * 32768), id="content 64 KiB"),
])
def test_these_tickets_are_valid(change: Callable[[Spec], None]) -> None:
    spec = example()
    change(spec)
    assert validate_spec(spec) == []


# --- every rule broken once --------------------------------------------------------------

REQUIRED = [
    ("schema_version",), ("title",), ("objective",), ("code_context",), ("allowed_paths",),
    ("constraints",), ("definition_of_done",), ("dependencies",), ("complexity",),
    ("code_context", 0, "path"), ("code_context", 0, "line_start"),
    ("code_context", 0, "line_end"), ("code_context", 0, "content"),
    ("definition_of_done", 0, "name"), ("definition_of_done", 0, "command"),
    ("definition_of_done", 0, "timeout_seconds"),
]


def _parent(spec: Spec, parts: tuple[Any, ...]) -> Any:
    node: Any = spec
    for part in parts[:-1]:
        node = node[part]
    return node


@pytest.mark.parametrize("parts", REQUIRED, ids=json_path)
def test_a_missing_required_field_is_reported_at_its_own_path(parts: tuple[Any, ...]) -> None:
    spec = example()
    del _parent(spec, parts)[parts[-1]]
    assert validate_spec(spec) == [SpecError(json_path(parts), "is required")]


WRONG_TYPES = [
    (("schema_version",), 1, 'must be "1"'),
    (("title",), ["a title"], "must be a string"),
    (("objective",), None, "must be a string"),
    (("code_context",), {"path": "a.py"}, "must be an array"),
    (("allowed_paths",), "billing/totals.py", "must be an array"),
    (("constraints",), "no floats", "must be an array"),
    (("definition_of_done",), {"name": "tests"}, "must be an array"),
    (("dependencies",), "PAY-12", "must be an array"),
    (("complexity",), "2", "must be an integer"),
    (("complexity",), 2.5, "must be an integer"),
    (("complexity",), True, "must be an integer"),
    (("code_context", 1), "billing/models.py", "must be an object"),
    (("code_context", 0, "path"), 7, "must be a string"),
    (("code_context", 0, "line_start"), "1", "must be an integer"),
    (("code_context", 0, "line_end"), None, "must be an integer"),
    (("code_context", 0, "content"), ["line"], "must be a string"),
    (("allowed_paths", 1), 42, "must be a string"),
    (("constraints", 2), {"rule": "x"}, "must be a string"),
    (("definition_of_done", 2), ["ruff", "check"], "must be an object"),
    (("definition_of_done", 0, "name"), 3, "must be a string"),
    (("definition_of_done", 0, "command", 1), 5, "must be a string"),
    (("definition_of_done", 0, "expected_exit_code"), "0", "must be an integer"),
    (("definition_of_done", 0, "output_must_contain"), "passed", "must be an array"),
    (("definition_of_done", 0, "output_must_contain", 0), 1, "must be a string"),
    (("definition_of_done", 0, "output_must_not_contain"), "failed", "must be an array"),
    (("definition_of_done", 0, "timeout_seconds"), "300", "must be an integer"),
    (("dependencies", 0), 12, "must be a string"),
]


@pytest.mark.parametrize("parts,value,message", WRONG_TYPES,
                         ids=[f"{json_path(p)}={v!r}" for p, v, _ in WRONG_TYPES])
def test_a_value_of_the_wrong_type_is_reported_at_its_own_path(
        parts: tuple[Any, ...], value: object, message: str) -> None:
    spec = example()
    _parent(spec, parts)[parts[-1]] = value
    assert validate_spec(spec) == [SpecError(json_path(parts), message)]


def _set(parts: tuple[Any, ...], value: object) -> Callable[[Spec], tuple[Any, ...]]:
    def change(spec: Spec) -> tuple[Any, ...]:
        _parent(spec, parts)[parts[-1]] = value
        return parts
    return change


def _excerpts(count: int, size: int) -> list[dict[str, Any]]:
    return [{"path": f"src/f{n}.py", "line_start": 1, "line_end": 1, "content": "x" * size}
            for n in range(count)]


def _check(n: int) -> dict[str, Any]:
    return {"name": f"check {n}", "command": ["true"], "timeout_seconds": 1}


DOD = "definition_of_done"
BROKEN = [
    # texts and counts at their limits, plus one
    ("empty title", _set(("title",), ""), "must not be empty"),
    ("long title", _set(("title",), "t" * 201), "must be at most 200 characters"),
    ("empty objective", _set(("objective",), ""), "must not be empty"),
    ("long objective", _set(("objective",), "o" * 4001), "must be at most 4000 characters"),
    ("51 excerpts", _set(("code_context",), _excerpts(51, 1)), "must have at most 50 items"),
    ("long content", _set(("code_context", 0, "content"), "x" * 65537),
     "must be at most 65536 characters"),
    ("content over 64 KiB in UTF-8", _set(("code_context", 0, "content"), "é" * 32769),
     "is too large: 65538 bytes, at most 65536"),
    ("line 0", _set(("code_context", 0, "line_start"), 0), "must be at least 1"),
    ("no allowed path", _set(("allowed_paths",), []), "must have at least 1 item"),
    ("101 allowed paths", _set(("allowed_paths",), [f"f{n}.py" for n in range(101)]),
     "must have at most 100 items"),
    ("empty allowed path", _set(("allowed_paths", 0), ""), "must not be empty"),
    ("long allowed path", _set(("allowed_paths", 0), "a" * 1001),
     "must be at most 1000 characters"),
    ("51 constraints", _set(("constraints",), ["c"] * 51), "must have at most 50 items"),
    ("empty constraint", _set(("constraints", 0), ""), "must not be empty"),
    ("long constraint", _set(("constraints", 0), "c" * 1001), "must be at most 1000 characters"),
    ("no check", _set((DOD,), []), "must have at least 1 item"),
    ("21 checks", _set((DOD,), [_check(n) for n in range(21)]), "must have at most 20 items"),
    ("empty check name", _set((DOD, 0, "name"), ""), "must not be empty"),
    ("long check name", _set((DOD, 0, "name"), "n" * 201), "must be at most 200 characters"),
    ("empty command", _set((DOD, 0, "command"), []), "must have at least 1 item"),
    ("101 arguments", _set((DOD, 0, "command"), ["echo"] * 101), "must have at most 100 items"),
    ("long argument", _set((DOD, 0, "command", 1), "a" * 4097),
     "must be at most 4096 characters"),
    ("exit code -1", _set((DOD, 0, "expected_exit_code"), -1), "must be at least 0"),
    ("exit code 256", _set((DOD, 0, "expected_exit_code"), 256), "must be at most 255"),
    ("21 expected texts", _set((DOD, 0, "output_must_contain"), ["ok"] * 21),
     "must have at most 20 items"),
    ("empty expected text", _set((DOD, 0, "output_must_contain", 0), ""), "must not be empty"),
    ("empty forbidden text", _set((DOD, 0, "output_must_not_contain", 1), ""),
     "must not be empty"),
    ("timeout 0", _set((DOD, 1, "timeout_seconds"), 0), "must be at least 1"),
    ("timeout 3601", _set((DOD, 1, "timeout_seconds"), 3601), "must be at most 3600"),
    ("complexity 0", _set(("complexity",), 0), "must be at least 1"),
    ("complexity 6", _set(("complexity",), 6), "must be at most 5"),
    ("51 dependencies", _set(("dependencies",), [f"PAY-{n}" for n in range(51)]),
     "must have at most 50 items"),
    ("schema version 2", _set(("schema_version",), "2"), 'must be "1"'),
    # unknown properties, at the top and nested
    ("unknown top-level property", _set(("priority",), "high"),
     "is not allowed (unknown property)"),
    ("unknown excerpt property", _set(("code_context", 1, "language"), "python"),
     "is not allowed (unknown property)"),
    ("unknown check property", _set((DOD, 2, "shell"), True), "is not allowed (unknown property)"),
    ("unknown property needing brackets", _set(("code_context", 0, "line end"), 3),
     "is not allowed (unknown property)"),
    # ticket references
    ("lower-case ref", _set(("dependencies", 0), "pay-12"),
     "must be a ticket reference like PAY-12 or #2"),
    ("one-letter project", _set(("dependencies", 0), "P-12"),
     "must be a ticket reference like PAY-12 or #2"),
    ("11-character project", _set(("dependencies", 0), "PAYMENTSABC-1"),
     "must be a ticket reference like PAY-12 or #2"),
    ("ref without number", _set(("dependencies", 0), "PAY-"),
     "must be a ticket reference like PAY-12 or #2"),
    ("ref with spaces", _set(("dependencies", 0), " PAY-12"),
     "must be a ticket reference like PAY-12 or #2"),
    ("position 0", _set(("dependencies", 1), "#0"),
     "must be a ticket reference like PAY-12 or #2"),
    ("position not a number", _set(("dependencies", 1), "#two"),
     "must be a ticket reference like PAY-12 or #2"),
    ("repeated dependency", _set(("dependencies", 1), "PAY-12"),
     "must not repeat an earlier dependency ($.dependencies[0])"),
    # commands are argv lists, never shell strings
    ("shell-string command", _set((DOD, 0, "command"), "pytest -q && echo ok"),
     "must be a list of arguments, not a shell string"),
    ("NUL in an argument", _set((DOD, 0, "command", 2), "-q\0rm"), "must not contain a NUL byte"),
    ("empty program", _set((DOD, 0, "command", 0), ""),
     "must not be empty (it names the program to run)"),
    # paths stay inside the repository
    ("'..' in an allowed path", _set(("allowed_paths", 0), "billing/../../etc/passwd"),
     "must not contain a '..' segment"),
    ("'..' alone", _set(("allowed_paths", 1), ".."), "must not contain a '..' segment"),
    ("absolute allowed path", _set(("allowed_paths", 0), "/etc/passwd"),
     "must be a relative path (no leading /)"),
    ("backslash in an allowed path", _set(("allowed_paths", 0), "billing\\totals.py"),
     "must use / as the separator, not a backslash"),
    ("NUL in an allowed path", _set(("allowed_paths", 0), "billing/totals.py\0"),
     "must not contain a NUL byte"),
    ("bracket glob", _set(("allowed_paths", 0), "billing/[a-z].py"),
     "must be a path or a simple glob using only * and ?"),
    ("brace glob", _set(("allowed_paths", 0), "billing/{a,b}.py"),
     "must be a path or a simple glob using only * and ?"),
    ("'..' in an excerpt path", _set(("code_context", 1, "path"), "../secrets.py"),
     "must not contain a '..' segment"),
    ("absolute excerpt path", _set(("code_context", 1, "path"), "/srv/app/billing/models.py"),
     "must be a relative path (no leading /)"),
    ("backslash in an excerpt path", _set(("code_context", 0, "path"), "billing\\totals.py"),
     "must use / as the separator, not a backslash"),
    ("NUL in an excerpt path", _set(("code_context", 0, "path"), "a\0b"),
     "must not contain a NUL byte"),
    # text PostgreSQL can store
    ("NUL in a title", _set(("title",), "Round\0totals"), "must not contain a NUL byte"),
    ("NUL in a constraint", _set(("constraints", 1), "no\0floats"), "must not contain a NUL byte"),
    ("unpaired surrogate in an objective", _set(("objective",), "broken \ud800 text"),
     "must be valid Unicode text (it contains an unpaired surrogate)"),
    ("unpaired surrogate in content", _set(("code_context", 0, "content"), "\udfff"),
     "must be valid Unicode text (it contains an unpaired surrogate)"),
    # line ranges
    ("line range reversed", _set(("code_context", 1, "line_end"), 13),
     "must be at least line_start (14)"),
]


@pytest.mark.parametrize("change,message", [pytest.param(c, m, id=i) for i, c, m in BROKEN])
def test_a_broken_rule_is_reported_once_at_exactly_the_right_path(
        change: Callable[[Spec], tuple[Any, ...]], message: str) -> None:
    spec = example()
    parts = change(spec)
    assert validate_spec(spec) == [SpecError(json_path(parts), message)]


def test_a_ticket_over_256_kib_is_too_large_as_a_whole() -> None:
    spec = example()
    spec["code_context"] = _excerpts(5, 60000)
    size = len(json.dumps(spec, ensure_ascii=False, separators=(",", ":")).encode())
    assert size > 262144
    assert validate_spec(spec) == [SpecError("$", f"is too large: {size} bytes, at most 262144")]


def test_a_ticket_of_exactly_256_kib_is_not_too_large() -> None:
    spec = example()
    spec["code_context"] = _excerpts(5, 0)
    size = len(json.dumps(spec, ensure_ascii=False, separators=(",", ":")).encode())
    for excerpt in spec["code_context"][:4]:
        excerpt["content"] = "x" * 60000
    spec["code_context"][4]["content"] = "x" * (262144 - size - 4 * 60000)
    assert len(json.dumps(spec, ensure_ascii=False, separators=(",", ":")).encode()) == 262144
    assert validate_spec(spec) == []


# --- several errors, paths and the exception ---------------------------------------------


def test_every_error_is_reported_at_once_sorted_by_path() -> None:
    spec = example()
    del spec["title"]
    spec["complexity"] = 9
    spec["allowed_paths"] = ["/etc/passwd", "ok.py", "../up"]
    spec["definition_of_done"][2]["command"] = "ruff check ."
    spec["definition_of_done"][0]["timeout_seconds"] = 0
    spec["code_context"][0]["line_start"] = 20
    spec["dependencies"] = ["PAY-1", "PAY-1", *[f"bad{n}" for n in range(10)]]
    assert validate_spec(spec) == [
        SpecError("$.allowed_paths[0]", "must be a relative path (no leading /)"),
        SpecError("$.allowed_paths[2]", "must not contain a '..' segment"),
        SpecError("$.code_context[0].line_end", "must be at least line_start (20)"),
        SpecError("$.complexity", "must be at most 5"),
        SpecError("$.definition_of_done[0].timeout_seconds", "must be at least 1"),
        SpecError("$.definition_of_done[2].command",
                  "must be a list of arguments, not a shell string"),
        SpecError("$.dependencies[1]", "must not repeat an earlier dependency ($.dependencies[0])"),
        *[SpecError(f"$.dependencies[{n}]", "must be a ticket reference like PAY-12 or #2")
          for n in range(2, 12)],
        SpecError("$.title", "is required"),
    ]


def test_deeply_nested_input_is_refused_at_the_value_that_is_too_deep() -> None:
    spec = example()
    nested: list[Any] = []
    for _ in range(5000):
        nested = [nested]
    spec["definition_of_done"][0]["command"] = nested
    too_deep = "$.definition_of_done[0].command" + "[0]" * (32 - 3)
    assert validate_spec(spec) == [SpecError(too_deep, "is nested too deeply: at most 32 levels")]


def test_a_ticket_parsed_from_json_escapes_is_checked_like_any_other() -> None:
    body = json.dumps(example()).replace('"lint"', '"lint\\u0000"')
    assert validate_spec(json.loads(body)) == [
        SpecError("$.definition_of_done[2].name", "must not contain a NUL byte")]


def test_all_missing_fields_of_an_empty_object_are_reported() -> None:
    assert validate_spec({}) == [SpecError(f"$.{name}", "is required") for name in sorted(
        load_schema()["required"])]


@pytest.mark.parametrize("data", [None, [], "{}", 3, True], ids=repr)
def test_something_other_than_an_object_is_refused_as_a_whole(data: object) -> None:
    assert validate_spec(data) == [SpecError("$", "must be an object")]


def test_json_paths_name_indices_and_quote_odd_keys() -> None:
    assert json_path(()) == "$"
    assert json_path(("definition_of_done", 2, "timeout_seconds")) == \
        "$.definition_of_done[2].timeout_seconds"
    assert json_path(("code_context", 0, "it's odd")) == "$.code_context[0]['it\\'s odd']"


def test_an_invalid_spec_raises_an_application_error_listing_every_error() -> None:
    spec = example()
    spec["title"] = ""
    spec["complexity"] = 0
    with pytest.raises(SpecInvalid) as raised:
        spec_clean(spec)
    error = raised.value
    assert isinstance(error, ApplicationError)
    assert (error.code, error.status) == ("spec_invalid", 400)
    assert error.message == "Invalid ticket spec: $.complexity must be at least 1 (and 1 more)."
    assert error.details == {"errors": [
        {"path": "$.complexity", "message": "must be at least 1"},
        {"path": "$.title", "message": "must not be empty"},
    ]}


def test_a_single_error_message_names_its_path_without_a_count() -> None:
    with pytest.raises(SpecInvalid, match=r"^Invalid ticket spec: \$\.title is required\.$"):
        spec_clean({k: v for k, v in example().items() if k != "title"})


# --- normalization -----------------------------------------------------------------------


def test_clean_fills_in_the_default_exit_code_without_touching_the_input() -> None:
    spec = example()
    original = copy.deepcopy(spec)
    clean = spec_clean(spec)
    assert spec == original
    assert [check["expected_exit_code"] for check in clean["definition_of_done"]] == [0, 1, 0]
    assert "expected_exit_code" not in spec["definition_of_done"][2]


def test_clean_stores_whole_number_floats_as_integers() -> None:
    spec = example()
    spec["complexity"] = 3.0
    spec["definition_of_done"][0]["timeout_seconds"] = 60.0
    clean = spec_clean(spec)
    assert clean["complexity"] == 3 and type(clean["complexity"]) is int
    assert type(clean["definition_of_done"][0]["timeout_seconds"]) is int


def test_clean_returns_an_independent_copy() -> None:
    spec = example()
    clean = spec_clean(spec)
    clean["allowed_paths"].append("elsewhere.py")
    assert "elsewhere.py" not in spec["allowed_paths"]
