"""Platform admin views of policies and their versions: read only, changed in the console."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.utils.html import format_html

from policies.models import Policy, PolicyVersion


def _pretty(value: Any) -> str:
    return format_html('<pre style="white-space: pre-wrap">{}</pre>',
                       json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))


class _ReadOnly(admin.ModelAdmin):
    # Rows change only through policies.services, which validates and versions each change.
    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(Policy)
class PolicyAdmin(_ReadOnly):
    list_display = ["__str__", "organization", "project", "rules_set", "updated_at"]
    list_filter = ["organization"]
    search_fields = ["organization__slug", "project__key", "project__name"]
    list_select_related = ["organization", "project"]
    fields = readonly_fields = ("organization", "project", "values_display", "updated_at")

    @admin.display(description="Rules set")
    def rules_set(self, policy: Policy) -> str:
        return ", ".join(sorted(policy.values)) or "—"

    @admin.display(description="Values")
    def values_display(self, policy: Policy) -> str:
        return _pretty(policy.values)


@admin.register(PolicyVersion)
class PolicyVersionAdmin(_ReadOnly):
    list_display = ["number", "organization", "scope_label", "changed_rules", "author_label",
                    "created_at"]
    list_filter = ["organization"]
    search_fields = ["organization__slug", "scope_label", "author_label"]
    list_select_related = ["organization"]
    fields = readonly_fields = ("organization", "number", "scope_label", "project",
                                "author_label", "created_at", "changes_display",
                                "values_display")

    @admin.display(description="Changed rules")
    def changed_rules(self, version: PolicyVersion) -> str:
        return ", ".join(sorted(version.changes)) or "—"

    @admin.display(description="Changes (before, after)")
    def changes_display(self, version: PolicyVersion) -> str:
        return _pretty(version.changes)

    @admin.display(description="Values after the change")
    def values_display(self, version: PolicyVersion) -> str:
        return _pretty(version.values)
