"""The edit format local coders answer in: parsing, path checks and formatting of edit blocks.

Grammar (one marker per line, each starting at column 0; trailing spaces on a marker line
and Windows line endings are ignored; every line outside a block is prose and skipped, so
explanations and Markdown code fences around blocks are fine):

    <<<<<<< SEARCH <path>        replace the one exact occurrence of the SEARCH lines
    <lines to find>              (at least one line; it must match the file exactly once)
    =======
    <lines to put instead>       (may be empty: the found lines are removed)
    >>>>>>> REPLACE

    <<<<<<< FILE <path>          create the file, or replace its whole content
    <full content>               (every line is content, a '=======' line included)
    >>>>>>> END

    <<<<<<< DELETE <path>        delete the file; nothing may stand between the two markers
    >>>>>>> END

Block text is taken literally, line by line, and ends with a newline; a line of content may
not itself start with '<<<<<<<' or '>>>>>>>' (it would read as a marker), and a SEARCH block's
text may not contain a '=======' line. Paths are relative
POSIX paths inside the repository (see `validate_edit_path`). Whether a path may be changed
at all is the ticket's business (`agents.workspaces.apply_edits`), not the parser's.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from haao.errors import ApplicationError

OPEN = "<<<<<<<"
DIVIDER = "======="
CLOSE = ">>>>>>>"
MAX_PATH_LENGTH = 1024
# Control characters in a path are never intended and confuse logs and terminals.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class EditKind(enum.StrEnum):
    REPLACE = "replace"
    FILE = "file"
    DELETE = "delete"


# Opening keyword -> kind, and the closing keyword each kind expects.
_OPENERS = {"SEARCH": EditKind.REPLACE, "FILE": EditKind.FILE, "DELETE": EditKind.DELETE}
_CLOSERS = {EditKind.REPLACE: "REPLACE", EditKind.FILE: "END", EditKind.DELETE: "END"}


class EditParseError(ApplicationError):
    """The answer holds a malformed edit block; the message names the line."""

    code = "edit_parse_error"


class NoEditsError(EditParseError):
    """The answer is empty or holds no edit block at all."""

    code = "no_edits"


class EditPathError(EditParseError):
    """An edit names a path outside the repository or inside its .git directory."""

    code = "edit_path_refused"


@dataclass(frozen=True)
class Edit:
    """One edit block: `search`/`text` per kind; `line` is where its header stood (1-based)."""

    kind: EditKind
    path: str
    text: str = ""
    search: str = ""
    line: int = field(default=0, compare=False)


def validate_edit_path(path: str) -> str:
    """Return `path` if it is a clean relative POSIX path outside .git, else raise."""
    if not isinstance(path, str) or not path:
        raise EditPathError("The path is empty.")
    shown = path[:200]
    if "\x00" in path:
        raise EditPathError(f"The path {shown!r} contains a NUL character.")
    if _CONTROL.search(path):
        raise EditPathError(f"The path {shown!r} contains a control character.")
    if "\\" in path:
        raise EditPathError(f"The path {shown!r} contains a backslash; use '/' between folders.")
    if len(path) > MAX_PATH_LENGTH:
        raise EditPathError(f"The path {shown!r}… is longer than {MAX_PATH_LENGTH} characters.")
    if path.startswith("/") or path.startswith("~"):
        raise EditPathError(f"The path {shown!r} is absolute; give it relative to the "
                            "repository root.")
    segments = path.split("/")
    if ".." in segments:
        raise EditPathError(f"The path {shown!r} contains a '..' segment.")
    if "" in segments:
        raise EditPathError(f"The path {shown!r} has an empty segment or a trailing '/'.")
    if "." in segments:
        raise EditPathError(f"The path {shown!r} contains a '.' segment; write it without.")
    if any(segment.lower() == ".git" for segment in segments):
        raise EditPathError(f"The path {shown!r} is inside a .git directory.")
    return path


def parse_edits(text: str) -> list[Edit]:
    """Parse every edit block of a model's answer, in order; raise on any malformed block."""
    if not isinstance(text, str) or not text.strip():
        raise NoEditsError("The answer is empty; it must contain at least one edit block.")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    edits: list[Edit] = []
    index = 0
    while index < len(lines):
        marker = lines[index].rstrip()
        number = index + 1
        if marker.startswith(OPEN):
            edit, index = _parse_block(lines, index)
            edits.append(edit)
            continue
        if marker == DIVIDER or marker.startswith(CLOSE):
            raise EditParseError(f"Line {number}: {marker[:40]!r} stands outside any edit block; "
                                 f"a block starts with '{OPEN} SEARCH <path>' or "
                                 f"'{OPEN} FILE <path>'.", details={"line": number})
        index += 1
    if not edits:
        raise NoEditsError(f"The answer holds no edit block; start one with "
                           f"'{OPEN} SEARCH <path>', '{OPEN} FILE <path>' or "
                           f"'{OPEN} DELETE <path>'.")
    return edits


