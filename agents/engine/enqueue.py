"""Sending the engine's tasks: explicit queue, ids only, and (by default) only after commit.

Tasks are found by their registered name (agents.tasks names them), so the steps that send
the next task need not import the module of tasks that runs them."""

from __future__ import annotations

import functools
from typing import Any

from celery import current_app
from django.db import transaction

from accounts.models import Organization
from agents.engine import routing


def _send(name: str, *, kwargs: dict[str, Any], queue: str, on_commit: bool,
          countdown: float | None = None, expires: float | None = None) -> None:
    task = current_app.tasks[f"haao.{name}"]
    timing: dict[str, Any] = {key: value for key, value in
                              (("countdown", countdown), ("expires", expires)) if value is not None}
    send = functools.partial(task.apply_async, kwargs={k: str(v) for k, v in kwargs.items()},
                             queue=queue, **timing)
    if on_commit:
        transaction.on_commit(send, robust=True)
    else:
        send()


def dispatch(*, project_id: Any, on_commit: bool = True, countdown: float | None = None) -> None:
    _send("dispatch", kwargs={"project_id": project_id}, queue=routing.CONTROL,
          on_commit=on_commit, countdown=countdown)


def model_step(*, attempt_id: Any, queue: str, on_commit: bool = True,
               countdown: float | None = None) -> None:
    _send("model_step", kwargs={"attempt_id": attempt_id}, queue=queue, on_commit=on_commit,
          countdown=countdown)


def check_step(*, attempt_id: Any, queue: str, on_commit: bool = True) -> None:
    _send("check_step", kwargs={"attempt_id": attempt_id}, queue=queue, on_commit=on_commit)


def audit_step(*, ticket_id: Any, organization: Organization, on_commit: bool = True,
               countdown: float | None = None) -> None:
    _send("audit", kwargs={"ticket_id": ticket_id},
          queue=routing.queue_for(organization=organization, kind=routing.CLOUD),
          on_commit=on_commit, countdown=countdown)


def merge(*, ticket_id: Any, queue: str, on_commit: bool = True) -> None:
    _send("merge", kwargs={"ticket_id": ticket_id}, queue=queue, on_commit=on_commit)


def decompose(*, requirement_id: Any, organization: Organization, on_commit: bool = True,
              countdown: float | None = None) -> None:
    _send("decompose", kwargs={"requirement_id": requirement_id},
          queue=routing.queue_for(organization=organization, kind=routing.CLOUD),
          on_commit=on_commit, countdown=countdown)


def deliver(*, branch_id: Any, organization: Organization, on_commit: bool = True,
            countdown: float | None = None) -> None:
    _send("deliver", kwargs={"branch_id": branch_id},
          queue=routing.queue_for(organization=organization, kind=routing.CHECKS),
          on_commit=on_commit, countdown=countdown)


def poll_pull_request(*, branch_id: Any, organization: Organization) -> None:
    _send("poll_pull_request", kwargs={"branch_id": branch_id},
          queue=routing.queue_for(organization=organization, kind=routing.CHECKS),
          on_commit=False)


def setup_check(*, project_id: Any, organization: Organization, on_commit: bool = True) -> None:
    _send("setup_check", kwargs={"project_id": project_id},
          queue=routing.queue_for(organization=organization, kind=routing.CHECKS),
          on_commit=on_commit)


def check_endpoint(*, endpoint_id: Any, queue: str, expires: float) -> None:
    """A health check of one endpoint, now; dropped if not run within `expires` seconds."""
    _send("check_endpoint", kwargs={"endpoint_id": endpoint_id}, queue=queue, on_commit=False,
          expires=expires)
