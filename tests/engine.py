"""HAAO's engine run in the test's own process, through the production path.

The tasks the code sends (agents.engine.enqueue) are kept instead of queued, then run by
their registered name, one at a time, as a worker would run them: the same Celery task
functions, steps and claims, with each step's after-commit work done as after a real
commit. Tests that need a real worker process use tests/loop.py instead.

    engine = InProcessEngine(monkeypatch)      # in a test; `with InProcessEngine() as engine`
    attempt = engine.attempt(ticket)           # elsewhere (bench/local_model.py)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from celery import current_app
from django.test import TestCase

from agents.engine import enqueue, steps
from tickets.models import Attempt, Ticket, TicketStatus

# The steps of one attempt, from its dispatch to its checks.
ATTEMPT_STEPS = ("dispatch", "model_step", "check_step")


class InProcessEngine:
    def __init__(self, monkeypatch: pytest.MonkeyPatch | None = None) -> None:
        self.sent: list[tuple[str, dict[str, str]]] = []  # kept, not run yet
        self.log: list[str] = []  # the name of every task sent, in order
        self._send = enqueue._send
        if monkeypatch is not None:
            monkeypatch.setattr(enqueue, "_send", self._keep)

    def __enter__(self) -> InProcessEngine:
        enqueue._send = self._keep  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        enqueue._send = self._send  # type: ignore[assignment]

    def _keep(self, name: str, *, kwargs: dict[str, Any], **_: Any) -> None:
        self.sent.append((name, {key: str(value) for key, value in kwargs.items()}))
        self.log.append(name)

    def run(self, *names: str, until: Callable[[], bool] = lambda: False) -> list[str]:
        """Run the kept tasks called `names`, oldest first, and those they send, until none
        is left or `until()` holds; the names of the tasks that ran."""
        ran: list[str] = []
        while not until():
            index = next((i for i, (name, _) in enumerate(self.sent) if name in names), None)
            if index is None:
                break
            name, kwargs = self.sent.pop(index)
            with TestCase.captureOnCommitCallbacks(execute=True):
                current_app.tasks[f"haao.{name}"](**kwargs)
            ran.append(name)
        return ran

    def dispatch(self, ticket: Ticket) -> None:
        """Queue `ticket` (as Gate 1's approval does) unless it waits already, and dispatch
        its project: its next attempt starts, and the model step is sent."""
        ticket.refresh_from_db()
        if ticket.status in (TicketStatus.PROPOSED, TicketStatus.APPROVED):
            Ticket.objects.filter(pk=ticket.pk).update(status=TicketStatus.QUEUED)
        with TestCase.captureOnCommitCallbacks(execute=True):
            steps.dispatch_project(project_id=ticket.project_id)

    def attempt(self, ticket: Ticket) -> Attempt:
        """Run `ticket`'s next attempt to its end: dispatch, the model step, the check step."""
        before = Attempt.objects.filter(ticket=ticket).count()
        self.dispatch(ticket)

        def finished() -> bool:
            latest = Attempt.objects.filter(ticket=ticket).order_by("-number").first()
            return latest is not None and latest.number > before and latest.finished_at \
                is not None

        self.run(*ATTEMPT_STEPS, until=finished)
        latest = Attempt.objects.filter(ticket=ticket).order_by("-number").first()
        assert latest is not None and latest.number > before, (
            f"No attempt of {ticket.key} started; tasks kept: {self.sent}")
        ticket.refresh_from_db()
        return latest
