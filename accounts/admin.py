"""Django admin for platform operators; organizations manage themselves in the portal."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.http import HttpRequest

from accounts.models import (
    ApiToken,
    Invitation,
    Membership,
    Organization,
    OrganizationDomain,
    SSOConnection,
    User,
)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "name", "is_active", "is_staff", "last_login"]
    search_fields = ["email", "name"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("name",)}),
        ("Platform permissions", {"fields": ("is_active", "is_staff", "is_superuser")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",),
                             "fields": ("email", "password1", "password2")}),)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "sso_required", "created_at"]
    search_fields = ["name", "slug"]
    inlines = [MembershipInline]
    raw_id_fields = ["break_glass_user"]


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["email", "organization", "role", "created_at", "expires_at", "status"]
    list_filter = ["role"]
    search_fields = ["email", "organization__slug"]
    readonly_fields = ["organization", "email", "role", "invited_by", "created_at",
                       "accepted_at", "accepted_by"]
    exclude = ["token_hash"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # invitations carry a secret link, made only where it can be shown once


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "user", "organization", "expires_at", "last_used_at",
                    "revoked_at"]
    search_fields = ["prefix", "user__email", "organization__slug"]
    readonly_fields = ["organization", "user", "name", "prefix", "scopes", "created_at",
                       "expires_at", "last_used_at"]
    exclude = ["token_hash"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


class SSOConnectionForm(forms.ModelForm):
    """The client secret is write-only: never rendered, blank keeps the stored one."""

    oidc_client_secret = forms.CharField(
        required=False, widget=forms.PasswordInput(render_value=False),
        help_text="Leave blank to keep the stored secret.")

    class Meta:
        model = SSOConnection
        fields = ["protocol", "enabled", "email_domains", "default_role", "oidc_issuer",
                  "oidc_client_id", "oidc_client_secret", "saml_idp_entity_id", "saml_sso_url",
                  "saml_x509_cert"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initial["oidc_client_secret"] = ""

    def clean_oidc_client_secret(self) -> Any:
        value = self.cleaned_data.get("oidc_client_secret")
        stored = self.instance.oidc_client_secret if self.instance.pk else ""
        if not value and stored and "oidc_issuer" in self.changed_data:
            raise forms.ValidationError("A new issuer needs the client secret entered again: "
                                        "the stored one is only sent to the issuer it was "
                                        "entered for.")
        return value or stored


@admin.register(SSOConnection)
class SSOConnectionAdmin(admin.ModelAdmin):
    form = SSOConnectionForm
    list_display = ["organization", "protocol", "enabled", "default_role", "updated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # added by the organization's admins in the portal, with an audit event


@admin.register(OrganizationDomain)
class OrganizationDomainAdmin(admin.ModelAdmin):
    """Read-only: domains are claimed, verified and removed by organization admins, audited."""

    list_display = ["domain", "organization", "verified_at", "method", "created_at"]
    list_filter = ["method"]
    search_fields = ["domain", "organization__slug"]
    exclude = ["token"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
