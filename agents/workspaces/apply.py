"""Apply parsed edits to an attempt worktree: every check first, then all writes or none.

Host-side code never follows a symlink that exists inside a worktree: each path is walked
component by component from an open directory descriptor with O_NOFOLLOW, and a symlink,
special file or file-where-a-folder-should-be anywhere on the way refuses the whole set.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import os
import re
import stat
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from agents.edits import Edit, EditKind, EditPathError, validate_edit_path
from agents.workspaces.git import git
from haao.errors import ApplicationError

DEFAULT_MAX_FILE_BYTES = 1024 * 1024
DEFAULT_MAX_CHANGED_LINES = 2000
SEARCH_EXCERPT_LINES = 3
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class EditRefused(ApplicationError):
    """Policy forbids the edits (a path, a symlink, a size); nothing was written."""

    code = "edit_refused"


# The code of an EditRefused for a change larger than the policy's max_changed_lines: a
# policy rule (recorded as a refusal), where the others protect the worktree.
CHANGE_TOO_LARGE = "change_too_large"


class EditNotApplicable(ApplicationError):
    """An edit does not fit the files as they are (e.g. SEARCH text not found once)."""

    code = "edit_not_applicable"


@dataclass(frozen=True)
class AppliedChange:
    """What one apply_edits call changed in the worktree."""

    created: list[str]
    modified: list[str]
    deleted: list[str]
    added_lines: int
    removed_lines: int

    @property
    def paths(self) -> list[str]:
        return sorted({*self.created, *self.modified, *self.deleted})


@cache
def _glob_regex(pattern: str) -> re.Pattern[str]:
    # '*' and '?' never cross '/', unlike fnmatch's, so "src/*.py" does not allow "src/a/b.py".
    parts = [("[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char))
             for char in pattern]
    return re.compile("".join(parts))


def check_patterns(patterns: Sequence[str], *, what: str) -> list[str]:
    """Return the path patterns if each is a clean relative path or simple glob, else raise."""
    if isinstance(patterns, str):
        raise ApplicationError(f"The {what} must be a list of paths, not one string.",
                               code="invalid_paths")
    checked = []
    for pattern in patterns:
        try:
            validate_edit_path(pattern)
        except EditPathError as error:
            raise ApplicationError(f"The {what} entry {pattern!r} is invalid: {error.message}",
                                   code="invalid_paths") from None
        if any(char in pattern for char in "[]{}"):
            raise ApplicationError(f"The {what} entry {pattern!r} may use only '*' and '?' as "
                                   "wildcards.", code="invalid_paths")
        checked.append(pattern)
    return checked


def path_allowed(path: str, patterns: Sequence[str]) -> bool:
    """True if path equals one of the patterns or matches it as a simple glob."""
    return any(_glob_regex(pattern).fullmatch(path) for pattern in patterns)


def apply_edits(*, worktree: Path, edits: Sequence[Edit], allowed_paths: Sequence[str],
                denied_paths: Sequence[str] = (),
                max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
                max_changed_lines: int = DEFAULT_MAX_CHANGED_LINES,
                git_env: Mapping[str, str] | None = None) -> AppliedChange:
    """Check every edit against the ticket's paths and limits, then write them all and stage.

    `git_env` points git at a checkout's repository and index (agents.workspaces.checkouts);
    without it the worktree's own `.git` is used."""
    allowed = check_patterns(allowed_paths, what="allowed paths")
    denied = check_patterns(denied_paths, what="denied paths")
    if not edits:
        raise EditNotApplicable("There are no edits to apply.", code="no_edits")
    for edit in edits:
        validate_edit_path(edit.path)
    refused = sorted({edit.path for edit in edits
                      if not path_allowed(edit.path, allowed) or path_allowed(edit.path, denied)})
    if refused:
        rules = f"allowed: {', '.join(allowed) or 'nothing'}"
        if denied:
            rules += f"; denied: {', '.join(denied)}"
        raise EditRefused(f"The edits change {', '.join(refused)}, which this ticket may not "
                          f"change ({rules}); nothing was written.", details={"paths": refused})
    root = Path(worktree)
    with _open_root(root) as root_fd:
        originals = {path: _read(root_fd, path) for path in dict.fromkeys(e.path for e in edits)}
        results = _compute(originals, edits)
        changed = {path: text for path, text in results.items() if text != originals[path]}
        added, removed = _check_limits(originals, changed, max_file_bytes, max_changed_lines)
        _write_all(root_fd, originals, changed)
    _stage(root, changed, git_env)
    return AppliedChange(
        created=sorted(p for p, t in changed.items() if originals[p] is None and t is not None),
        modified=sorted(p for p, t in changed.items() if originals[p] is not None
                        and t is not None),
        deleted=sorted(p for p, t in changed.items() if t is None),
        added_lines=added, removed_lines=removed)


