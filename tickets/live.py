"""Live event notifications: the channel-layer groups of a project's and a ticket's stream,
and the after-commit hook that tells their sockets something new was stored; and the groups
of a user and of an organization, told when someone may see less (accounts.signals), so
their open sockets check again and close.

A notification carries only the sequence number, never the event: sockets read the events
(tickets/consumers.py), which stay the source of truth. Notifications go out from one
background thread per process, so a writer never waits for the channel layer, a burst of
events becomes one message per group, and a layer that is down costs a log line, not a failed
write.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import time
import uuid
from typing import Any

from haao.models import AuditEvent, ProgressEvent

logger = logging.getLogger(__name__)

# The type of a notification; tickets/consumers.StreamHub reads only its `seq`.
NOTIFY_TYPE = "events.notify"
# The type of an access notification; tickets/consumers.AccessWatch reads `ended_sessions`.
ACCESS_TYPE = "access.changed"
TICKET_TARGET = "tickets.ticket"
# How long a process that exits waits for its last notifications to leave.
FLUSH_SECONDS = 2.0


def project_group(project_id: Any) -> str:
    return f"events.project.{uuid.UUID(str(project_id)).hex}"


def ticket_group(ticket_id: Any) -> str:
    return f"events.ticket.{uuid.UUID(str(ticket_id)).hex}"


def user_group(user_id: Any) -> str:
    return f"access.user.{int(user_id)}"


def organization_group(organization_id: Any) -> str:
    return f"access.org.{uuid.UUID(str(organization_id)).hex}"


def event_groups(event: AuditEvent | ProgressEvent) -> list[str]:
    """The groups whose sockets stream `event`: its project's, and its ticket's if any."""
    groups = []
    if event.project_id:
        groups.append(project_group(event.project_id))
        if event.target_type == TICKET_TARGET and event.target_id:
            groups.append(ticket_group(event.target_id))
    return groups


class Notifier:
    """One process's sender: pending group → highest seq, sent by a thread with its own loop."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.pending: dict[str, int] = {}
        # group → session keys that ended (an access notification; empty: "check again")
        self.access: dict[str, set[str]] = {}
        self.busy = False
        self.condition = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="haao-live-notify", daemon=True)
        self.thread.start()

    def notify(self, groups: list[str], seq: int) -> None:
        with self.condition:
            for group in groups:
                self.pending[group] = max(seq, self.pending.get(group, 0))
            self.condition.notify()

    def notify_access(self, groups: list[str], ended_sessions: list[str]) -> None:
        with self.condition:
            for group in groups:
                self.access.setdefault(group, set()).update(ended_sessions)
            self.condition.notify()

    def flush(self, timeout: float = FLUSH_SECONDS) -> bool:
        """Wait until everything notified so far was handed to the layer; False on timeout."""
        deadline = time.monotonic() + timeout
        with self.condition:
            while self.pending or self.access or self.busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.condition.wait(left)
        return True

    def _run(self) -> None:
        from channels import layers

        loop = asyncio.new_event_loop()
        while True:
            with self.condition:
                while not self.pending and not self.access:
                    self.condition.wait()
                batch, self.pending, self.busy = self.pending, {}, True
                access, self.access = self.access, {}
            messages = {group: {"type": NOTIFY_TYPE, "seq": seq} for group, seq in batch.items()}
            messages.update({group: {"type": ACCESS_TYPE, "ended_sessions": sorted(keys)}
                             for group, keys in access.items()})
            try:
                layer = layers.get_channel_layer()
                if layer is not None:
                    loop.run_until_complete(self._send(layer, messages))
            except Exception:
                logger.exception("live: could not notify %d group(s)", len(messages))
            finally:
                with self.condition:
                    self.busy = False
                    self.condition.notify_all()

    @staticmethod
    async def _send(layer: Any, batch: dict[str, dict[str, Any]]) -> None:
        results = await asyncio.gather(
            *(layer.group_send(group, message) for group, message in batch.items()),
            return_exceptions=True)
        failed = [group for group, result in zip(batch, results, strict=True)
                  if isinstance(result, BaseException)]
        if failed:
            logger.warning("live: notifying %s failed: %r", failed[0],
                           next(r for r in results if isinstance(r, BaseException)))


_notifier: Notifier | None = None
_notifier_lock = threading.Lock()


def notifier() -> Notifier:
    """This process's notifier, started on first use (again in a forked worker)."""
    global _notifier
    with _notifier_lock:
        if _notifier is None or _notifier.pid != os.getpid():
            _notifier = Notifier()
        return _notifier


@atexit.register
def _flush_at_exit() -> None:
    if _notifier is not None and _notifier.pid == os.getpid():
        _notifier.flush()


def event_stored(*, event: AuditEvent | ProgressEvent, **_: Any) -> None:
    """Tell the sockets of `event`'s streams that it is sealed (haao.audit.event_stored, sent
    after the sealer's commit)."""
    try:
        groups = event_groups(event)
        if groups and event.seq is not None:
            notifier().notify(groups, event.seq)
    except Exception:  # never into the writer: the log has the event, sockets catch up later
        logger.exception("live: could not queue the notification of event %s", event.seq)


def access_reduced(*, users: list[Any], organization: Any, ended_sessions: list[str],
                   **_: Any) -> None:
    """Tell the sockets of these users (or of the whole organization) to check their access
    again (accounts.signals.access_reduced, after commit)."""
    try:
        groups = [user_group(user) for user in users]
        if organization is not None:
            groups.append(organization_group(organization))
        if groups:
            notifier().notify_access(groups, ended_sessions)
    except Exception:  # never into the writer; the sockets' periodic check closes them later
        logger.exception("live: could not queue an access notification")


def user_logged_out(*, request: Any, user: Any, **_: Any) -> None:
    """A signed-out session's sockets close (django.contrib.auth's user_logged_out)."""
    if user is None:
        return
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    access_reduced(users=[user.pk], organization=None,
                   ended_sessions=[session_key] if session_key else [])
