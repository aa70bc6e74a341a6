"""Writes for projects and per-project grants."""

from __future__ import annotations

from django.db import transaction
from guardian.shortcuts import assign_perm, remove_perm

from accounts.audit import Actor, audit_record
from accounts.models import Membership, Organization, User
from haao.errors import ApplicationError, Conflict, NotFound
from tickets.models import Project

GRANTS = {
    "view": "view_project",
    "approve": "approve_project",
}


def project_create(*, organization: Organization, key: str, name: str, actor: User,
                   description: str = "", repository: str = "") -> Project:
    with transaction.atomic():
        if Project.objects.for_org(organization).filter(key=key).exists():
            raise Conflict(f"A project with the key {key} exists already.",
                           details={"key": ["taken"]})
        project = Project(organization=organization, key=key, name=name,
                          description=description, repository=repository)
        project.full_clean(exclude=["organization"])
        project.save()
        audit_record(organization=organization, actor=Actor.of(actor), type="project.created",
                     target=project, data={"key": key, "name": name})
    return project


def project_repository_set(*, project: Project, repository: str, actor: User) -> Project:
    """Point the project at another repository (HAAO clones it into its workspace)."""
    from agents.workspaces.repos import check_repository

    check_repository(repository)
    with transaction.atomic():
        Project.objects.filter(pk=project.pk).update(repository=repository)
        audit_record(organization=project.organization, actor=Actor.of(actor),
                     type="project.repository_changed", target=project, project_id=project.pk,
                     data={"repository": repository})
    project.repository = repository
    return project


def project_grant_set(*, organization: Organization, project: Project, user: User,
                      grants: set[str], actor: User) -> set[str]:
    """Set exactly which grants (`view`, `approve`) `user` holds on `project`."""
    unknown = grants - set(GRANTS)
    if unknown:
        raise ApplicationError(f"Unknown grant: {', '.join(sorted(unknown))}; use view or "
                               "approve.", details={"grants": ["invalid"]})
    if project.organization_id != organization.pk:
        raise NotFound("Not found.")
    if not Membership.objects.for_org(organization).filter(user=user).exists():
        raise NotFound("Not found.")
    if "approve" in grants:
        grants = grants | {"view"}
    with transaction.atomic():
        before = {name for name, perm in GRANTS.items() if user.has_perm(f"tickets.{perm}",
                                                                          project)}
        for name, perm in GRANTS.items():
            if name in grants and name not in before:
                assign_perm(perm, user, project)
            elif name not in grants and name in before:
                remove_perm(perm, user, project)
        if before != grants:
            audit_record(organization=organization, actor=Actor.of(actor),
                         type="project.grants_changed", target=project,
                         data={"user": user.email, "before": sorted(before),
                               "after": sorted(grants)})
    return grants
