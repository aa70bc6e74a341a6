"""Test helper: an organization's email domain, verified against a stubbed DNS answer."""

from __future__ import annotations

from unittest import mock

from accounts.models import Organization, OrganizationDomain, User
from accounts.sso import domains, services


def verify_domain(organization: Organization, domain: str, actor: User) -> OrganizationDomain:
    """Add `domain` to the organization and verify it, as if its TXT record were published."""
    claim = services.organization_domain_add(organization=organization, domain=domain,
                                             actor=actor)
    record = domains.record_value(claim.token)
    with mock.patch.object(domains, "txt_records", lambda name: [record]):
        return services.organization_domain_verify(organization=organization, domain=claim,
                                                   actor=actor)
