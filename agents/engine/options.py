"""What the engine may do for a project's tickets: its policy plus the endpoints it has."""

from __future__ import annotations

from typing import Any

from agents.engine import routing
from agents.models import EndpointRole
from agents.sandbox import SandboxLimits
from policies.enforcement import audit_wanted
from policies.selectors import EffectivePolicy, policy_for
from tickets.models import Project
from tickets.services.engine import Options


def options_for(*, project: Project, ticket_id: Any = None,
                policy: EffectivePolicy | None = None) -> Options:
    """The engine's choices for the project (for one ticket, whose audit may be sampled)."""
    policy = policy or policy_for(project=project)
    organization = project.organization
    residency = policy.data_residency
    tech_lead = routing.tech_lead(organization=organization, self_hosted_only=residency)
    escalation = policy.escalation_allowed and tech_lead is not None
    why = ""
    if not policy.escalation_allowed:
        why = "escalation to the Tech Lead is not allowed by policy"
    elif tech_lead is None and residency:
        why = "data residency is on and the organization has no self-hosted Tech Lead endpoint"
    elif tech_lead is None:
        why = "the organization has no enabled Tech Lead endpoint"
    wanted = policy.audit_mode != "off" if ticket_id is None else \
        audit_wanted(policy, ticket_id=ticket_id)
    auditor = routing.tech_lead(organization=organization, role=EndpointRole.AUDITOR,
                                self_hosted_only=residency) if wanted else None
    no_audit_why = ""
    if policy.audit_mode == "off":
        no_audit_why = "the policy audits no work"
    elif not wanted:
        no_audit_why = f"not in the policy's {policy.audit_sample_percent}% audit sample"
    elif auditor is None:
        no_audit_why = "no self-hosted Tech Lead endpoint (data residency)" if residency \
            else "no Tech Lead endpoint"
    return Options(escalation=escalation, audit=auditor is not None,
                   max_audit_failures=policy.max_audit_failures,
                   max_cloud_attempts=policy.max_cloud_attempts,
                   audit_cloud_work=policy.audit_work == "all", no_escalation_why=why,
                   no_audit_why=no_audit_why, policy_version=policy.version)


def sandbox_limits(policy: EffectivePolicy) -> SandboxLimits:
    """The sandbox of the project's checks: the policy's time, memory, processes, network."""
    return SandboxLimits(timeout_seconds=policy.sandbox_timeout_seconds,
                         cpu_seconds=policy.sandbox_timeout_seconds,
                         memory_bytes=policy.sandbox_memory_mb * 1024 * 1024,
                         max_processes=policy.sandbox_max_processes,
                         network=policy.sandbox_network)
