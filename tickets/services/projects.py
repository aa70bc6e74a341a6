"""Writes for projects, their repository settings and per-project grants.

The settings' rules live in tickets.services.project_settings; the API's serializer and the
portal's settings form both end in `project_settings_clean`.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from django.db import transaction
from guardian.shortcuts import assign_perm, remove_perm

from accounts.models import Membership, Organization, User
from accounts.signals import access_reduce
from haao.audit import SYSTEM, Actor, audit_record
from haao.errors import ApplicationError, Conflict, NotFound
from tickets.models import Project, RepositoryAuth
from tickets.repositories import check_repository
from tickets.services.project_settings import (
    ARGV_EXAMPLE,
    MAX_TOKEN,
    MODEL_FIELD,
    SETTINGS,
    clean_argv,
    clean_repository_url,
    clean_token,
    full_clean,
    project_public,
    project_settings_clean,
    revealed,
)
from tickets.signals import project_setup_changed, send_on_commit

__all__ = [
    "ARGV_EXAMPLE", "GRANTS", "MAX_TOKEN", "MODEL_FIELD", "SETTINGS", "clean_argv",
    "clean_repository_url", "project_connection_report_set", "project_create",
    "project_deploy_key_set", "project_grant_set", "project_host_keys_pin",
    "project_repository_set", "project_settings_clean", "project_setup_report_set",
    "project_update", "project_webhook_secret_rotate", "revealed",
]

GRANTS = {
    "view": "view_project",
    "approve": "approve_project",
}
# The settings (API names) that decide whether the project's tests can run: a change to one
# makes the last setup check stale and starts a new one.
SETUP_SETTINGS = ("repository_url", "default_branch", "setup_command", "test_command")


def _setup_changed(project: Project) -> None:
    """Announce, once the change commits, that the project's setup changed (SETUP_SETTINGS)."""
    send_on_commit(project_setup_changed, project_id=project.pk)



# --- Writes ----------------------------------------------------------------------------------

def project_create(*, organization: Organization, key: str, name: str, actor: User,
                   description: str = "", repository: str = "",
                   values: Mapping[str, Any] | None = None, token: str = "") -> Project:
    """A new project; `values` are further settings by API name (see SETTINGS)."""
    given = {"name": name, "description": description, **(values or {})}
    if repository:
        given.setdefault("repository_url", repository)
    clean = project_settings_clean(given)
    secret = clean_token(token)
    with transaction.atomic():
        if Project.objects.for_org(organization).filter(key=key).exists():
            raise Conflict(f"A project with the key {key} exists already.",
                           details={"key": ["taken"]})
        project = Project(organization=organization, key=key, token=secret,
                          webhook_secret=secrets.token_urlsafe(32), **clean)
        if secret and "auth_method" not in clean:
            project.auth_method = RepositoryAuth.TOKEN
        full_clean(project)
        project.save()
        audit_record(organization=organization, actor=Actor.of(actor), type="project.created",
                     target=project, project_id=project.pk,
                     data={"key": key, **project_public(project)})
        _setup_changed(project)
    return project


def project_update(*, project: Project, actor: User, changes: Mapping[str, Any],
                   token: str = "") -> Project:
    """Change some settings; a new repository URL drops the token and pinned host keys
    unless `token` gives one again (a secret never follows to a new address on its own)."""
    secret = clean_token(token)
    with transaction.atomic():
        current = Project.objects.select_for_update().get(pk=project.pk)
        clean = project_settings_clean(changes, current=current)
        before = project_public(current)
        url_changed = "repository" in clean and clean["repository"] != current.repository
        for field, value in clean.items():
            setattr(current, field, value)
        if url_changed:
            current.token = ""
            current.ssh_known_hosts = ""
            current.connection_report = {}
        if secret:
            current.token = secret
            if "auth_method" not in clean:
                current.auth_method = RepositoryAuth.TOKEN
        full_clean(current)
        after = project_public(current)
        changed = sorted(field for field in after if after[field] != before[field])
        if secret and "token" not in changed:
            changed.append("token")
        if not changed:
            return current
        setup_changed = any(field in changed for field in SETUP_SETTINGS)
        if setup_changed:
            current.setup_report = {}  # about settings that no longer hold
        current.save()
        audit_record(organization=current.organization, actor=Actor.of(actor),
                     type="project.updated", target=current, project_id=current.pk,
                     data={"fields": changed,
                           "values": {f: after[f] for f in changed if f in after}})
        if setup_changed:
            _setup_changed(current)
    return current


