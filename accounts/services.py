"""Writes for organizations, memberships, invitations, API tokens and SSO settings.

Every mutating service writes an audit event in the same transaction.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from accounts import tokens
from accounts.models import (
    ApiToken,
    Invitation,
    Membership,
    Organization,
    OrganizationDomain,
    SSOConnection,
    User,
)
from accounts.roles import Role, TokenScope
from accounts.selectors import sso_domain_owners
from accounts.signals import access_reduce
from haao.audit import SYSTEM, Actor, audit_record
from haao.errors import ApplicationError, Conflict, Forbidden, NotFound
from haao.ssrf import check_endpoint_url

logger = logging.getLogger(__name__)

INVITATION_TTL = timedelta(days=7)
MAX_TOKEN_LIFETIME = timedelta(days=366)
RESERVED_SLUGS = frozenset({"admin", "api", "accounts", "static", "health", "o", "sso", "new"})


# --- Organizations ---------------------------------------------------------------------------

def organization_create(*, name: str, slug: str, creator: User) -> Organization:
    """A new organization with its creator as the first admin."""
    if slug in RESERVED_SLUGS:
        raise ApplicationError(f"The slug '{slug}' is reserved; choose another.",
                               details={"slug": ["reserved"]})
    with transaction.atomic():
        if Organization.objects.filter(slug=slug).exists():
            raise Conflict(f"An organization with the slug '{slug}' exists already.",
                           details={"slug": ["taken"]})
        organization = Organization.objects.create(name=name, slug=slug)
        membership = Membership.objects.create(
            organization=organization, user=creator, role=Role.ADMIN
        )
        actor = Actor.of(creator)
        audit_record(organization=organization, actor=actor, type="organization.created",
                     target=organization, data={"name": name, "slug": slug})
        audit_record(organization=organization, actor=actor, type="membership.created",
                     target=membership, target_label=creator.email,
                     data={"role": Role.ADMIN, "via": "organization creation"})
    return organization


def organization_set_sso_policy(
    *, organization: Organization, actor: User, sso_required: bool,
    break_glass_user: User | None,
) -> Organization:
    with transaction.atomic():
        org = Organization.objects.select_for_update().get(pk=organization.pk)
        if break_glass_user is not None and not Membership.objects.for_org(org).filter(
            user=break_glass_user, role=Role.ADMIN
        ).exists():
            raise ApplicationError("The break-glass account must be an admin of this "
                                   "organization.", details={"break_glass_user": ["not an admin"]})
        if sso_required and not SSOConnection.objects.for_org(org).filter(enabled=True).exists():
            raise ApplicationError("Configure and enable an identity provider before "
                                   "requiring SSO.", details={"sso_required": ["no provider"]})
        if sso_required and not OrganizationDomain.objects.for_org(org).filter(
                verified_at__isnull=False).exists():
            # The IdP signs in only addresses at verified domains: with none, nobody but the
            # break-glass admin could enter.
            raise ApplicationError("Verify an email domain before requiring SSO.",
                                   details={"sso_required": ["no verified domain"]})
        before = {"sso_required": org.sso_required,
                  "break_glass_user": org.break_glass_user.email if org.break_glass_user else None}
        org.sso_required = sso_required
        org.break_glass_user = break_glass_user
        org.save(update_fields=["sso_required", "break_glass_user"])
        after = {"sso_required": sso_required,
                 "break_glass_user": break_glass_user.email if break_glass_user else None}
        audit_record(organization=org, actor=Actor.of(actor), type="sso.policy_changed",
                     target=org, data={"before": before, "after": after})
        if sso_required:
            # Open live sockets of sessions that no longer meet the rule are closed.
            access_reduce(organization=org.pk)
    return org


UNSANDBOXED_REASON_MAX = 500


def organization_set_unsandboxed(
    *, organization: Organization, actor: User, allowed: bool, reason: str,
) -> Organization:
    """Allow or forbid running checks without bubblewrap; turning it on needs a reason."""
    if not isinstance(allowed, bool):
        raise ApplicationError("allowed must be true or false.",
                               details={"allowed": ["must be true or false"]})
    reason = (reason or "").strip()
    if allowed and not reason:
        raise ApplicationError("Say why checks may run without a sandbox.",
                               details={"reason": ["required when allowing unsandboxed checks"]})
    if len(reason) > UNSANDBOXED_REASON_MAX:
        raise ApplicationError(f"The reason must be at most {UNSANDBOXED_REASON_MAX} "
                               f"characters (it has {len(reason)}).",
                               details={"reason": [f"at most {UNSANDBOXED_REASON_MAX} characters"]})
    with transaction.atomic():
        org = Organization.objects.select_for_update().get(pk=organization.pk)
        if not Membership.objects.for_org(org).filter(user=actor, role=Role.ADMIN).exists():
            raise Forbidden("Only an admin of the organization may change this.")
        before = org.allow_unsandboxed_checks
        org.allow_unsandboxed_checks = allowed
        org.save(update_fields=["allow_unsandboxed_checks"])
        audit_record(organization=org, actor=Actor.of(actor),
                     type="organization.unsandboxed_changed", target=org,
                     data={"before": {"allow_unsandboxed_checks": before},
                           "after": {"allow_unsandboxed_checks": allowed}, "reason": reason})
    return org


# --- Memberships -----------------------------------------------------------------------------

def _lock_admins(organization: Organization) -> list[Membership]:
    return list(Membership.objects.for_org(organization).select_for_update()
                .filter(role=Role.ADMIN))


def membership_set_role(
    *, organization: Organization, membership: Membership, role: str, actor: User
) -> Membership:
    if role not in Role.values:
        raise ApplicationError(f"'{role}' is not a role; choose one of "
                               f"{', '.join(Role.values)}.", details={"role": ["invalid"]})
    with transaction.atomic():
        admins = _lock_admins(organization)
        current = Membership.objects.for_org(organization).select_for_update().get(pk=membership.pk)
        if current.role == role:
            return current
        if current.role == Role.ADMIN and len(admins) == 1:
            raise Conflict("An organization needs at least one admin; make someone else admin "
                           "first.", code="last_admin")
        before = current.role
        current.role = role
        current.save(update_fields=["role"])
        audit_record(organization=organization, actor=Actor.of(actor),
                     type="membership.role_changed", target=current,
                     target_label=current.user.email, data={"before": before, "after": role})
        access_reduce(users=[current.user_id])
    return current


def membership_remove(*, organization: Organization, membership: Membership, actor: User) -> None:
    with transaction.atomic():
        admins = _lock_admins(organization)
        current = Membership.objects.for_org(organization).select_for_update().get(pk=membership.pk)
        if current.role == Role.ADMIN and len(admins) == 1:
            raise Conflict("The last admin cannot be removed; make someone else admin first.",
                           code="last_admin")
        if organization.break_glass_user_id == current.user_id:
            Organization.objects.filter(pk=organization.pk).update(break_glass_user=None)
        email = current.user.email
        audit_record(organization=organization, actor=Actor.of(actor), type="membership.removed",
                     target=current, target_label=email, data={"role": current.role})
        current.delete()
        _revoke_tokens_of(organization=organization, user=membership.user, actor=actor,
                          reason="membership removed")
        access_reduce(users=[current.user_id])


def membership_add(*, organization: Organization, user: User, role: str, actor: User,
                   via: str = "added by an admin") -> Membership:
    """Add an existing user directly (platform operators and seeding; people use invitations)."""
    if role not in Role.values:
        raise ApplicationError(f"'{role}' is not a role.", details={"role": ["invalid"]})
    with transaction.atomic():
        if Membership.objects.for_org(organization).filter(user=user).exists():
            raise Conflict(f"{user.email} is a member already.")
        membership = Membership.objects.create(organization=organization, user=user, role=role)
        audit_record(organization=organization, actor=Actor.of(actor), type="membership.created",
                     target=membership, target_label=user.email, data={"role": role, "via": via})
    return membership


def membership_create_from_sso(
    *, organization: Organization, user: User, role: str, provider: str
) -> Membership:
    """Just-in-time membership for a user the organization's own IdP vouched for."""
    with transaction.atomic():
        membership, created = Membership.objects.get_or_create(
            organization=organization, user=user, defaults={"role": role}
        )
        if created:
            audit_record(organization=organization, actor=SYSTEM, type="membership.created",
                         target=membership, target_label=user.email,
                         data={"role": role, "via": f"sso:{provider}"})
    return membership


