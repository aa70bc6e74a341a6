"""Organization roles and what each may do; the one table every permission check reads."""

from __future__ import annotations

from django.db import models


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    PRODUCT_OWNER = "product_owner", "Product owner"
    MANAGER = "manager", "Manager"
    MEMBER = "member", "Member"


class Capability(models.TextChoices):
    MANAGE_MEMBERS = "manage_members", "Manage members, invitations and roles"
    MANAGE_SSO = "manage_sso", "Manage single sign-on"
    MANAGE_PROJECTS = "manage_projects", "Create projects and grant access to them"
    MANAGE_POLICIES = "manage_policies", "Edit guardrail policies and model endpoints"
    VIEW_AUDIT = "view_audit", "Read the audit log"
    VIEW_REPORTS = "view_reports", "Read cost reports"
    VIEW_ALL_PROJECTS = "view_all_projects", "Read every project of the organization"
    WRITE_REQUIREMENTS = "write_requirements", "Submit requirements and decide at the gates"
    # Without it, a member decides only in the projects granted to them (django-guardian).
    DECIDE_IN_ALL_PROJECTS = "decide_in_all_projects", "Decide at the gates of every project"


ROLE_CAPABILITIES: dict[str, frozenset[str]] = {
    Role.ADMIN: frozenset(Capability.values),
    Role.MANAGER: frozenset(
        {Capability.VIEW_AUDIT, Capability.VIEW_REPORTS, Capability.VIEW_ALL_PROJECTS}
    ),
    # Product owners decide only in projects granted to them (django-guardian), see tickets.
    Role.PRODUCT_OWNER: frozenset({Capability.WRITE_REQUIREMENTS}),
    Role.MEMBER: frozenset(),
}


def role_can(role: str, capability: str) -> bool:
    return capability in ROLE_CAPABILITIES.get(role, frozenset())


# Audit event types (by prefix) readable only with a capability beyond reading the log: the
# capability their own page and API require (accounts.selectors.audit_events_readable).
EVENT_CAPABILITIES: dict[str, str] = {
    "policy.": Capability.MANAGE_POLICIES,
}


def hidden_event_prefixes(role: str) -> list[str]:
    """The audit event type prefixes a member of `role` may not read."""
    return sorted(prefix for prefix, capability in EVENT_CAPABILITIES.items()
                  if not role_can(role, capability))


class TokenScope(models.TextChoices):
    READ = "read", "Read"
    WRITE = "write", "Write"
    ADMIN = "admin", "Admin"


# A token with a wider scope may do what a narrower one may.
SCOPE_IMPLIES: dict[str, frozenset[str]] = {
    TokenScope.READ: frozenset({TokenScope.READ}),
    TokenScope.WRITE: frozenset({TokenScope.READ, TokenScope.WRITE}),
    TokenScope.ADMIN: frozenset({TokenScope.READ, TokenScope.WRITE, TokenScope.ADMIN}),
}
