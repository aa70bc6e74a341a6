"""A compact, deterministic map of a checkout: tracked files, sizes, Python's top-level symbols.

The map is part of the Tech Lead's cached prompt prefix, so the same commit must always give
byte-identical text: files are sorted, nothing depends on time, locale or file system order.
"""

from __future__ import annotations

import ast
from pathlib import Path

from agents.workspaces.git import git
from haao.errors import ApplicationError

MAX_MAP_CHARS = 60_000
MAX_PYTHON_BYTES = 512 * 1024
MAX_SIGNATURE = 160
GIT_TIMEOUT = 30


class RepositoryUnreadable(ApplicationError):
    """The checkout is not a git work tree HAAO can list."""

    code = "repository_unreadable"


def tracked_files(repo: Path) -> list[str]:
    """Paths git tracks in the work tree (so .gitignore'd files never appear), sorted."""
    try:
        result = git(["ls-files", "-z", "--cached"], cwd=repo, check=False,
                     timeout=GIT_TIMEOUT)
    except (OSError, ApplicationError) as error:
        raise RepositoryUnreadable(f"The checkout could not be listed: {error}") from None
    if result.returncode != 0:
        raise RepositoryUnreadable("The checkout is not a git work tree: "
                                   f"{result.stderr.strip()[:300]}")
    names = result.stdout.split("\0")
    return sorted(name for name in names if name)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_SIGNATURE else text[:MAX_SIGNATURE - 1] + "…"


def _function(node: ast.FunctionDef | ast.AsyncFunctionDef, indent: str) -> str:
    prefix = "async def" if isinstance(node, ast.AsyncFunctionDef) else "def"
    returns = f" -> {ast.unparse(node.returns)}" if node.returns is not None else ""
    signature = _short(f"{prefix} {node.name}({ast.unparse(node.args)}){returns}")
    return f"{indent}{signature}  [L{node.lineno}-{node.end_lineno}]"


def python_symbols(source: str) -> list[str]:
    """Top-level classes (with their methods) and functions, with signatures and line ranges."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return ["  (does not parse as Python)"]
    lines: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines.append(_function(node, "  "))
        elif isinstance(node, ast.ClassDef):
            bases = ", ".join(ast.unparse(base) for base in node.bases)
            head = _short(f"class {node.name}({bases})" if bases else f"class {node.name}")
            lines.append(f"  {head}  [L{node.lineno}-{node.end_lineno}]")
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines.append(_function(item, "    "))
    return lines


def repo_map(repo: Path | str, *, limit: int = MAX_MAP_CHARS) -> str:
    """The map as text: one line per file (size, lines), Python symbols beneath; capped."""
    root = Path(repo)
    files = tracked_files(root)
    entries: list[tuple[str, list[str]]] = []
    for name in files:
        path = root / name
        if path.is_symlink() or not path.is_file():
            continue
        size = path.stat().st_size
        symbols: list[str] = []
        line_count = ""
        if size <= MAX_PYTHON_BYTES:
            data = path.read_bytes()
            count = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
            line_count = f", {count} lines"
            if name.endswith(".py"):
                symbols = python_symbols(data.decode("utf-8", errors="replace"))
        entries.append((f"{name} ({size} bytes{line_count})", symbols))
    header = f"{len(entries)} tracked files.\n"
    full = header + "".join(head + "\n" + "".join(s + "\n" for s in symbols)
                            for head, symbols in entries)
    if len(full) <= limit:
        return full
    # Too large: keep every file name, drop symbols from the end until it fits.
    kept = [list(symbols) for _, symbols in entries]
    size = len(full)
    for index in range(len(kept) - 1, -1, -1):
        if size <= limit:
            break
        size -= sum(len(s) + 1 for s in kept[index])
        kept[index] = []
    text = header + "".join(head + "\n" + "".join(s + "\n" for s in kept[i])
                            for i, (head, _) in enumerate(entries))
    if len(text) > limit:
        note = "… (map truncated)\n"
        text = text[:limit - len(note)].rsplit("\n", 1)[0] + "\n" + note
    return text
