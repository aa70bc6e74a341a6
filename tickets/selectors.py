"""Reads for projects, filtered by what the caller may see."""

from __future__ import annotations

from django.db.models import QuerySet
from guardian.shortcuts import get_objects_for_user

from accounts.models import Membership
from accounts.roles import Capability, role_can
from tickets.models import Project


def projects_visible_to(*, membership: Membership) -> QuerySet[Project]:
    """Every project for admins and managers; granted ones for everyone else (one query)."""
    projects = Project.objects.for_org(membership.organization)
    if role_can(membership.role, Capability.VIEW_ALL_PROJECTS):
        return projects
    return get_objects_for_user(
        membership.user, ["tickets.view_project", "tickets.approve_project"], klass=projects,
        any_perm=True, accept_global_perms=False,
    )


def can_approve_in(*, membership: Membership, project: Project) -> bool:
    """Admins decide everywhere; product owners only in projects granted to them."""
    if membership.role == "admin":
        return True
    if not role_can(membership.role, Capability.WRITE_REQUIREMENTS):
        return False
    return membership.user.has_perm("tickets.approve_project", project)
