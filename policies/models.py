"""Guardrail policies: what agents may touch and spend, per organization or per project."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from haao.tenancy import TenantModel


class Policy(TenantModel):
    """The organization's rules (`project` empty) or one project's override of them.

    `values` holds only the rules this row sets (policies.rules names them); the rest come
    from the organization's row, then from HAAO's defaults. Rows change only through
    policies.services, which validates every value and records a version.
    """

    project = models.OneToOneField("tickets.Project", null=True, blank=True,
                                   on_delete=models.CASCADE, related_name="policy")
    values = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "policies"
        constraints = [
            models.UniqueConstraint(fields=["organization"], condition=models.Q(project=None),
                                    name="one_policy_per_org"),
        ]

    def __str__(self) -> str:
        return f"policy of {self.project_id or self.organization_id}"


class PolicyVersion(TenantModel):
    """One change of one of the organization's policy rows, numbered per organization.

    An attempt records the organization's latest number when it starts: the rows' versions
    up to that number are the policy it ran under.
    """

    number = models.PositiveIntegerField()
    project = models.ForeignKey("tickets.Project", null=True, blank=True,
                                on_delete=models.SET_NULL, related_name="+")
    scope_label = models.CharField(max_length=120, help_text="The organization or project.")
    values = models.JSONField(default=dict, help_text="The row's values after the change.")
    changes = models.JSONField(default=dict, help_text="rule: [before, after]")
    author = models.ForeignKey("accounts.User", null=True, blank=True,
                               on_delete=models.SET_NULL, related_name="+")
    author_label = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "number"],
                                    name="policy_version_number"),
        ]

    def __str__(self) -> str:
        return f"policy version {self.number} ({self.scope_label})"