# --- Invitations -----------------------------------------------------------------------------

def invitation_create(
    *, organization: Organization, email: str, role: str, actor: User,
    ttl: timedelta = INVITATION_TTL,
) -> tuple[Invitation, str]:
    """An invitation and its secret token (shown once, in the link)."""
    email = email.strip().lower()
    if role not in Role.values:
        raise ApplicationError(f"'{role}' is not a role.", details={"role": ["invalid"]})
    if Membership.objects.for_org(organization).filter(user__email__iexact=email).exists():
        raise Conflict(f"{email} is a member already.", details={"email": ["already a member"]})
    raw = tokens.new_invitation_token()
    with transaction.atomic():
        invitation = Invitation.objects.create(
            organization=organization, email=email, role=role, invited_by=actor,
            token_hash=tokens.digest(raw), expires_at=timezone.now() + ttl,
        )
        audit_record(organization=organization, actor=Actor.of(actor),
                     type="invitation.created", target=invitation, target_label=email,
                     data={"role": role, "expires_at": invitation.expires_at})
        # Whoever invites (portal or API), the invitee gets the link by mail, after commit.
        transaction.on_commit(functools.partial(_invitation_mail, invitation=invitation,
                                                raw_token=raw))
    return invitation, raw


def invitation_link(raw_token: str) -> str:
    return settings.BASE_URL + reverse("invitation", kwargs={"token": raw_token})


