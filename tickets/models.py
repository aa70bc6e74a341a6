"""Projects (and, to come, requirements, tickets and attempts)."""

from __future__ import annotations

import uuid

from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from accounts.tenancy import TenantModel

project_key_validator = RegexValidator(
    r"^[A-Z][A-Z0-9]{1,9}$", "Use 2-10 capital letters or digits, starting with a letter."
)


class Project(TenantModel):
    """A code repository that an organization lets HAAO work on."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    key = models.CharField(max_length=10, validators=[project_key_validator],
                           help_text="Prefix of ticket keys, e.g. PAY for PAY-12.")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True, max_length=5000)
    created_at = models.DateTimeField(default=timezone.now, editable=False)


    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "key"], name="project_key_per_org")
        ]
        permissions = [("approve_project", "Decide at the gates of the project's tickets")]

    def __str__(self) -> str:
        return f"{self.key} · {self.name}"


# Direct foreign keys for guardian: per-project grants are joined, not looked up by
# content type and text id, so filtered lists stay one query.
class ProjectUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Project, on_delete=models.CASCADE)


class ProjectGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Project, on_delete=models.CASCADE)
