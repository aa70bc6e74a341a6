"""Reads for organizations and memberships."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from django.db.models import QuerySet

from accounts.models import Membership, Organization, SSOConnection, User
from accounts.roles import hidden_event_prefixes
from haao.models import AuditEvent, ProgressEvent

_Event = TypeVar("_Event", AuditEvent, ProgressEvent)


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


def sso_domain_owners(*, domains: Iterable[str],
                      excluding: Organization | None = None) -> dict[str, Organization]:
    """Which organization's identity provider each of `domains` is routed to (one query).

    Domains live in a JSON list, which SQLite cannot search; connections are few, so they
    are read once and matched here.
    """
    wanted = {d.strip().lower() for d in domains if d.strip()}
    connections = SSOConnection.objects.select_related("organization")
    if excluding is not None:
        connections = connections.exclude(organization=excluding)
    owners: dict[str, Organization] = {}
    for connection in connections:
        for domain in connection.email_domains:
            if domain in wanted:
                owners.setdefault(domain, connection.organization)
    return owners


def audit_events_readable(*, membership: Membership) -> QuerySet[AuditEvent]:
    """The organization's audit events this member may read: sealed ones (a row joins the log
    when the sealer chains it, right after its writer's commit), and without the capability an
    event type needs (e.g. policy changes need MANAGE_POLICIES), those events are left out."""
    return without_types(AuditEvent.objects.for_org(membership.organization)
                         .filter(seq__isnull=False), hidden_event_prefixes(membership.role))


def without_types(events: QuerySet[_Event], prefixes: Iterable[str]) -> QuerySet[_Event]:
    """`events` without the types starting with one of `prefixes` (hidden_event_prefixes)."""
    for prefix in prefixes:
        events = events.exclude(type__startswith=prefix)
    return events