def _invitation_mail(*, invitation: Invitation, raw_token: str) -> None:
    """Mail the link; a failure is logged, as the inviting admin also sees the link once."""
    org_name = invitation.organization.name
    try:
        send_mail(
            subject=f"{settings.ACCOUNT_EMAIL_SUBJECT_PREFIX}You are invited to {org_name}",
            message=(f"You were invited to join {org_name} on HAAO as "
                     f"{invitation.get_role_display().lower()}.\n\nAccept the invitation: "
                     f"{invitation_link(raw_token)}\n\nThe link works once, only for "
                     f"{invitation.email}, and expires on "
                     f"{invitation.expires_at:%Y-%m-%d %H:%M} UTC.\n"),
            from_email=None, recipient_list=[invitation.email],
        )
    except Exception:
        logger.exception("Could not send the invitation email for invitation %s",
                         invitation.pk)


def invitation_revoke(*, organization: Organization, invitation: Invitation, actor: User) -> None:
    with transaction.atomic():
        updated = Invitation.objects.for_org(organization).filter(
            pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True
        ).update(revoked_at=timezone.now())
        if not updated:
            raise Conflict("This invitation was already used or revoked.")
        audit_record(organization=organization, actor=Actor.of(actor),
                     type="invitation.revoked", target=invitation, target_label=invitation.email)


def invitation_for_token(raw: str) -> Invitation:
    """The pending invitation behind a link; any other case is the same 'not valid' error."""
    invitation = (Invitation.objects.select_related("organization")
                  .filter(token_hash=tokens.digest(raw)).first())
    if invitation is None or invitation.status != "pending":
        raise NotFound("This invitation link is not valid: it may have expired, been used "
                       "or been revoked. Ask an admin of the organization for a new one.",
                       code="invitation_invalid")
    return invitation