def project_repository_set(*, project: Project, repository: str, actor: User) -> Project:
    """Point the project at another repository (HAAO clones it into its workspace)."""

    check_repository(repository)
    with transaction.atomic():
        Project.objects.filter(pk=project.pk).update(repository=repository, setup_report={})
        audit_record(organization=project.organization, actor=Actor.of(actor),
                     type="project.repository_changed", target=project, project_id=project.pk,
                     data={"repository": repository})
        _setup_changed(project)
    project.repository = repository
    project.setup_report = {}
    return project


def project_host_keys_pin(*, project: Project, known_hosts: str, fingerprints: list[str],
                          actor: User | None = None) -> None:
    """Pin the host keys learned on first contact, unless someone pinned keys meanwhile."""
    with transaction.atomic():
        pinned = Project.objects.filter(pk=project.pk, ssh_known_hosts="").update(
            ssh_known_hosts=known_hosts)
        if not pinned:
            return
        audit_record(organization=project.organization,
                     actor=Actor.of(actor) if actor else SYSTEM, type="project.host_key_pinned",
                     target=project, project_id=project.pk,
                     data={"fingerprints": fingerprints})
    project.ssh_known_hosts = known_hosts


def project_deploy_key_set(*, project: Project, private_key: str, public_key: str,
                           actor: User) -> None:
    """Store a new deploy key pair; the project authenticates with it from now on."""
    with transaction.atomic():
        Project.objects.filter(pk=project.pk).update(
            ssh_private_key=private_key, ssh_public_key=public_key,
            auth_method=RepositoryAuth.SSH_KEY)
        audit_record(organization=project.organization, actor=Actor.of(actor),
                     type="project.deploy_key_generated", target=project,
                     project_id=project.pk, data={"public_key": public_key})
    project.ssh_private_key = private_key
    project.ssh_public_key = public_key
    project.auth_method = RepositoryAuth.SSH_KEY


def project_webhook_secret_rotate(*, project: Project, actor: User) -> str:
    """A new secret for the forge's webhook; returned once, to paste into the forge."""
    secret = secrets.token_urlsafe(32)
    with transaction.atomic():
        current = Project.objects.select_for_update().get(pk=project.pk)
        current.webhook_secret = secret
        current.save(update_fields=["webhook_secret"])
        audit_record(organization=project.organization, actor=Actor.of(actor),
                     type="project.webhook_secret_rotated", target=project,
                     project_id=project.pk, data={"ends_with": secret[-4:]})
    project.webhook_secret = current.webhook_secret
    return secret


def project_connection_report_set(*, project: Project, report: dict[str, Any],
                                  actor: User | None = None) -> None:
    """Store the latest connection test and record that it ran, with its verdict."""
    _report_set(project=project, field="connection_report", report=report, actor=actor,
                type="project.connection_tested",
                audited=("reachable", "authenticated", "branch_exists", "message"))


# What a setup check ran with: a report is stored only while these still hold.
SETUP_FIELDS = ("repository", "default_branch", "setup_command", "test_command")


def project_setup_report_set(*, project: Project, report: dict[str, Any],
                             actor: User | None = None) -> bool:
    """Store the latest setup check and record that it ran, with its verdict and commit.

    `project` is as the check read it: if its settings changed meanwhile (the change cleared
    the report and queued a new check), this report speaks of settings that no longer hold
    and is dropped (False), so a slow check never overwrites a newer one's subject."""
    return _report_set(project=project, field="setup_report", report=report, actor=actor,
                       type="project.setup_checked",
                       audited=("status", "commit", "branch", "message"),
                       unchanged={name: getattr(project, name) for name in SETUP_FIELDS})


def _report_set(*, project: Project, field: str, report: dict[str, Any], actor: User | None,
                type: str, audited: tuple[str, ...],
                unchanged: dict[str, Any] | None = None) -> bool:
    with transaction.atomic():
        if not Project.objects.filter(pk=project.pk, **(unchanged or {})).update(
                **{field: report}):
            return False
        audit_record(organization=project.organization,
                     actor=Actor.of(actor) if actor else SYSTEM, type=type, target=project,
                     project_id=project.pk,
                     data={k: report[k] for k in audited if k in report})
    setattr(project, field, report)
    return True


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
        if before - grants:
            access_reduce(users=[user.pk])
    return grants
