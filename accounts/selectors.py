"""Reads for organizations and memberships."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import Membership, Organization, User


def membership_for(*, user: User, org_slug: str) -> Membership | None:
    """The caller's membership in the organization named by the URL, or None (→ 404)."""
    if not user.is_authenticated:
        return None
    return (Membership.objects.select_related("organization")
            .filter(user=user, organization__slug=org_slug).first())


def organizations_of(*, user: User) -> QuerySet[Organization]:
    if not user.is_authenticated:
        return Organization.objects.none()
    return Organization.objects.filter(
        pk__in=Membership.objects.filter(user=user).values("organization")
    ).order_by("name")
