"""Request and response shapes of the organization API; every input field is bounded."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from accounts.models import ApiToken, AuditEvent, Invitation, Membership
from accounts.roles import Role, TokenScope
from haao.text import displayable_data

# Sizes a person would never exceed; larger inputs are refused before any service runs.
MAX_NAME = 100
MAX_EMAIL = 254


class StrictCharField(serializers.CharField):
    """A string and only a string: numbers, lists and objects are refused, not converted.

    DRF's CharField already refuses NUL and surrogate characters (the database could not
    store them); this adds the type check that its `str(123)` coercion skips.
    """

    # The count is filled in by Django's length validator; the limit here (haao.limits wording).
    default_error_messages = {"not_a_string": "Expected a string but got {type}.",
                              "max_length": "At most {max_length} characters "
                                            "(got %(show_value)d)."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("not_a_string", type=_json_type(data))
        return str(super().to_internal_value(data))


class StrictEmailField(serializers.EmailField):
    default_error_messages = {"not_a_string": "Expected a string but got {type}."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("not_a_string", type=_json_type(data))
        return str(super().to_internal_value(data))


class StrictChoiceField(serializers.ChoiceField):
    default_error_messages = {"not_a_string": "Expected a string but got {type}.",
                              "invalid_choice": "\"{input}\" is not one of: {choices}."}

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("not_a_string", type=_json_type(data))
        if data not in self.choice_strings_to_values:
            # Echo a bounded part of the input: the error must not repeat a megabyte back.
            shown = data if len(data) <= 40 else f"{data[:40]}…"
            self.fail("invalid_choice", input=shown, choices=", ".join(self.choices))
        return super().to_internal_value(data)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


class StrictSerializer(serializers.Serializer):
    """Input serializer that names unknown fields instead of silently dropping them."""

    # haao.openapi reads it: the schema then says `additionalProperties: false`.
    refuses_unknown_fields = True

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(str(key)[:50] for key in set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {key: ["This field is not accepted here."] for key in unknown[:10]}
                )
        return super().to_internal_value(data)


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
