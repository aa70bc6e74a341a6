"""How git reaches a project's remote: the URL and the credentials, never in a URL or argv."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RemoteAccess:
    """The repository URL for git and the environment that carries its credentials."""

    url: str
    env: dict[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def remote_access(project: Any) -> Iterator[RemoteAccess]:
    """The project's remote as git should reach it (no credentials configured yet)."""
    yield RemoteAccess(url=project.repository)
