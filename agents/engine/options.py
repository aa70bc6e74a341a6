"""What the engine may do for a project's tickets: its policy plus the endpoints it has."""

from __future__ import annotations

from agents.engine import routing
from agents.models import EndpointRole
from policies.selectors import policy_for
from tickets.models import Project
from tickets.services.engine import Options


def options_for(*, project: Project) -> Options:
    policy = policy_for(project=project)
    organization = project.organization
    escalation = policy.escalation_allowed and routing.tech_lead(
        organization=organization) is not None
    audit = policy.audit_required and routing.tech_lead(
        organization=organization, role=EndpointRole.AUDITOR) is not None
    why = ""
    if not policy.escalation_allowed:
        why = "escalation to the Tech Lead is not allowed by policy"
    elif not escalation:
        why = "the organization has no enabled Tech Lead endpoint"
    return Options(escalation=escalation, audit=audit,
                   max_audit_failures=policy.max_audit_failures,
                   max_cloud_attempts=policy.max_cloud_attempts, no_escalation_why=why)
