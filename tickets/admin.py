"""Django admin for platform operators."""

from __future__ import annotations

from django.contrib import admin
from guardian.admin import GuardedModelAdmin

from tickets.models import Project


@admin.register(Project)
class ProjectAdmin(GuardedModelAdmin):
    list_display = ["key", "name", "organization", "created_at"]
    search_fields = ["key", "name", "organization__slug"]
    readonly_fields = ["organization"]

    def has_add_permission(self, request: object) -> bool:
        return False  # projects are created inside an organization, in the portal or API
