"""Guardrail policies: what the engine may do on its own, per organization or per project."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from accounts.tenancy import TenantModel


class Policy(TenantModel):
    """The organization's rules (`project` empty) or one project's override of them."""

    project = models.OneToOneField("tickets.Project", null=True, blank=True,
                                   on_delete=models.CASCADE, related_name="policy")
    escalation_allowed = models.BooleanField(
        default=True, help_text="Hand a ticket to the Tech Lead when local attempts are spent.")
    audit_required = models.BooleanField(
        default=True, help_text="The Tech Lead audits work that passed the machine checks.")
    max_audit_failures = models.PositiveSmallIntegerField(
        default=3, validators=[MinValueValidator(1), MaxValueValidator(20)],
        help_text="Failed audits after which a ticket is blocked for a person.")
    max_cloud_attempts = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(10)],
        help_text="Attempts the Tech Lead makes on an escalated ticket.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization"], condition=models.Q(project=None),
                                    name="one_policy_per_org"),
        ]

    def __str__(self) -> str:
        return f"policy of {self.project_id or self.organization_id}"
