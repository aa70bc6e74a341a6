"""The edit block format: what a coder's answer turns into, and how bad answers are named."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.edits import (
    Edit,
    EditKind,
    EditParseError,
    EditPathError,
    NoEditsError,
    format_edits,
    parse_edits,
    validate_edit_path,
)

ANSWER = """I found the defect: totals round through float.

```python
<<<<<<< SEARCH invoice_calc/totals.py
    return Decimal(str(round(float(amount), 2)))
=======
    return amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
>>>>>>> REPLACE
```

And a note for the changelog:

```
<<<<<<< FILE CHANGES.md
Totals
======
Round half a cent up.
>>>>>>> END
```
"""


def test_blocks_are_read_in_order_around_prose_and_code_fences() -> None:
    edits = parse_edits(ANSWER)

    assert edits == [
        Edit(kind=EditKind.REPLACE, path="invoice_calc/totals.py",
             search="    return Decimal(str(round(float(amount), 2)))\n",
             text='    return amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)\n'),
        Edit(kind=EditKind.FILE, path="CHANGES.md",
             text="Totals\n======\nRound half a cent up.\n"),
    ]
    assert [edit.line for edit in edits] == [4, 14]


def test_windows_line_endings_and_trailing_spaces_on_markers_are_accepted() -> None:
    text = "<<<<<<< SEARCH a.py  \r\nold\r\n=======   \r\nnew\r\n>>>>>>> REPLACE \r\n"

    assert parse_edits(text) == [Edit(kind=EditKind.REPLACE, path="a.py", search="old\n",
                                      text="new\n")]


def test_a_delete_block_and_an_empty_replacement_are_understood() -> None:
    text = ("<<<<<<< DELETE old.py\n>>>>>>> END\n"
            "<<<<<<< SEARCH a.py\ndrop me\n=======\n>>>>>>> REPLACE\n")

    assert parse_edits(text) == [
        Edit(kind=EditKind.DELETE, path="old.py"),
        Edit(kind=EditKind.REPLACE, path="a.py", search="drop me\n", text=""),
    ]


@pytest.mark.parametrize("text", ["", "   \n\n", "Sorry, I cannot help with that.\n"])
def test_an_answer_without_blocks_gets_its_own_error(text: str) -> None:
    with pytest.raises(NoEditsError) as caught:
        parse_edits(text)

    assert caught.value.code == "no_edits"


@pytest.mark.parametrize(("text", "line", "words"), [
    ("intro\n<<<<<<< SEARCH a.py\nold\n>>>>>>> REPLACE\n", 4, "no '======='"),
    ("<<<<<<< SEARCH a.py\nold\n=======\nnew\n", 1, "never closed"),
    ("<<<<<<< FILE a.py\nx\n>>>>>>> REPLACE\n", 3, "expected '>>>>>>> END'"),
    ("<<<<<<< SEARCH a.py\nold\n=======\nnew\n>>>>>>> END\n", 5, "expected '>>>>>>> REPLACE'"),
    ("<<<<<<< SEARCH a.py\nold\n=======\n<<<<<<< SEARCH b.py\n", 4, "was closed"),
    ("<<<<<<< PATCH a.py\n>>>>>>> END\n", 1, "not a block header"),
    ("<<<<<<<SEARCH a.py\n", 1, "not a block header"),
    ("<<<<<<< FILE\nx\n>>>>>>> END\n", 1, "names no path"),
    ("text\n=======\n", 2, "outside any edit block"),
    ("text\n\n>>>>>>> REPLACE\n", 3, "outside any edit block"),
    ("<<<<<<< SEARCH a.py\n\n=======\nnew\n>>>>>>> REPLACE\n", 1, "nothing to search"),
    ("<<<<<<< SEARCH a.py\na\n=======\nb\n=======\nc\n>>>>>>> REPLACE\n", 5, "second"),
    ("<<<<<<< DELETE a.py\nsomething\n>>>>>>> END\n", 1, "must be empty"),
])
def test_a_malformed_block_is_named_by_its_line(text: str, line: int, words: str) -> None:
    with pytest.raises(EditParseError) as caught:
        parse_edits(text)

    assert caught.value.message.startswith(f"Line {line}:")
    assert words in caught.value.message
    assert caught.value.details["line"] == line
    assert not isinstance(caught.value, NoEditsError)


@pytest.mark.parametrize(("path", "words"), [
    ("/etc/passwd", "absolute"),
    ("~/.bashrc", "absolute"),
    ("../outside.py", "'..'"),
    ("src/../../x.py", "'..'"),
    ("src\\win.py", "backslash"),
    ("a\x00b.py", "NUL"),
    ("a\x1bb.py", "control"),
    (".git/config", ".git"),
    ("sub/.GIT/hooks/pre-commit", ".git"),
    ("src//a.py", "empty segment"),
    ("src/", "trailing"),
    ("./a.py", "'.'"),
])
def test_paths_outside_the_repository_are_refused(path: str, words: str) -> None:
    with pytest.raises(EditPathError) as caught:
        validate_edit_path(path)

    assert words in caught.value.message


def test_a_refused_path_in_a_block_names_the_line() -> None:
    with pytest.raises(EditPathError) as caught:
        parse_edits("ok\n<<<<<<< FILE .git/config\n[core]\n>>>>>>> END\n")

    assert caught.value.message.startswith("Line 2:")
    assert ".git" in caught.value.message


def test_ordinary_paths_are_accepted() -> None:
    for path in ("a.py", "src/pkg/mod.py", ".github/workflows/ci.yml", "docs/my notes.md",
                 ".gitignore", "a..b.py"):
        assert validate_edit_path(path) == path


_segment = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-.", min_size=1,
                   max_size=12).filter(lambda s: s not in {".", ".."} and s.lower() != ".git")
_paths = st.lists(_segment, min_size=1, max_size=4).map("/".join)
# Lines that cannot be read as markers, with any printable text including '<' and '='.
_line = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=40).filter(
    lambda s: not s.startswith(("<<<<<<<", ">>>>>>>")) and s.rstrip() != "=======")
_body = st.lists(_line, max_size=6).map(lambda lines: "".join(f"{x}\n" for x in lines))
_search = st.lists(_line, min_size=1, max_size=6).filter(
    lambda lines: "".join(lines).strip() != "").map(lambda lines: "".join(f"{x}\n" for x in lines))
_edits = st.one_of(
    st.builds(Edit, kind=st.just(EditKind.REPLACE), path=_paths, search=_search, text=_body),
    st.builds(Edit, kind=st.just(EditKind.FILE), path=_paths, text=_body),
    st.builds(Edit, kind=st.just(EditKind.DELETE), path=_paths),
)


@given(st.lists(_edits, min_size=1, max_size=5), _body)
def test_formatted_blocks_parse_back_to_the_same_edits(edits: list[Edit], prose: str) -> None:
    text = f"{prose}\n" + format_edits(edits) + f"\n{prose}"

    assert parse_edits(text) == edits
