"""The decompose step: the Tech Lead breaks a requirement into proposed tickets."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings

from agents.engine import enqueue, routing
from agents.engine.steps.common import (
    heartbeat,
    lease_seconds,
)
from agents.techlead.decompose import decompose_requirement
from policies.selectors import policy_for
from tickets.models import (
    Requirement,
    RequirementStatus,
)

logger = logging.getLogger(__name__)

def decompose_step(*, requirement_id: Any) -> None:
    """The Tech Lead proposes tickets for a new requirement (once, whoever delivers it)."""

    requirement = (Requirement.objects.select_related("project__organization")
                   .filter(pk=requirement_id).first())
    if requirement is None or requirement.status != RequirementStatus.DECOMPOSING:
        return
    residency = policy_for(project=requirement.project).data_residency
    endpoint = routing.tech_lead(organization=requirement.project.organization,
                                 self_hosted_only=residency)
    if endpoint is None:
        decompose_requirement(requirement_id=requirement.pk)  # records why it failed
        return
    holder = f"decompose:{requirement.pk}"
    if not routing.slot_acquire(endpoint=endpoint, holder=holder, seconds=lease_seconds()):
        enqueue.decompose(requirement_id=requirement.pk,
                          organization=requirement.project.organization, on_commit=False,
                          countdown=settings.HAAO_ENDPOINT_WAIT_SECONDS)
        return
    try:
        with heartbeat(holder=holder):
            decompose_requirement(requirement_id=requirement.pk)
    finally:
        routing.slot_release(holder=holder)
