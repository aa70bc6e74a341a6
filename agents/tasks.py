"""Celery tasks of the loop: named, given ids, thin; each calls one engine step.

Time limits, acknowledgement and retries are set in settings (CELERY_*); the steps claim
their work, so every task is safe to deliver twice (agents/engine/steps.py).
"""

from __future__ import annotations

import logging

from celery import shared_task

from agents.engine import recovery, steps

logger = logging.getLogger(__name__)


@shared_task(name="haao.dispatch")
def dispatch(project_id: str) -> None:
    steps.dispatch_project(project_id=project_id)


@shared_task(name="haao.model_step")
def model_step(attempt_id: str) -> None:
    steps.model_step(attempt_id=attempt_id)


@shared_task(name="haao.check_step")
def check_step(attempt_id: str) -> None:
    steps.check_step(attempt_id=attempt_id)


@shared_task(name="haao.audit")
def audit_step(ticket_id: str) -> None:
    steps.audit_step(ticket_id=ticket_id)


@shared_task(name="haao.merge")
def merge(ticket_id: str) -> None:
    steps.merge_step(ticket_id=ticket_id)


@shared_task(name="haao.decompose")
def decompose(requirement_id: str) -> None:
    steps.decompose_step(requirement_id=requirement_id)


@shared_task(name="haao.recover")
def recover() -> None:
    recovery.recover()


@shared_task(name="haao.check_endpoints")
def check_endpoints() -> None:
    recovery.check_endpoints()


@shared_task(name="haao.check_endpoint")
def check_endpoint(endpoint_id: str) -> None:
    from agents.models import InferenceEndpoint
    from agents.services import endpoint_check_health

    endpoint = InferenceEndpoint.objects.filter(pk=endpoint_id, enabled=True).first()
    if endpoint is None:
        logger.info("Endpoint %s to check is gone or disabled.", endpoint_id)
        return
    endpoint_check_health(endpoint=endpoint)
