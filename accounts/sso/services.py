"""Writes for single sign-on: the audit trail of SSO sign-ins."""

from __future__ import annotations

from accounts.audit import SYSTEM, Actor, audit_record
from accounts.models import AuditEvent, Organization, User


def sso_login_record(*, organization: Organization, user: User, protocol: str) -> AuditEvent:
    """An "sso.login" event in the organization whose identity provider signed the user in."""
    return audit_record(organization=organization, actor=Actor.of(user), type="sso.login",
                        target=user, target_label=user.email, data={"protocol": protocol})


def sso_login_refusal_record(
    *, organization: Organization, email: str, protocol: str, reason: str
) -> AuditEvent:
    """An "sso.login_refused" event: the organization's IdP vouched for someone we turned away."""
    return audit_record(organization=organization, actor=SYSTEM, type="sso.login_refused",
                        target_label=email, data={"protocol": protocol, "reason": reason})
