"""Request and response shapes of the organization API; every input field is bounded."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from accounts.models import ApiToken, Invitation, Membership
from accounts.roles import Role, TokenScope
from haao.api import StrictCharField, StrictChoiceField, StrictEmailField, StrictSerializer
from haao.models import AuditEvent
from haao.text import displayable_data

# Sizes a person would never exceed; larger inputs are refused before any service runs.
MAX_NAME = 100
MAX_EMAIL = 254


# --- Errors ----------------------------------------------------------------------------------

# --- Organizations ---------------------------------------------------------------------------

class OrganizationSerializer(serializers.Serializer):
    slug = serializers.SlugField(read_only=True)
    name = serializers.CharField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    role = serializers.ChoiceField(choices=Role.choices, read_only=True,
                                   help_text="Your role in this organization.")
    sso_required = serializers.BooleanField(read_only=True)


# --- Members ---------------------------------------------------------------------------------

class MemberSerializer(serializers.ModelSerializer):
    email = serializers.EmailField(source="user.email", read_only=True)
    name = serializers.CharField(source="user.name", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "email", "name", "role", "created_at"]
        read_only_fields = fields


class MemberRoleSerializer(StrictSerializer):
    role = StrictChoiceField(choices=Role.choices)


# --- Invitations -----------------------------------------------------------------------------

class InvitationSerializer(serializers.ModelSerializer):
    status = serializers.ChoiceField(
        choices=["pending", "accepted", "revoked", "expired"], read_only=True
    )
    invited_by = serializers.EmailField(source="invited_by.email", read_only=True,
                                        allow_null=True, default=None)

    class Meta:
        model = Invitation
        fields = ["id", "email", "role", "status", "invited_by", "created_at", "expires_at",
                  "accepted_at", "revoked_at"]
        read_only_fields = fields


class InvitationCreateSerializer(StrictSerializer):
    email = StrictEmailField(max_length=MAX_EMAIL)
    role = StrictChoiceField(choices=Role.choices)


class InvitationCreatedSerializer(InvitationSerializer):
    token = serializers.CharField(read_only=True, help_text="Shown once; not retrievable later.")
    url = serializers.URLField(read_only=True, help_text="The link to send; shown once.")

    class Meta(InvitationSerializer.Meta):
        fields = [*InvitationSerializer.Meta.fields, "token", "url"]
        read_only_fields = fields


# --- API tokens ------------------------------------------------------------------------------

class ApiTokenSerializer(serializers.ModelSerializer):
    user = serializers.EmailField(source="user.email", read_only=True)
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=TokenScope.choices),
                                   read_only=True)
    is_active = serializers.BooleanField(read_only=True)

    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "user", "scopes", "created_at", "expires_at",
                  "last_used_at", "revoked_at", "is_active"]
        read_only_fields = fields


class ApiTokenCreateSerializer(StrictSerializer):
    name = StrictCharField(max_length=MAX_NAME)
    scopes = serializers.ListField(
        child=StrictChoiceField(choices=TokenScope.choices), min_length=1,
        max_length=len(TokenScope.values),
    )
    expires_at = serializers.DateTimeField(
        required=False, help_text="At most one year ahead; 90 days when left out."
    )


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    token = serializers.CharField(read_only=True, help_text="Shown once; only a hash is kept.")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]
        read_only_fields = fields


# --- Audit log -------------------------------------------------------------------------------

class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = ["seq", "created_at", "actor_type", "actor_label", "type", "target_type",
                  "target_id", "target_label", "data", "prev_hash", "hash"]
        read_only_fields = fields

    def to_representation(self, instance: AuditEvent) -> Any:
        # Rows stored before input was checked may hold unpaired surrogates: shown replaced.
        return displayable_data(super().to_representation(instance))
