"""The policy in force: a project's override, else its organization's rules, else defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db.models import Max, Q

from accounts.models import Organization
from haao.reads import read_once
from policies import rules
from policies.models import Policy, PolicyVersion
from tickets.models import Project

DEFAULT = "default"
ORGANIZATION = "organization"
PROJECT = "project"


@dataclass(frozen=True)
class EffectivePolicy:
    """Every rule's value, where it comes from, and the organization's policy version."""

    allowed_paths: list[str]
    denied_paths: list[str]
    max_changed_files: int
    max_changed_lines: int
    allowed_programs: list[str]
    inline_code: bool
    sandbox_timeout_seconds: int
    sandbox_memory_mb: int
    sandbox_max_processes: int
    sandbox_network: bool
    sandbox_network_reason: str
    retry_budget: int
    escalation_allowed: bool
    max_cloud_attempts: int
    wip_limit: int
    data_residency: bool
    ticket_cloud_cap_usd: Decimal | None
    requirement_cloud_cap_usd: Decimal | None
    monthly_cloud_cap_usd: Decimal | None
    audit_mode: str
    audit_work: str
    audit_sample_percent: int
    max_audit_failures: int
    sources: dict[str, str] = field(default_factory=dict)
    version: int = 0
    # Secrets are redacted before every cloud call; no policy can switch that off.
    redaction: bool = True

    def values(self) -> dict[str, Any]:
        return {rule.name: getattr(self, rule.name) for rule in rules.RULES}


def _rows(organization: Organization, project: Project | None) -> tuple[dict[str, Any],
                                                                        dict[str, Any]]:
    query = Q(project=None) if project is None else Q(project=project) | Q(project=None)
    org_values: dict[str, Any] = {}
    project_values: dict[str, Any] = {}
    for row in Policy.objects.for_org(organization).filter(query):
        if row.project_id is None:
            org_values = dict(row.values)
        else:
            project_values = dict(row.values)
    return org_values, project_values


def policy_version(*, organization: Organization) -> int:
    """The organization's latest policy version number (0 before its first change)."""
    return PolicyVersion.objects.for_org(organization).aggregate(
        latest=Max("number"))["latest"] or 0


def effective_policy(*, organization: Organization, project: Project | None = None,
                     with_version: bool = True) -> EffectivePolicy:
    """The rules for `project`'s tickets (or the organization's own, without a project);
    read once per task (haao.reads)."""
    return read_once(("policy", organization.pk, project.pk if project else None, with_version),
                     lambda: _effective_policy(organization, project, with_version=with_version))


def _effective_policy(organization: Organization, project: Project | None, *,
                      with_version: bool) -> EffectivePolicy:
    org_values, project_values = _rows(organization, project)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    defaults = rules.defaults()
    for rule in rules.RULES:
        name = rule.name
        value, source = defaults[name], DEFAULT
        if name in org_values:
            value, source = rules.from_json(name, org_values[name]), ORGANIZATION
        if name in project_values:
            extra = rules.from_json(name, project_values[name])
            if name in rules.ADDITIVE:
                value = list(dict.fromkeys([*value, *extra]))
                source = f"{source} + {PROJECT}"
            else:
                value, source = extra, PROJECT
        values[name], sources[name] = value, source
    version = policy_version(organization=organization) if with_version else 0
    return EffectivePolicy(**values, sources=sources, version=version)


def policy_for(*, project: Project) -> EffectivePolicy:
    """The rules the engine applies to `project`'s tickets."""
    return effective_policy(organization=project.organization, project=project)


def policy_row_values(*, organization: Organization, project: Project | None) -> dict[str, Any]:
    """What one row sets itself (a project's overrides, or the organization's own values)."""
    org_values, project_values = _rows(organization, project)
    return project_values if project is not None else org_values


def policy_versions(*, organization: Organization, project: Project | None = None) -> Any:
    """The organization's policy changes, newest first (one project's and the organization's
    own when `project` is given)."""
    versions = PolicyVersion.objects.for_org(organization).select_related("author")
    if project is not None:
        versions = versions.filter(Q(project=project) | Q(project=None))
    return versions.order_by("-number")
