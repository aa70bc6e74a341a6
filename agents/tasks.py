"""Celery tasks of the loop: named, given ids, thin; each calls one engine step.

Time limits, acknowledgement and retries are set in settings (CELERY_*); the steps claim
their work, so every task is safe to deliver twice (agents/engine/steps/).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any

from celery import shared_task
from django.db import OperationalError

from agents.delivery.services import branch_deliver, branch_pull_request_poll
from agents.engine import recovery, steps
from agents.health import endpoint_check_health
from agents.models import InferenceEndpoint
from agents.preflight import setup_check_run

logger = logging.getLogger(__name__)

# A deadlock or a dropped database connection ends the transaction, not the work: the steps
# are idempotent, so the task runs again shortly (a claim it made is fenced or recovered).
ON_DEADLOCK: dict[str, Any] = {"autoretry_for": (OperationalError,), "retry_backoff": 1,
                               "retry_backoff_max": 30, "retry_jitter": True,
                               "max_retries": 5}


def ids(function: Callable[..., None]) -> Callable[..., None]:
    """Refuse (log and drop) a message whose id arguments are not ids, instead of failing."""

    @wraps(function)
    def checked(**kwargs: Any) -> None:
        for name, value in kwargs.items():
            try:
                uuid.UUID(str(value))
            except ValueError:
                logger.warning("%s: %s=%r is not an id; message dropped.", function.__name__,
                               name, str(value)[:80])
                return
        function(**kwargs)

    return checked


@shared_task(name="haao.dispatch", **ON_DEADLOCK)
@ids
def dispatch(project_id: str) -> None:
    steps.dispatch_project(project_id=project_id)


@shared_task(name="haao.model_step", **ON_DEADLOCK)
@ids
def model_step(attempt_id: str) -> None:
    steps.model_step(attempt_id=attempt_id)


@shared_task(name="haao.check_step", **ON_DEADLOCK)
@ids
def check_step(attempt_id: str) -> None:
    steps.check_step(attempt_id=attempt_id)


@shared_task(name="haao.audit", **ON_DEADLOCK)
@ids
def audit_step(ticket_id: str) -> None:
    steps.audit_step(ticket_id=ticket_id)


@shared_task(name="haao.merge", **ON_DEADLOCK)
@ids
def merge(ticket_id: str) -> None:
    steps.merge_step(ticket_id=ticket_id)


@shared_task(name="haao.deliver", **ON_DEADLOCK)
@ids
def deliver(branch_id: str) -> None:

    branch_deliver(branch_id=branch_id)


@shared_task(name="haao.poll_pull_request", **ON_DEADLOCK)
@ids
def poll_pull_request(branch_id: str) -> None:

    branch_pull_request_poll(branch_id=branch_id)


@shared_task(name="haao.decompose", **ON_DEADLOCK)
@ids
def decompose(requirement_id: str) -> None:
    steps.decompose_step(requirement_id=requirement_id)


@shared_task(name="haao.setup_check", **ON_DEADLOCK)
@ids
def setup_check(project_id: str) -> None:

    setup_check_run(project_id=project_id)


@shared_task(name="haao.recover", **ON_DEADLOCK)
def recover() -> None:
    recovery.recover()


@shared_task(name="haao.check_endpoints")
def check_endpoints() -> None:
    recovery.check_endpoints()


@shared_task(name="haao.check_endpoint")
@ids
def check_endpoint(endpoint_id: str) -> None:

    endpoint = InferenceEndpoint.objects.filter(pk=endpoint_id, enabled=True).first()
    if endpoint is None:
        logger.info("Endpoint %s to check is gone or disabled.", endpoint_id)
        return
    endpoint_check_health(endpoint=endpoint)
