"""Platform admin views of endpoints and the call ledger; API keys are never shown."""

from __future__ import annotations

from django.contrib import admin

from agents.models import InferenceEndpoint, ModelCall


@admin.register(InferenceEndpoint)
class InferenceEndpointAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "kind", "role", "model", "enabled", "health_status"]
    list_filter = ["kind", "role", "enabled", "health_status"]
    search_fields = ["name", "model", "organization__slug"]
    # Write-only everywhere: the key is edited in the organization's console, never here.
    exclude = ["api_key"]
    readonly_fields = ["health_status", "health_checked_at", "health_latency_ms", "health_error"]


@admin.register(ModelCall)
class ModelCallAdmin(admin.ModelAdmin):
    list_display = ["created_at", "organization", "endpoint_name", "model", "role", "outcome",
                    "input_tokens", "output_tokens", "cost"]
    list_filter = ["role", "outcome", "is_cloud"]
    search_fields = ["endpoint_name", "model", "request_id", "organization__slug"]

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False  # the ledger is append-only
