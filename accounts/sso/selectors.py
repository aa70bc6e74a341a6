"""Reads for single sign-on: which identity provider serves an email or organization."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import Membership, Organization, OrganizationDomain, SSOConnection, User
from accounts.sso.domains import email_domain
from accounts.sso.providers import build_app


def sso_connection_for(*, identifier: str) -> SSOConnection | None:
    """The enabled, complete connection for an organization slug or an email's domain."""
    identifier = identifier.strip().lower()
    connections = SSOConnection.objects.filter(enabled=True).select_related("organization")
    if "@" in identifier:
        domain = email_domain(identifier)
        owner = verified_domain_owner(domain=domain) if domain else None
        if owner is not None:  # a verified domain routes to its owner's IdP, whatever is listed
            found = connections.filter(organization=owner).first()
        else:
            found = next((c for c in connections if domain and domain in c.email_domains), None)
    else:
        found = connections.filter(organization__slug=identifier).first()
    if found is None or build_app(found) is None:
        return None
    return found


def is_member(*, user: User, organization: Organization) -> bool:
    return Membership.objects.for_org(organization).filter(user=user).exists()


def organizations_requiring_sso(*, user: User) -> list[Organization]:
    """Organizations of the user that require SSO and do not let this user in by password."""
    orgs = Organization.objects.filter(
        sso_required=True,
        pk__in=Membership.objects.filter(user=user).values("organization"),
    ).exclude(break_glass_user=user).order_by("name")
    return list(orgs)


def organization_domains(*, organization: Organization) -> QuerySet[OrganizationDomain]:
    return OrganizationDomain.objects.for_org(organization).order_by("domain")


def verified_domains(*, organization: Organization) -> set[str]:
    """The email domains the organization's identity provider may speak for."""
    return set(OrganizationDomain.objects.for_org(organization)
               .filter(verified_at__isnull=False).values_list("domain", flat=True))


def verified_domain_owner(*, domain: str) -> Organization | None:
    """The organization that verified `domain` (normalized), if any."""
    row = (OrganizationDomain.objects.select_related("organization")
           .filter(domain=domain, verified_at__isnull=False).first())
    return row.organization if row is not None else None


def idp_may_speak_for(*, organization: Organization, email: str) -> bool:
    """Whether the organization's identity provider may sign in or create `email`'s account."""
    domain = email_domain(email)
    return bool(domain) and OrganizationDomain.objects.for_org(organization).filter(
        domain=domain, verified_at__isnull=False).exists()
