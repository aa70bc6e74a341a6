"""Reads for single sign-on: which identity provider serves an email or organization."""

from __future__ import annotations

from accounts.models import Membership, Organization, SSOConnection, User
from accounts.selectors import sso_domain_owners
from accounts.sso.providers import build_app


def sso_connection_for(*, identifier: str) -> SSOConnection | None:
    """The enabled, complete connection for an organization slug or an email's domain."""
    identifier = identifier.strip().lower()
    connections = SSOConnection.objects.filter(enabled=True).select_related("organization")
    if "@" in identifier:
        domain = identifier.rpartition("@")[2]
        found = next((c for c in connections if domain and domain in c.email_domains), None)
    else:
        found = connections.filter(organization__slug=identifier).first()
    if found is None or build_app(found) is None:
        return None
    return found


def sso_domain_owner(*, email: str) -> Organization | None:
    """The organization whose identity provider the email's domain is routed to, if any."""
    domain = email.strip().lower().rpartition("@")[2]
    return sso_domain_owners(domains=[domain]).get(domain) if domain else None


def is_member(*, user: User, organization: Organization) -> bool:
    return Membership.objects.for_org(organization).filter(user=user).exists()


def organizations_requiring_sso(*, user: User) -> list[Organization]:
    """Organizations of the user that require SSO and do not let this user in by password."""
    orgs = Organization.objects.filter(
        sso_required=True,
        pk__in=Membership.objects.filter(user=user).values("organization"),
    ).exclude(break_glass_user=user).order_by("name")
    return list(orgs)
