"""Fixtures of the suites under tests/: the loop on real workers (tests/loop.py) is set up
only here, so its fixture names (project, repo, coder, cloud) do not shadow the apps' own."""

from __future__ import annotations

from tests.loop import cloud, coder, processes, project, repo

__all__ = ["cloud", "coder", "processes", "project", "repo"]
