"""The policy in force for a project: its override, else its organization's, else defaults."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q

from policies.models import Policy
from tickets.models import Project


@dataclass(frozen=True)
class EffectivePolicy:
    escalation_allowed: bool = True
    audit_required: bool = True
    max_audit_failures: int = 3
    max_cloud_attempts: int = 1


def policy_for(*, project: Project) -> EffectivePolicy:
    """The rules the engine applies to `project`'s tickets."""
    rows = {row.project_id: row for row in Policy.objects.for_org(project.organization)
            .filter(Q(project=project) | Q(project=None))}
    row = rows.get(project.pk) or rows.get(None)
    if row is None:
        return EffectivePolicy()
    return EffectivePolicy(escalation_allowed=row.escalation_allowed,
                           audit_required=row.audit_required,
                           max_audit_failures=row.max_audit_failures,
                           max_cloud_attempts=row.max_cloud_attempts)