def _parse_header(line: str, number: int) -> tuple[EditKind, str]:
    rest = line.rstrip()[len(OPEN):]
    keyword, _, path = rest.strip().partition(" ")
    if not rest.startswith(" ") or keyword not in _OPENERS:
        raise EditParseError(f"Line {number}: {line.rstrip()[:60]!r} is not a block header; "
                             f"expected '{OPEN} SEARCH <path>', '{OPEN} FILE <path>' or "
                             f"'{OPEN} DELETE <path>'.", details={"line": number})
    path = path.strip()
    if not path:
        raise EditParseError(f"Line {number}: the {keyword} block names no path.",
                             details={"line": number})
    try:
        validate_edit_path(path)
    except EditPathError as error:
        raise EditPathError(f"Line {number}: {error.message}",
                            details={"line": number, "path": path[:200]}) from None
    return _OPENERS[keyword], path


def _parse_block(lines: list[str], start: int) -> tuple[Edit, int]:
    """Parse the block whose header is lines[start]; return it and the index after it."""
    header = start + 1
    kind, path = _parse_header(lines[start], header)
    closer = f"{CLOSE} {_CLOSERS[kind]}"
    sections: list[list[str]] = [[]]
    index = start + 1
    while index < len(lines):
        raw = lines[index]
        marker = raw.rstrip()
        number = index + 1
        if marker.startswith(OPEN):
            raise EditParseError(f"Line {number}: a new block starts before the block opened "
                                 f"at line {header} ({path}) was closed with '{closer}'.",
                                 details={"line": number})
        if marker == DIVIDER and kind is EditKind.REPLACE:
            if len(sections) == 2:
                raise EditParseError(f"Line {number}: a second '{DIVIDER}' in the SEARCH block "
                                     f"opened at line {header} ({path}).",
                                     details={"line": number})
            sections.append([])
        elif marker.startswith(CLOSE):
            if marker != closer:
                raise EditParseError(f"Line {number}: {marker[:40]!r} closes the block opened "
                                     f"at line {header} ({path}); expected '{closer}'.",
                                     details={"line": number})
            return _finish(kind, path, sections, header, number), index + 1
        else:
            sections[-1].append(raw)
        index += 1
    expected = f"'{DIVIDER}' and '{closer}'" if len(sections) == 1 and kind is EditKind.REPLACE \
        else f"'{closer}'"
    raise EditParseError(f"Line {header}: the block for {path} is never closed; expected "
                         f"{expected}.", details={"line": header})


def _finish(kind: EditKind, path: str, sections: list[list[str]], header: int,
            closing: int) -> Edit:
    if kind is EditKind.DELETE:
        if any(line.strip() for line in sections[0]):
            raise EditParseError(f"Line {header}: the DELETE block for {path} must be empty.",
                                 details={"line": header})
        return Edit(kind=kind, path=path, line=header)
    if kind is EditKind.FILE:
        return Edit(kind=kind, path=path, text=_join(sections[0]), line=header)
    if len(sections) < 2:
        raise EditParseError(f"Line {closing}: the SEARCH block opened at line {header} "
                             f"({path}) has no '{DIVIDER}' line between the text to find and "
                             "its replacement.", details={"line": closing})
    search, replace = sections
    if not "".join(search).strip():
        raise EditParseError(f"Line {header}: the SEARCH block for {path} has nothing to search "
                             "for; use a FILE block to create or overwrite a file.",
                             details={"line": header})
    return Edit(kind=kind, path=path, search=_join(search), text=_join(replace), line=header)


def _join(lines: list[str]) -> str:
    return "".join(f"{line}\n" for line in lines)


def format_edits(edits: Iterable[Edit]) -> str:
    """Write edits in the block grammar; `parse_edits(format_edits(e))` gives `e` back."""
    blocks = []
    for edit in edits:
        if edit.kind is EditKind.REPLACE:
            blocks.append(f"{OPEN} SEARCH {edit.path}\n{edit.search}{DIVIDER}\n"
                          f"{edit.text}{CLOSE} REPLACE\n")
        elif edit.kind is EditKind.FILE:
            blocks.append(f"{OPEN} FILE {edit.path}\n{edit.text}{CLOSE} END\n")
        else:
            blocks.append(f"{OPEN} DELETE {edit.path}\n{CLOSE} END\n")
    return "\n".join(blocks)
