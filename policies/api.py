"""REST endpoints of guardrail policies, under `/api/v1/orgs/<org>/…policy/`.

Admins only (manage policies); reads need the `read` scope, writes and "try it" the `admin`
scope. A project is named by its key (as everywhere in the API) or its id. Every value is
checked by policies.rules; a refused one answers 400 `invalid_policy` naming the field, and
nothing is stored.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.roles import Capability, TokenScope
from haao.api import (
    NOT_FOUND_MESSAGE,
    READ_ERRORS,
    WRITE_ERRORS,
    CursorPagination,
    StrictCharField,
    StrictChoiceField,
    StrictSerializer,
    errors,
    validated,
)
from haao.audit import Actor
from haao.endpoints import OrgEndpoint
from haao.secrets_registry import organization_secrets
from haao.text import displayable_data
from policies import rules
from policies.enforcement import policy_try
from policies.forms import MAX_COMMAND, MAX_PATH, MAX_PAYLOAD
from policies.models import PolicyVersion
from policies.selectors import (
    EffectivePolicy,
    effective_policy,
    policy_row_values,
    policy_versions,
)
from policies.services import policy_update
from tickets.models import Project
from tickets.selectors import project_by_key, projects_visible_to

MAX_ARGV = 100
RULE_COUNT = len(rules.RULES)
RULE_NAMES = [rule.name for rule in rules.RULES]

# --- Serializers -----------------------------------------------------------------------------


class RuleValueSerializer(serializers.Serializer):
    value = serializers.JSONField(help_text="The value in force (money as a string, USD).")
    source = serializers.CharField(  # type: ignore[assignment]  # a field, not Field.source
        help_text="Where it comes from: default, organization, project, "
                  "\"organization + project\" or \"default + project\" (a list a project "
                  "adds to).")
    default = serializers.JSONField(help_text="HAAO's default.")


class ProjectRuleValueSerializer(RuleValueSerializer):
    override = serializers.JSONField(allow_null=True,
                                     help_text="The project's own value, or null.")
    overridden = serializers.BooleanField(help_text="Whether the project sets this rule.")


class PolicySerializer(serializers.Serializer):
    version = serializers.IntegerField(help_text="The organization's latest policy version.")
    rules = serializers.DictField(child=RuleValueSerializer(),
                                  help_text="Every rule by name.")
    redaction = serializers.ChoiceField(
        choices=["always"], help_text="Secrets are redacted before every cloud call; no "
                                      "policy can switch that off.")


class ProjectPolicySerializer(PolicySerializer):
    project = serializers.CharField(help_text="The project's key.")
    rules = serializers.DictField(child=ProjectRuleValueSerializer(),
                                  help_text="Every rule by name.")


@extend_schema_field(rules.rules_object_schema())
class RuleChangesField(serializers.DictField):
    """Rule name → new value; policies.rules judges each value."""


class PolicyUpdateSerializer(StrictSerializer):
    # validate(): rules to change, rules to inherit, or both.
    schema_extra: ClassVar[dict[str, Any]] = {
        "minProperties": 1,
        "anyOf": [{"required": ["rules"]}, {"required": ["inherit"]}]}

    rules = RuleChangesField(
        child=serializers.JSONField(allow_null=True), required=False,
        help_text="Rule name → new value; only the rules given change.")
    inherit = serializers.ListField(
        child=StrictChoiceField(choices=RULE_NAMES), required=False,
        min_length=1, max_length=RULE_COUNT,
        help_text="Rule names to drop: a project inherits the organization's value again; "
                  "the organization's own go back to HAAO's default.")

    def validate_rules(self, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            raise serializers.ValidationError("Give at least one rule to change.")
        if len(value) > RULE_COUNT:
            raise serializers.ValidationError(f"At most {RULE_COUNT} rules.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("rules") and not attrs.get("inherit"):
            raise serializers.ValidationError({"rules": ["Give rules to change or inherit."]})
        return attrs


class PolicyTrySerializer(StrictSerializer):
    # validate(): at least one of a path with text in it, a command or a payload.
    schema_extra: ClassVar[dict[str, Any]] = {"minProperties": 1, "anyOf": [
        {"required": ["path"], "properties": {"path": {"pattern": "\\S"}}},
        {"required": ["command"], "properties": {"command": {"minItems": 1}}},
        {"required": ["payload"], "properties": {"payload": {"minLength": 1}}}]}

    path = StrictCharField(max_length=MAX_PATH, required=False, allow_blank=True,
                           help_text="A path in the repository.")
    command = serializers.ListField(
        child=StrictCharField(max_length=MAX_COMMAND, allow_blank=True, trim_whitespace=False),
        required=False, max_length=MAX_ARGV, help_text="A check's argv, e.g. [\"pytest\", "
                                                       "\"-q\"].")
    payload = StrictCharField(max_length=MAX_PAYLOAD, required=False, allow_blank=True,
                              trim_whitespace=False, help_text="Text bound for a cloud model.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not (attrs.get("path", "").strip() or attrs.get("command") or attrs.get("payload")):
            raise serializers.ValidationError(
                {"path": ["Give a path, a command or a payload to try."]})
        return attrs


class DecisionSerializer(serializers.Serializer):
    allowed = serializers.BooleanField()
    rule = serializers.CharField(required=False, help_text="The rule that refused it.")
    value = serializers.JSONField(required=False, help_text="The value that fired.")
    message = serializers.CharField()


class PayloadResultSerializer(serializers.Serializer):
    redactions = serializers.IntegerField()
    kinds = serializers.DictField(child=serializers.IntegerField(),
                                  help_text="Secrets replaced, by kind.")
    sent = serializers.CharField(help_text="The text as it would be sent.")


class PolicyTryResultSerializer(serializers.Serializer):
    path = DecisionSerializer(required=False)
    command = DecisionSerializer(required=False)
    payload = PayloadResultSerializer(required=False)


class PolicyVersionSerializer(serializers.ModelSerializer):
    scope = serializers.CharField(source="scope_label")
    project = serializers.SerializerMethodField(help_text="The project's key, or null for the "
                                                          "organization's own policy.")
    author = serializers.CharField(source="author_label")
    changes = serializers.JSONField(help_text="rule → [before, after]; null is not set.")

    class Meta:
        model = PolicyVersion
        fields = ["number", "scope", "project", "changes", "author", "created_at"]
        read_only_fields = fields

    def get_project(self, version: PolicyVersion) -> str | None:
        return version.project.key if version.project is not None else None

    def to_representation(self, instance: PolicyVersion) -> Any:
        # Versions stored before input was checked may hold unpaired surrogates.
        return displayable_data(super().to_representation(instance))


def _json(name: str, value: Any) -> Any:
    return rules.to_json(name, value)


def policy_body(effective: EffectivePolicy, *, own: dict[str, Any] | None = None,
                project: Project | None = None) -> dict[str, Any]:
    """The policy as the API answers it (a project's with its own overrides)."""
    body: dict[str, Any] = {}
    for rule in rules.RULES:
        entry = {"value": _json(rule.name, getattr(effective, rule.name)),
                 "source": effective.sources[rule.name],
                 "default": _json(rule.name, rule.default)}
        if project is not None and own is not None:
            entry["override"] = own.get(rule.name)
            entry["overridden"] = rule.name in own
        body[rule.name] = entry
    answer: dict[str, Any] = {"version": effective.version}
    if project is not None:
        answer["project"] = project.key
    answer.update(rules=body, redaction="always")
    # Values stored before input was checked may hold unpaired surrogates.
    return dict(displayable_data(answer))


# --- Views -----------------------------------------------------------------------------------

class _PolicyBase(OrgEndpoint):
    required_capability = Capability.MANAGE_POLICIES
    read_scope = TokenScope.READ
    write_scope = TokenScope.ADMIN

    def get_project(self, key: str) -> Project:
        """The project by key, or by id; another organization's is not found."""
        project = project_by_key(membership=self.membership, key=key)
        if project is None:
            try:
                project_id = uuid.UUID(key)
            except ValueError:
                project_id = None
            if project_id is not None:
                project = projects_visible_to(membership=self.membership).filter(
                    pk=project_id).first()
        if project is None:
            raise NotFound(NOT_FOUND_MESSAGE)
        return project

    def answer(self, project: Project | None) -> Response:
        effective = effective_policy(organization=self.org, project=project)
        if project is None:
            return Response(policy_body(effective))
        own = policy_row_values(organization=self.org, project=project)
        return Response(policy_body(effective, own=own, project=project))

    def update(self, request: Request, project: Project | None) -> Response:
        data = validated(PolicyUpdateSerializer, request)
        policy_update(organization=self.org, actor=Actor.of(self.actor),
                      changes=data.get("rules", {}), project=project,
                      inherit=data.get("inherit", []))
        return self.answer(project)

    def try_it(self, request: Request, project: Project | None) -> Response:
        data = validated(PolicyTrySerializer, request)
        effective = effective_policy(organization=self.org, project=project)
        return Response(policy_try(effective, path=data.get("path", "").strip(),
                                   command=data.get("command", []),
                                   payload=data.get("payload", ""),
                                   known=organization_secrets(organization=self.org)))


PROJECT_PARAMETER = OpenApiParameter("key", str, OpenApiParameter.PATH,
                                     description="The project's key (e.g. PAY) or id.")


@extend_schema(tags=["policies"])
class PolicyView(_PolicyBase):
    serializer_class = PolicySerializer

    @extend_schema(operation_id="policy_retrieve",
                   responses={200: PolicySerializer, **errors(*READ_ERRORS)})
    def get(self, request: Request, org: str) -> Response:
        """The organization's policy: every rule's value, where it comes from and its default."""
        return self.answer(None)

    @extend_schema(operation_id="policy_update", request=PolicyUpdateSerializer,
                   responses={200: PolicySerializer, **errors(*WRITE_ERRORS)})
    def patch(self, request: Request, org: str) -> Response:
        """Change rules of the organization's policy (admin scope); one bad value changes
        nothing."""
        return self.update(request, None)


@extend_schema(tags=["policies"], parameters=[PROJECT_PARAMETER])
class ProjectPolicyView(_PolicyBase):
    serializer_class = ProjectPolicySerializer

    @extend_schema(operation_id="project_policy_retrieve",
                   responses={200: ProjectPolicySerializer, **errors(*READ_ERRORS)})
    def get(self, request: Request, org: str, key: str) -> Response:
        """A project's policy in force, with the rules it overrides."""
        return self.answer(self.get_project(key))

    @extend_schema(operation_id="project_policy_update", request=PolicyUpdateSerializer,
                   responses={200: ProjectPolicySerializer, **errors(*WRITE_ERRORS)})
    def patch(self, request: Request, org: str, key: str) -> Response:
        """Override rules for one project, or inherit them again (admin scope)."""
        return self.update(request, self.get_project(key))


@extend_schema(tags=["policies"])
class PolicyTryView(_PolicyBase):
    serializer_class = PolicyTryResultSerializer

    @extend_schema(operation_id="policy_try", request=PolicyTrySerializer,
                   responses={200: PolicyTryResultSerializer, **errors(*WRITE_ERRORS)})
    def post(self, request: Request, org: str) -> Response:
        """What the organization's policy says of a path, a command and a payload; nothing
        is run, sent or stored (admin scope)."""
        return self.try_it(request, None)


@extend_schema(tags=["policies"], parameters=[PROJECT_PARAMETER])
class ProjectPolicyTryView(_PolicyBase):
    serializer_class = PolicyTryResultSerializer

    @extend_schema(operation_id="project_policy_try", request=PolicyTrySerializer,
                   responses={200: PolicyTryResultSerializer, **errors(*WRITE_ERRORS)})
    def post(self, request: Request, org: str, key: str) -> Response:
        """What a project's policy says of a path, a command and a payload (admin scope)."""
        return self.try_it(request, self.get_project(key))


class VersionPagination(CursorPagination):
    ordering = "-number"


@extend_schema(tags=["policies"])
class PolicyVersionListView(_PolicyBase):
    serializer_class = PolicyVersionSerializer
    pagination_class = VersionPagination

    def get_queryset(self) -> QuerySet[PolicyVersion]:
        if self.is_schema_generation():
            return PolicyVersion.objects.none()
        versions: QuerySet[PolicyVersion] = policy_versions(organization=self.org)
        return versions.select_related("project")

    @extend_schema(operation_id="policy_versions_list",
                   responses={200: PolicyVersionSerializer(many=True),
                              **errors(*READ_ERRORS)})
    def get(self, request: Request, org: str) -> Response:
        """The organization's policy changes, newest first: scope, changes, author."""
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(PolicyVersionSerializer(page, many=True).data)