def invitation_accept(*, raw_token: str, user: User) -> Membership:
    """Join the invitation's organization with its role; the link then stops working."""
    invitation = invitation_for_token(raw_token)
    if invitation.email != user.email.lower():
        raise ApplicationError(
            f"This invitation was sent to {invitation.email}; you are signed in as "
            f"{user.email}.", code="invitation_wrong_user")
    organization = invitation.organization
    with transaction.atomic():
        # Compare-and-set: a second use of the same link finds nothing to update.
        claimed = Invitation.objects.filter(
            pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True,
            expires_at__gt=timezone.now(),
        ).update(accepted_at=timezone.now(), accepted_by=user)
        if not claimed:
            raise NotFound("This invitation link is not valid any more.",
                           code="invitation_invalid")
        try:
            with transaction.atomic():
                membership = Membership.objects.create(
                    organization=organization, user=user, role=invitation.role
                )
        except IntegrityError:
            raise Conflict(f"You are a member of {organization.name} already.") from None
        audit_record(organization=organization, actor=Actor.of(user),
                     type="invitation.accepted", target=invitation, target_label=user.email,
                     data={"role": invitation.role})
        audit_record(organization=organization, actor=Actor.of(user), type="membership.created",
                     target=membership, target_label=user.email,
                     data={"role": invitation.role, "via": "invitation"})
    return membership


# --- API tokens ------------------------------------------------------------------------------

def api_token_create(
    *, organization: Organization, user: User, name: str, scopes: Iterable[str],
    expires_at: datetime, parent: ApiToken | None = None,
) -> tuple[ApiToken, str]:
    """A token for `user` in `organization`; the plaintext is returned once and never stored.
    A token created with `parent` (another token) expires no later and is revoked with it."""
    scope_list = sorted(set(scopes))
    unknown = [s for s in scope_list if s not in TokenScope.values]
    if not scope_list or unknown:
        raise ApplicationError(
            f"Choose scopes from {', '.join(TokenScope.values)}"
            + (f"; unknown: {', '.join(unknown)}." if unknown else "."),
            details={"scopes": ["invalid"]})
    now = timezone.now()
    if expires_at <= now:
        raise ApplicationError("The expiry date must be in the future.",
                               details={"expires_at": ["in the past"]})
    if expires_at > now + MAX_TOKEN_LIFETIME:
        raise ApplicationError("A token may live at most one year.",
                               details={"expires_at": ["too far"]})
    if parent is not None and expires_at > parent.expires_at:
        raise ApplicationError(
            "A token created with a token must expire no later than that token "
            f"({parent.expires_at.isoformat()}).", details={"expires_at": ["after the parent"]})
    if not Membership.objects.for_org(organization).filter(user=user).exists():
        raise NotFound("Not found.")
    raw = tokens.new_api_token()
    with transaction.atomic():
        token = ApiToken.objects.create(
            organization=organization, user=user, name=name, prefix=tokens.display_prefix(raw),
            token_hash=tokens.digest(raw), scopes=scope_list, expires_at=expires_at,
            parent=parent,
        )
        audit_record(organization=organization, actor=Actor.of(user), type="api_token.created",
                     target=token, data={"scopes": scope_list, "expires_at": expires_at,
                                         "prefix": token.prefix})
    return token, raw


def api_token_revoke(*, organization: Organization, token: ApiToken, actor: User) -> None:
    with transaction.atomic():
        updated = ApiToken.objects.for_org(organization).filter(
            pk=token.pk, revoked_at__isnull=True
        ).update(revoked_at=timezone.now())
        if not updated:
            raise Conflict("This token was revoked already.")
        audit_record(organization=organization, actor=Actor.of(actor), type="api_token.revoked",
                     target=token, data={"prefix": token.prefix})
        _revoke_children(organization=organization, parents=[token.pk], actor=actor)


