"""Commit objects HAAO writes itself, where a `git commit-tree` process would cost more than
the object: a few hundred bytes, hashed and deflated here, stored as git stores a loose
object (a temporary file in the object's folder, then linked to its name)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

from agents.workspaces.git import AUTHOR_EMAIL, AUTHOR_NAME, WorkspaceError, git

# Object ids by their length: a repository's object format decides both.
_HASHES = {40: hashlib.sha1, 64: hashlib.sha256}
_HEX = frozenset("0123456789abcdef")
# git's default for loose objects (core.looseCompression): fastest.
_LEVEL = 1


def commit_write(repo: Path, *, tree: str, parents: Sequence[str], message: str) -> str:
    """Write the commit of `tree` on `parents` into the repository `repo`; its id.

    The object is byte for byte what `git commit-tree <tree> -p <parent>… -F -` writes with
    HAAO's identity (agents.workspaces.git) at this second in this machine's time zone. The
    tree and parents are not looked up: callers pass what git has just written or read in
    this repository. A repository whose objects are not in its own folder (a linked worktree)
    gets a `git commit-tree` process."""
    ids = [tree, *parents]
    size = len(tree)
    if size not in _HASHES or any(len(oid) != size or not _HEX.issuperset(oid) for oid in ids):
        raise WorkspaceError(f"Cannot commit tree {tree[:64]!r} on {list(parents)!r}: not "
                             "object ids of one format.", code="invalid_object_id")
    if not message.strip() or "\x00" in message:
        raise WorkspaceError("A commit message must be non-empty text.",
                             code="invalid_commit_message")
    objects = _objects_of(Path(repo))
    if objects is None:
        args = ["commit-tree", tree]
        for parent in parents:
            args += ["-p", parent]
        return git([*args, "-F", "-"], cwd=repo, input_text=message).stdout.strip()
    now = time.time()
    signature = f"{AUTHOR_NAME} <{AUTHOR_EMAIL}> {int(now)} {_zone(now)}"
    body = "".join([f"tree {tree}\n", *(f"parent {p}\n" for p in parents),
                    f"author {signature}\n", f"committer {signature}\n", "\n"]).encode() \
        + message.encode("utf-8", "replace")
    data = b"commit %d\x00" % len(body) + body
    oid = _HASHES[size](data).hexdigest()
    _store(objects, oid, zlib.compress(data, _LEVEL))
    return oid


def _objects_of(repo: Path) -> Path | None:
    for objects in (repo / "objects", repo / ".git" / "objects"):
        if (objects.parent / "HEAD").is_file() and objects.is_dir():
            return objects
    return None


def _zone(now: float) -> str:
    offset = time.localtime(now).tm_gmtoff // 60
    sign = "-" if offset < 0 else "+"
    hours, minutes = divmod(abs(offset), 60)
    return f"{sign}{hours:02d}{minutes:02d}"


def _store(objects: Path, oid: str, deflated: bytes) -> None:
    folder = objects / oid[:2]
    path = folder / oid[2:]
    if path.exists():  # the same commit, written within the same second
        return
    folder.mkdir(mode=0o755, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix="tmp_obj_", dir=folder)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(deflated)
        os.chmod(temporary, 0o444)
        # A link, as git does: never replaces an object another process wrote first.
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        os.unlink(temporary)