@contextlib.contextmanager
def _open_root(root: Path) -> Iterator[int]:
    try:
        fd = os.open(root, _DIR_FLAGS)
    except OSError as error:
        raise ApplicationError(f"The worktree {root} cannot be opened: {error.strerror}.",
                               code="workspace_error") from None
    try:
        yield fd
    finally:
        os.close(fd)


def _walk(root_fd: int, path: str, *, create: bool) -> int | None:
    """An fd of path's parent folder, never via a symlink; None if a folder is missing."""
    fd = os.dup(root_fd)
    try:
        segments = path.split("/")
        for depth, name in enumerate(segments[:-1]):
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    os.close(fd)
                    return None
                os.mkdir(name, 0o755, dir_fd=fd)
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as error:
                where = "/".join(segments[:depth + 1])
                if error.errno in (errno.ELOOP, errno.ENOTDIR):
                    kind = "a symlink" if _is_symlink(fd, name) else "not a folder"
                    raise EditRefused(f"Cannot write {path}: {where} is {kind}; edits never go "
                                      "through symlinks or files.",
                                      details={"paths": [path]}) from None
                raise
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def _is_symlink(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _read(root_fd: int, path: str) -> str | None:
    """The file's text, or None if it does not exist; refuse symlinks and non-files."""
    parent = _walk(root_fd, path, create=False)
    if parent is None:
        return None
    name = path.rsplit("/", 1)[-1]
    try:
        try:
            info = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(info.st_mode):
            raise EditRefused(f"Cannot write {path}: it is a symlink; edits never go through "
                              "symlinks.", details={"paths": [path]})
        if not stat.S_ISREG(info.st_mode):
            raise EditRefused(f"Cannot write {path}: it is not a regular file.",
                              details={"paths": [path]})
        if info.st_nlink > 1:
            # git never checks out hard links; one here was made by a check and may be a file
            # from outside the worktree whose content must not enter the attempt.
            raise EditRefused(f"Cannot write {path}: it has other hard links.",
                              details={"paths": [path]})
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        with os.fdopen(fd, "rb") as handle:
            data = handle.read()
    finally:
        os.close(parent)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise EditNotApplicable(f"{path} is not UTF-8 text, so edit blocks cannot change it.",
                                details={"paths": [path]}) from None


def _compute(originals: dict[str, str | None], edits: Sequence[Edit]) -> dict[str, str | None]:
    """Apply the edits in order to the texts in memory."""
    texts = dict(originals)
    for edit in edits:
        current = texts[edit.path]
        if edit.kind is EditKind.FILE:
            texts[edit.path] = edit.text
        elif edit.kind is EditKind.DELETE:
            if current is None:
                raise EditNotApplicable(f"Cannot delete {edit.path}: it does not exist.",
                                        details={"paths": [edit.path], "line": edit.line})
            texts[edit.path] = None
        else:
            if current is None:
                raise EditNotApplicable(f"Cannot search in {edit.path}: it does not exist; "
                                        "create it with a FILE block.",
                                        details={"paths": [edit.path], "line": edit.line})
            texts[edit.path] = _replace_once(edit, current)
    return texts


def _replace_once(edit: Edit, current: str) -> str:
    # A file without a final newline still matches a SEARCH that ends with one.
    missing_newline = bool(current) and not current.endswith("\n")
    text = current + "\n" if missing_newline else current
    search, replace = edit.search, edit.text
    if text.count(search) == 0 and "\r\n" in text:
        search, replace = search.replace("\n", "\r\n"), replace.replace("\n", "\r\n")
    count = text.count(search)
    if count != 1:
        head = "\n".join(f"    {line}" for line in
                         edit.search.splitlines()[:SEARCH_EXCERPT_LINES])
        found = "is not found" if count == 0 else f"matches {count} times"
        raise EditNotApplicable(
            f"The SEARCH block for {edit.path} (line {edit.line}) {found}; it must match the "
            f"file exactly once, character for character. It begins:\n{head}",
            details={"paths": [edit.path], "line": edit.line, "matches": count})
    text = text.replace(search, replace, 1)
    if missing_newline and text.endswith("\n"):
        text = text[:-1]
    return text


def _check_limits(originals: dict[str, str | None], changed: dict[str, str | None],
                  max_file_bytes: int, max_changed_lines: int) -> tuple[int, int]:
    added = removed = 0
    for path, text in changed.items():
        if text is not None and len(text.encode("utf-8")) > max_file_bytes:
            raise EditRefused(f"{path} would be {len(text.encode('utf-8'))} bytes, more than the "
                              f"{max_file_bytes} allowed per file; nothing was written.",
                              details={"paths": [path]})
        before = (originals[path] or "").splitlines()
        after = (text or "").splitlines()
        for line in difflib.unified_diff(before, after, lineterm="", n=0):
            if line.startswith("+") and not line.startswith("+++"):
                added += 1
            elif line.startswith("-") and not line.startswith("---"):
                removed += 1
    if added + removed > max_changed_lines:
        raise EditRefused(f"The edits change {added + removed} lines, more than the "
                          f"{max_changed_lines} allowed; nothing was written.",
                          code=CHANGE_TOO_LARGE, details={"added": added, "removed": removed})
    return added, removed


def _write_all(root_fd: int, originals: dict[str, str | None],
               changed: dict[str, str | None]) -> None:
    """Write every change; if one write fails, put back what was already written."""
    done: list[str] = []
    try:
        for path, text in changed.items():
            _write_one(root_fd, path, text)
            done.append(path)
    except BaseException:
        for path in reversed(done):
            with contextlib.suppress(OSError, ApplicationError):
                _write_one(root_fd, path, originals[path])
        raise


def _write_one(root_fd: int, path: str, text: str | None) -> None:
    parent = _walk(root_fd, path, create=text is not None)
    if parent is None:
        return
    name = path.rsplit("/", 1)[-1]
    try:
        if text is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=parent)
            return
        mode = 0o644
        with contextlib.suppress(FileNotFoundError):
            info = os.stat(name, dir_fd=parent, follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode):
                raise EditRefused(f"Cannot write {path}: it is not a regular file.",
                                  details={"paths": [path]})
            mode = stat.S_IMODE(info.st_mode)
        # Written beside the target and renamed over it: the rename replaces the directory
        # entry itself, so even a symlink planted meanwhile is replaced, never followed.
        temporary = f".{name[:200]}.haao-{uuid.uuid4().hex[:8]}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | os.O_CLOEXEC, mode, dir_fd=parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), mode)  # the umask must not change an existing mode
                handle.write(text.encode("utf-8"))
            os.replace(temporary, name, src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=parent)
            raise
    finally:
        os.close(parent)


def _stage(root: Path, changed: dict[str, str | None],
           git_env: Mapping[str, str] | None = None) -> None:
    """Stage exactly the edited paths, so check artifacts never enter the attempt's diff."""
    if changed:  # one process: --remove drops the entries of deleted files
        git(["update-index", "--add", "--remove", "-z", "--stdin"], cwd=root, env=git_env,
            input_text="".join(f"{path}\0" for path in sorted(changed)))
