"""The organization's audit log: its hash-chained events and the head of each chain."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from haao.tenancy import TenantModel, TenantQuerySet


class ActorType(models.TextChoices):
    USER = "user", "User"
    MODEL = "model", "Model"
    SYSTEM = "system", "System"


class AuditEvent(TenantModel):
    """One row of an organization's append-only, hash-chained event and audit log.

    `hash` covers the row's content and the previous row's hash (per organization), so an
    edited or deleted row breaks the chain; `manage.py verify_audit_chain` finds it.
    """

    id = models.BigAutoField(primary_key=True)
    seq = models.PositiveBigIntegerField(editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    actor_type = models.CharField(max_length=10, choices=ActorType.choices)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=255, help_text="Who, as shown: email, model, …")
    type = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True, db_index=True)
    target_label = models.CharField(max_length=255, blank=True)
    # The project an event belongs to, if any: the portal streams a project's events by it.
    project_id = models.UUIDField(null=True, blank=True)
    data = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64, editable=False)
    hash = models.CharField(max_length=64, editable=False)


    class Meta:
        db_table = "accounts_auditevent"  # the table predates the audit log's move to haao
        ordering = ["seq"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "seq"], name="audit_seq_per_org")
        ]
        indexes = [
            models.Index(fields=["organization", "created_at"],
                         name="accounts_au_organiz_2a0dc7_idx"),
            models.Index(fields=["project_id", "seq"], name="accounts_au_project_32a7fd_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.type} by {self.actor_label}"


class AuditChainHead(models.Model):
    """The last sequence number and hash of each organization's audit chain.

    Writers lock this row, so concurrent writers queue and the chain never forks.
    """

    organization = models.OneToOneField(
        "accounts.Organization", primary_key=True, on_delete=models.CASCADE, related_name="+"
    )
    last_seq = models.PositiveBigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default="0" * 64)

    objects = TenantQuerySet.as_manager()

    class Meta:
        db_table = "accounts_auditchainhead"

    def __str__(self) -> str:
        return f"audit chain of {self.organization_id} at #{self.last_seq}"
