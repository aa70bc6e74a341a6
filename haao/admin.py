"""The audit log in the platform admin: read-only, as the hash chain demands."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from haao.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the audit log is append-only, and its hash chain detects edits."""

    list_display = ["organization", "seq", "created_at", "actor_label", "type", "target_label"]
    list_filter = ["type", "actor_type"]
    search_fields = ["actor_label", "target_label", "organization__slug"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
