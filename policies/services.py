"""Changing guardrail policies: validated, versioned and in the audit log, or not at all."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.db import IntegrityError, transaction

from accounts.models import Organization
from haao import reads
from haao.audit import Actor, audit_record
from haao.models import AuditChainHead
from policies import rules
from policies.models import Policy, PolicyVersion
from policies.rules import PolicyInvalid
from policies.selectors import EffectivePolicy, effective_policy, policy_version
from tickets.models import Project


def _scope_label(organization: Organization, project: Project | None) -> str:
    return f"project {project.key}" if project is not None else f"organization {organization.slug}"


def policy_update(*, organization: Organization, actor: Actor, changes: Mapping[str, Any],
                  project: Project | None = None, inherit: Iterable[str] = ()
                  ) -> EffectivePolicy:
    """Set rules of the organization's policy (or of `project`'s override) and return what is
    now in force. `inherit` drops a project's overrides (or resets an organization's rules
    to the defaults). Every value is checked first: one bad field changes nothing."""
    if project is not None and project.organization_id != organization.pk:
        raise PolicyInvalid("The project belongs to another organization.",
                            details={"project": ["not in this organization"]})
    inherit = list(inherit)
    unknown = [str(name)[:100] for name in inherit if name not in rules.BY_NAME]
    if unknown:
        raise PolicyInvalid(f"The policy was not changed: {unknown[0]!r} is not a policy rule.",
                            details={"inherit": [f"not policy rules: {', '.join(unknown)}"]})
    with transaction.atomic():
        # The chain head serialises an organization's policy changes, and so their numbers.
        AuditChainHead.objects.get_or_create(organization=organization)
        AuditChainHead.objects.select_for_update().get(organization=organization)
        reads.forget()  # what this task read before the lock may be out of date
        row = _row(organization, project)
        current = effective_policy(organization=organization, project=project,
                                   with_version=False).values()
        # What an inherited rule falls back to: the organization's value for a project, the
        # default for the organization.
        fallback = rules.defaults() if project is None else effective_policy(
            organization=organization, with_version=False).values()
        cleaned = rules.rules_clean(changes, current={
            **current, **{name: fallback[name] for name in inherit}})
        before = dict(row.values)
        after = {name: value for name, value in before.items() if name not in inherit}
        after.update({name: rules.to_json(name, value) for name, value in cleaned.items()})
        diff = {name: [before.get(name), after.get(name)]
                for name in sorted(set(before) | set(after)) if before.get(name) != after.get(name)}
        if not diff:
            return effective_policy(organization=organization, project=project)
        row.values = after
        row.save(update_fields=["values", "updated_at"])
        number = policy_version(organization=organization) + 1
        label = _scope_label(organization, project)
        PolicyVersion.objects.create(organization=organization, number=number, project=project,
                                     scope_label=label, values=after, changes=diff,
                                     author=actor.user, author_label=actor.label[:255])
        audit_record(organization=organization, actor=actor, type="policy.changed",
                     target=project or organization, target_label=label,
                     project_id=project.pk if project is not None else None,
                     data={"version": number, "scope": label, "changes": diff})
        reads.forget()
    return effective_policy(organization=organization, project=project)


def _row(organization: Organization, project: Project | None) -> Policy:
    rows = Policy.objects.for_org(organization).select_for_update()
    row = rows.filter(project=project).first()
    if row is not None:
        return row
    try:
        with transaction.atomic():
            return Policy.objects.create(organization=organization, project=project)
    except IntegrityError:  # created by a concurrent change meanwhile
        return rows.get(project=project)