def _revoke_children(*, organization: Organization, parents: list[Any], actor: User) -> None:
    """Revoke every token created with one of `parents`, and theirs, and so on."""
    while parents:
        children = list(ApiToken.objects.for_org(organization).filter(
            parent_id__in=parents, revoked_at__isnull=True))
        for child in children:
            ApiToken.objects.filter(pk=child.pk).update(revoked_at=timezone.now())
            audit_record(organization=organization, actor=Actor.of(actor),
                         type="api_token.revoked", target=child,
                         data={"prefix": child.prefix, "reason": "its parent token was revoked"})
        parents = [child.pk for child in children]


def _revoke_tokens_of(*, organization: Organization, user: User, actor: User, reason: str) -> None:
    for token in ApiToken.objects.for_org(organization).filter(user=user,
                                                                revoked_at__isnull=True):
        ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
        audit_record(organization=organization, actor=Actor.of(actor), type="api_token.revoked",
                     target=token, data={"prefix": token.prefix, "reason": reason})


# --- SSO -------------------------------------------------------------------------------------

SSO_FIELDS = (
    "protocol", "enabled", "email_domains", "default_role", "oidc_issuer", "oidc_client_id",
    "saml_idp_entity_id", "saml_sso_url", "saml_x509_cert",
)


def sso_connection_save(
    *, organization: Organization, actor: User, fields: dict[str, Any],
    client_secret: str | None = None,
) -> SSOConnection:
    """Create or update the organization's identity provider. The secret is write-only:
    None keeps the stored one."""
    unknown = set(fields) - set(SSO_FIELDS)
    if unknown:
        raise ApplicationError(f"Unknown SSO settings: {', '.join(sorted(unknown))}.")
    domains = [d.strip().lower() for d in fields.get("email_domains", []) if d.strip()]
    if domains:
        fields = {**fields, "email_domains": domains}
        taken = sorted(sso_domain_owners(domains=domains, excluding=organization))
        if taken:
            raise Conflict(f"The email domain {taken[0]} is routed to another organization's "
                           "identity provider.", details={"email_domains": ["taken"]})
    with transaction.atomic():
        connection = SSOConnection.objects.for_org(organization).select_for_update().first()
        created = connection is None
        if connection is None:
            connection = SSOConnection(organization=organization)
        before = {name: getattr(connection, name) for name in SSO_FIELDS}
        for name, value in fields.items():
            setattr(connection, name, value)
        secret_changed = client_secret is not None
        if (connection.oidc_issuer != before["oidc_issuer"] and connection.oidc_client_secret
                and not secret_changed):
            # The secret is write-only: it is never sent to an issuer it was not entered for.
            message = ("A new issuer needs the client secret entered again: the stored one is "
                       "only sent to the issuer it was entered for.")
            raise ApplicationError(message, details={"oidc_client_secret": [message]})
        if connection.oidc_issuer and connection.oidc_issuer != before["oidc_issuer"]:
            check_endpoint_url(connection.oidc_issuer, field="oidc_issuer",
                               what="the issuer URL of your OpenID provider",
                               key_label="client secret", unresolved_ok=True)
        if secret_changed:
            connection.oidc_client_secret = client_secret
        connection.full_clean(exclude=["organization", "oidc_client_secret"])
        connection.save()
        after = {name: getattr(connection, name) for name in SSO_FIELDS}
        changes = {k: {"before": before[k], "after": after[k]}
                   for k in SSO_FIELDS if before[k] != after[k]}
        if secret_changed:
            changes["oidc_client_secret"] = {"before": "********", "after": "********"}
        audit_record(organization=organization, actor=Actor.of(actor),
                     type="sso.created" if created else "sso.updated", target=connection,
                     target_label=connection.get_protocol_display(), data={"changes": changes})
    return connection
