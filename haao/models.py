"""The organization's audit log: its hash-chained events and the head of each chain."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from haao.tenancy import TenantModel, TenantQuerySet


class ActorType(models.TextChoices):
    USER = "user", "User"
    MODEL = "model", "Model"
    SYSTEM = "system", "System"


class AuditEvent(TenantModel):
    """One row of an organization's append-only, hash-chained audit log.

    Writers insert a row without `seq` or hashes; the organization's sealer (haao.audit.seal)
    gives it its place in the organization's event sequence and a `hash` over its content
    and the previous sealed row's hash, so an edited or deleted row breaks the chain;
    `manage.py verify_audit_chain` finds it.
    """

    id = models.BigAutoField(primary_key=True)
    # The row's place among the organization's events (audit and progress); None until sealed.
    seq = models.PositiveBigIntegerField(null=True, blank=True, editable=False)
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
    prev_hash = models.CharField(max_length=64, blank=True, default="", editable=False)
    hash = models.CharField(max_length=64, blank=True, default="", editable=False)

    class Meta:
        db_table = "accounts_auditevent"  # the table predates the audit log's move to haao
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "seq"], name="audit_seq_per_org")
        ]
        indexes = [
            models.Index(fields=["organization", "created_at"],
                         name="accounts_au_organiz_2a0dc7_idx"),
            models.Index(fields=["project_id", "seq"], name="accounts_au_project_32a7fd_idx"),
            models.Index(fields=["organization", "id"], condition=Q(seq__isnull=True),
                         name="audit_unsealed"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq or '…'} {self.type} by {self.actor_label}"

    @property
    def sealed(self) -> bool:
        return self.seq is not None


class ProgressEvent(TenantModel):
    """One step of the loop's progress (tokens streamed, a check finished, waiting for an
    endpoint): shown on the project's and ticket's live streams beside the audit log's rows,
    but not part of the tamper-evident chain, so writing one takes no lock and no hash.

    The sealer numbers it in the same sequence as the audit log's rows, which is what makes
    a stream of both ordered and resumable.
    """

    id = models.BigAutoField(primary_key=True)
    seq = models.PositiveBigIntegerField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    actor_type = models.CharField(max_length=10, choices=ActorType.choices)
    actor_label = models.CharField(max_length=255)
    type = models.CharField(max_length=64)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=255, blank=True)
    project_id = models.UUIDField(null=True, blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "seq"], name="progress_seq_per_org")
        ]
        indexes = [
            models.Index(fields=["project_id", "seq"], name="progress_project_seq"),
            models.Index(fields=["target_id", "seq"], name="progress_target_seq"),
            models.Index(fields=["organization", "id"], condition=Q(seq__isnull=True),
                         name="progress_unsealed"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq or '…'} {self.type}"


class AuditChainHead(models.Model):
    """The last sequence number given to an organization's events and the hash of its last
    sealed audit row.

    The sealer locks this row, so sealers of one organization take turns and the chain never
    forks; writers never touch it.
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
