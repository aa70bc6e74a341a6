"""The audit step: the Tech Lead judges the diff of work whose checks passed."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings

from agents.engine import enqueue, routing
from agents.engine.options import options_for
from agents.engine.steps.common import (
    heartbeat,
    lease_seconds,
    quietly,
)
from agents.models import (
    CallRole,
    EndpointRole,
    ModelCall,
)
from agents.techlead.audit import audit
from agents.techlead.client import CallRefused, SpendLimitReached, TechLeadError
from haao.audit import Actor
from haao.rows import one_or_none
from policies.enforcement import (
    GuardrailRefused,
)
from policies.selectors import policy_for
from tickets.models import (
    Attempt,
    Ticket,
    TicketStatus,
)
from tickets.services.engine import (
    ticket_audit_skipped,
    ticket_audited,
    ticket_block,
)

logger = logging.getLogger(__name__)
S = TicketStatus


def audit_step(*, ticket_id: Any) -> None:
    """The Tech Lead audits the diff of the ticket's latest (passed) attempt."""
    ticket = one_or_none(Ticket.objects.select_related("project__organization", "organization"),
                         pk=ticket_id)
    if ticket is None or ticket.status != S.AUDITING:
        return
    attempt = (Attempt.objects.filter(ticket=ticket).order_by("-number")
               .prefetch_related("checks").first())
    if attempt is not None:
        audit_attempt(ticket, attempt)


def audit_attempt(ticket: Ticket, attempt: Attempt) -> None:
    """The Tech Lead audits the diff of `attempt`, the latest of `ticket`, which waits for
    its audit (both as read by the caller: the audit reads the ticket's status again
    before it starts, and records nothing if the attempt is no longer the latest)."""
    organization = ticket.project.organization
    policy = policy_for(project=ticket.project)
    options = options_for(project=ticket.project, ticket_id=ticket.pk, policy=policy)
    endpoint = routing.tech_lead(organization=organization, role=EndpointRole.AUDITOR,
                                 self_hosted_only=policy.data_residency)
    if endpoint is None or not options.audit:
        quietly(ticket_audit_skipped, ticket=ticket, attempt=attempt,
                 reason=options.no_audit_why or "no Tech Lead endpoint")
        return
    holder = f"audit:{attempt.pk}"
    if not routing.slot_acquire(endpoint=endpoint, holder=holder, seconds=lease_seconds()):
        enqueue.audit_step(ticket_id=ticket.pk, organization=organization, on_commit=False,
                           countdown=settings.HAAO_ENDPOINT_WAIT_SECONDS)
        return
    try:
        ticket.refresh_from_db(fields=["status"])
        if ticket.status != S.AUDITING:
            return
        with heartbeat(holder=holder):
            try:
                # A later run after a failed one (the holder claim rules out concurrent
                # ones) records its own usage rows.
                runs = ModelCall.objects.filter(attempt=attempt, role=CallRole.AUDIT).count()
                verdict = audit(ticket=ticket, diff=attempt.diff,
                                check_results=list(attempt.checks.all()), endpoint=endpoint,
                                attempt=attempt, idempotency_key=f"audit:{attempt.pk}"
                                + (f":{runs}" if runs else ""))
            except (CallRefused, SpendLimitReached, GuardrailRefused) as error:
                # A wrong key, an exhausted account or a policy's cap: trying again cannot
                # help, a person can.
                quietly(ticket_block, ticket=ticket,
                         reason=f"The Tech Lead could not audit the work: {error.message}")
                return
            except TechLeadError as error:
                # The auditor could not be reached even after its retries: try again later.
                logger.warning("Audit of %s failed: %s", ticket.key, error.message)
                enqueue.audit_step(ticket_id=ticket.pk, organization=organization,
                                   on_commit=False, countdown=settings.HAAO_ENDPOINT_WAIT_SECONDS)
                return
        ticket_audited(attempt=attempt, passed=verdict.passed, summary=verdict.summary,
                       findings=verdict.findings, actor=Actor.model(endpoint.model),
                       options=options)
    finally:
        routing.slot_release(holder=holder)
