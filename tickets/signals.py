"""Signals that tickets sends upward, after commit, without importing the apps that listen.

`requirement_created`: a requirement was submitted (`requirement_id`); the engine starts its
decomposition. `project_setup_changed`: a project was created or its repository, branch,
setup or test command changed (`project_id`); the engine checks its setup. A ticket's state
changes have their own registry, `tickets.state.on_enter`.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.dispatch import Signal

requirement_created = Signal()
project_setup_changed = Signal()


def send_on_commit(signal: Signal, **kwargs: Any) -> None:
    """Send `signal` once the caller's transaction commits; a failing receiver is logged and
    never undoes or breaks the caller's work."""
    transaction.on_commit(lambda: signal.send(sender=None, **kwargs), robust=True)
