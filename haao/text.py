"""Input text HAAO can store and show: valid Unicode (encodable as UTF-8) and not nested
without end. One home for the check, used by the API's JSON parser (haao/parsers.py) and the
portal's JSON form fields; and the one way readers render text already stored."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

# Deepest nesting of arrays and objects accepted in a request body or a JSON form field; the
# deepest legitimate input (an Atomic Ticket inside a request) needs far fewer levels.
MAX_JSON_DEPTH = 64
UNPAIRED_SURROGATE = "must be valid Unicode text (it contains an unpaired surrogate)"
# The user name and password part of any URL in a text ("https://bot:token@host/…").
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")


class TextInvalid(ValueError):
    """A value that cannot be stored: `path` names where (e.g. "rules.denied_paths[2]")."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


def is_encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def redact_userinfo(text: str) -> str:
    """Drop user:password@ from any URL in `text`, so credentials never reach a message, a log
    or a page."""
    return _URL_USERINFO.sub("***@", text)


def displayable(text: str) -> str:
    """`text` as a reader shows it: any URL's credentials redacted (rows stored before URLs
    with them were refused), every character UTF-8 cannot carry (a lone surrogate) as U+FFFD."""
    if "@" in text:
        text = redact_userinfo(text)
    if is_encodable(text):
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def displayable_data(value: Any) -> Any:
    """A copy of stored JSON data with every string (and key) made `displayable`."""
    if isinstance(value, str):
        return displayable(value)
    if isinstance(value, dict):
        return {displayable(str(key)): displayable_data(item) for key, item in value.items()}
    if isinstance(value, list):
        return [displayable_data(item) for item in value]
    return value


def _path(parts: tuple[str | int, ...]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _walk(data: Any) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """Every value with its path, iteratively (a deep document must not exhaust the stack)."""
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), data)]
    while stack:
        parts, value = stack.pop()
        yield parts, value
        if isinstance(value, dict):
            stack.extend(((*parts, key), item) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend(((*parts, index), item) for index, item in enumerate(value))


def check_data(data: Any, *, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise TextInvalid naming the first value that is nested too deeply or is not valid
    Unicode text (a key or a string with an unpaired surrogate)."""
    for parts, value in _walk(data):
        if len(parts) > max_depth:
            raise TextInvalid(_path(parts[:max_depth]),
                              f"is nested too deeply: at most {max_depth} levels")
        if isinstance(value, dict):
            for key in value:
                if isinstance(key, str) and not is_encodable(key):
                    raise TextInvalid(_path((*parts, displayable(key))), UNPAIRED_SURROGATE)
        elif isinstance(value, str) and not is_encodable(value):
            raise TextInvalid(_path(tuple(displayable(p) if isinstance(p, str) else p
                                          for p in parts)), UNPAIRED_SURROGATE)


def loads(text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """json.loads that refuses what check_data refuses (ValueError, or TextInvalid)."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise TextInvalid("", f"is nested too deeply: at most {max_depth} levels") from None
    check_data(data, max_depth=max_depth)
    return data


# Spreadsheet programs run cells that start with these as formulas (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    """A cell a spreadsheet shows as text: formula-like values get a leading apostrophe."""
    text = "" if value is None else displayable(str(value))
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text
