"""Signals that accounts sends upward without importing the apps that listen.

`access_reduced`: someone may see less than before (a membership removed or its role
changed, a project grant withdrawn, an organization's sign-in rule tightened, a session
ended). Sent after commit with `users` (user ids), `organization` (an organization id, for
every member at once, or None) and `ended_sessions` (session keys that no longer exist);
tickets.live closes the live sockets that may no longer stream.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.dispatch import Signal

access_reduced = Signal()


def access_reduce(*, users: Iterable[Any] = (), organization: Any = None,
                  ended_sessions: Iterable[str] = ()) -> None:
    """Announce, once the caller's transaction commits, that these people may see less."""
    kwargs = {"users": [user for user in users if user is not None],
              "organization": organization,
              "ended_sessions": [key for key in ended_sessions if key]}
    transaction.on_commit(lambda: access_reduced.send(sender=None, **kwargs), robust=True)
