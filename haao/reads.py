"""Reads a Celery task makes once: the policy and endpoints that one step consults several
times (the audit step asked for its organization's policy and Tech Lead endpoint five times).

Between `task_started()` and `task_finished()` (around every task a worker runs),
`read_once(key, read)` runs `read` for the first caller only and gives the later ones the
same value. A change made meanwhile (a policy edited, an endpoint disabled) takes effect from
the next task, as it would had the change come a moment later. Outside a task (web requests,
commands, tests running tasks inline) every read goes to the database.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")

_memo: ContextVar[dict[Hashable, Any] | None] = ContextVar("haao_reads", default=None)


def task_started() -> None:
    """Open the task's scope (Celery's task_prerun; task_finished closes it)."""
    _memo.set({})


def task_finished() -> None:
    _memo.set(None)


def forget() -> None:
    """Drop what this task read so far (after it changed what it read)."""
    memo = _memo.get()
    if memo is not None:
        memo.clear()


def read_once(key: Hashable, read: Callable[[], T]) -> T:
    """`read()`, or what it returned for the same key earlier in this task."""
    memo = _memo.get()
    if memo is None:
        return read()
    try:
        return memo[key]
    except KeyError:
        value = memo[key] = read()
        return value
