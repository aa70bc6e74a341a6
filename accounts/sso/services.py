"""Writes for single sign-on: the audit trail of SSO sign-ins and verified email domains."""

from __future__ import annotations

import secrets

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import (
    DomainVerificationMethod,
    Membership,
    Organization,
    OrganizationDomain,
    User,
)
from accounts.roles import Role
from accounts.sso.domains import (
    has_verification_record,
    normalize_domain,
    record_name,
    record_value,
)
from haao.audit import SYSTEM, Actor, audit_record
from haao.errors import ApplicationError, Conflict, Forbidden, NotFound
from haao.models import AuditEvent


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


# --- Email domains ---------------------------------------------------------------------------

def _require_admin(*, organization: Organization, actor: User) -> None:
    if not Membership.objects.for_org(organization).filter(user=actor, role=Role.ADMIN).exists():
        raise Forbidden("Only an admin of the organization may manage its email domains.")


def _verified_elsewhere(*, domain: str, organization: Organization) -> bool:
    return (OrganizationDomain.objects.filter(domain=domain, verified_at__isnull=False)
            .exclude(organization=organization).exists())


TAKEN_MESSAGE = ("{domain} is verified by another organization. A domain's identity provider "
                 "can belong to one organization only; ask HAAO's operators if this is wrong.")


def organization_domain_add(
    *, organization: Organization, domain: str, actor: User
) -> OrganizationDomain:
    """Claim an email domain; it grants nothing until `organization_domain_verify` proves it."""
    _require_admin(organization=organization, actor=actor)
    name = normalize_domain(domain)
    if _verified_elsewhere(domain=name, organization=organization):
        raise Conflict(TAKEN_MESSAGE.format(domain=name), code="domain_taken",
                       details={"domain": ["verified by another organization"]})
    with transaction.atomic():
        if OrganizationDomain.objects.for_org(organization).filter(domain=name).exists():
            raise Conflict(f"{name} is listed already.", code="domain_listed",
                           details={"domain": ["listed already"]})
        claim = OrganizationDomain.objects.create(
            organization=organization, domain=name, token=secrets.token_urlsafe(24))
        audit_record(organization=organization, actor=Actor.of(actor), type="domain.added",
                     target=claim, target_label=name,
                     data={"record_name": record_name(name)})
    return claim


def organization_domain_verify(
    *, organization: Organization, domain: OrganizationDomain, actor: User
) -> OrganizationDomain:
    """Verify a claim by its DNS TXT record; a failure is audited and raised."""
    _require_admin(organization=organization, actor=actor)
    claim = OrganizationDomain.objects.for_org(organization).filter(pk=domain.pk).first()
    if claim is None:
        raise NotFound("This domain is not listed for the organization.")
    if claim.is_verified:
        return claim
    reason = ""
    if _verified_elsewhere(domain=claim.domain, organization=organization):
        reason = "verified by another organization"
    elif not has_verification_record(claim.domain, claim.token):  # DNS, outside transactions
        reason = "record not found"
    if not reason:
        try:
            with transaction.atomic():
                updated = OrganizationDomain.objects.for_org(organization).filter(
                    pk=claim.pk, verified_at__isnull=True
                ).update(verified_at=timezone.now(), method=DomainVerificationMethod.DNS_TXT)
                claim.refresh_from_db()
                if updated:
                    audit_record(organization=organization, actor=Actor.of(actor),
                                 type="domain.verified", target=claim, target_label=claim.domain,
                                 data={"method": claim.method})
            return claim
        except IntegrityError:  # another organization verified it a moment ago
            reason = "verified by another organization"
    audit_record(organization=organization, actor=Actor.of(actor),
                 type="domain.verification_failed", target=claim, target_label=claim.domain,
                 data={"reason": reason})
    if reason == "record not found":
        raise ApplicationError(
            f"No TXT record {record_value(claim.token)} was found at {record_name(claim.domain)} "
            f"or {claim.domain}. Publish it at your DNS provider and try again; changes can take "
            "a few minutes to appear.", code="domain_not_verified",
            details={"domain": ["record not found"]})
    raise Conflict(TAKEN_MESSAGE.format(domain=claim.domain), code="domain_taken",
                   details={"domain": ["verified by another organization"]})


def organization_domain_remove(
    *, organization: Organization, domain: OrganizationDomain, actor: User
) -> None:
    """Drop a claim; its identity provider stops speaking for the domain at once."""
    _require_admin(organization=organization, actor=actor)
    with transaction.atomic():
        claim = (OrganizationDomain.objects.for_org(organization).select_for_update()
                 .filter(pk=domain.pk).first())
        if claim is None:
            raise NotFound("This domain is not listed for the organization.")
        org = Organization.objects.select_for_update().get(pk=organization.pk)
        others = (OrganizationDomain.objects.for_org(org).filter(verified_at__isnull=False)
                  .exclude(pk=claim.pk))
        if org.sso_required and claim.is_verified and not others.exists():
            # Nobody but the break-glass admin could enter (see organization_set_sso_policy).
            raise Conflict(f"{claim.domain} is the last verified domain and the organization "
                           "requires SSO. Stop requiring SSO first, or verify another domain.",
                           code="last_verified_domain")
        audit_record(organization=organization, actor=Actor.of(actor), type="domain.removed",
                     target=claim, target_label=claim.domain,
                     data={"was_verified": claim.is_verified})
        claim.delete()
