"""REST endpoints of projects and per-project grants, under `/api/v1/orgs/<org>/projects/`."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, ClassVar

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Membership
from accounts.roles import Capability, TokenScope
from agents.preflight import SetupStatus, setup_check
from agents.workspaces.remote import connection_test, deploy_key_generate, known_host_keys
from haao.api import (
    READ_ERRORS,
    WRITE_ERRORS,
    CursorPagination,
    StrictCharField,
    StrictChoiceField,
    StrictSerializer,
    errors,
    validated,
)
from haao.endpoints import OrgEndpoint
from haao.errors import ApplicationError
from tickets import services
from tickets.keys import project_key_validator
from tickets.models import (
    DeliveryMode,
    ForgeKind,
    Project,
    RepositoryAuth,
)
from tickets.selectors import can_approve_in, projects_visible_to, webhook_url

# --- Serializers -----------------------------------------------------------------------------


class ProjectSerializer(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = ["id", "key", "name", "description", "created_at"]
        read_only_fields = fields


class HostKeySerializer(serializers.Serializer):
    host = serializers.CharField(read_only=True)
    type = serializers.CharField(read_only=True, help_text="e.g. ssh-ed25519.")
    fingerprint = serializers.CharField(read_only=True, help_text="SHA256:…, as ssh-keygen -l.")
    line = serializers.CharField(read_only=True, help_text="The pinned known_hosts line.")


class ProjectDetailSerializer(ProjectSerializer):
    can_approve = serializers.BooleanField(
        read_only=True, help_text="Whether you may decide at this project's gates.")
    repository_url = serializers.CharField(source="repository", read_only=True)
    has_token = serializers.SerializerMethodField(
        help_text="Whether a token is stored (it is never returned).")
    ssh_host_keys = serializers.SerializerMethodField(
        help_text="The server's host keys pinned on first contact.")
    webhook_url = serializers.SerializerMethodField(
        help_text="Where the forge sends this project's events.")
    forge = serializers.ChoiceField(choices=[("", "Unknown"), *ForgeKind.choices],
                                    read_only=True, allow_blank=True)

    class Meta(ProjectSerializer.Meta):
        fields = [*ProjectSerializer.Meta.fields, "can_approve", "repository_url",
                  "default_branch", "integration_branch", "setup_command", "test_command",
                  "auth_method", "token_username", "has_token", "ssh_public_key",
                  "ssh_host_keys", "delivery", "forge", "forge_api_url", "intake_label",
                  "webhook_url", "connection_report", "setup_report"]
        read_only_fields = fields

    def get_has_token(self, project: Project) -> bool:
        return bool(project.token)

    @extend_schema_field(HostKeySerializer(many=True))
    def get_ssh_host_keys(self, project: Project) -> list[dict[str, str]]:
        return known_host_keys(project.ssh_known_hosts)

    def get_webhook_url(self, project: Project) -> str:
        return webhook_url(project)


class DeployKeySerializer(serializers.Serializer):
    ssh_public_key = serializers.CharField(
        read_only=True, help_text="Add it to the repository's deploy keys in the forge.")


class ConnectionReportSerializer(serializers.Serializer):
    reachable = serializers.BooleanField(read_only=True)
    authenticated = serializers.BooleanField(read_only=True)
    branch_exists = serializers.BooleanField(read_only=True)
    message = serializers.CharField(read_only=True, help_text="What was found, in words.")
    checked_at = serializers.CharField(read_only=True)
    host_keys = serializers.ListField(child=serializers.CharField(), read_only=True,
                                      help_text="Pinned host keys: host, type, fingerprint.")


class SetupReportSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=SetupStatus.choices, read_only=True,
                                     help_text="ok, or what stops the project's tests.")
    message = serializers.CharField(read_only=True, help_text="What was found and what to do.")
    checked_at = serializers.CharField(read_only=True)
    branch = serializers.CharField(read_only=True, help_text="The default branch checked.")
    commit = serializers.CharField(read_only=True, help_text="Its head commit the test command "
                                                             "ran at; empty if not reached.")
    command = serializers.CharField(read_only=True, help_text="The test command as run.")
    failed = serializers.IntegerField(read_only=True, allow_null=True,
                                      help_text="How many tests failed, when the output says.")
    output_tail = serializers.CharField(read_only=True, help_text="The end of the output.")


class ArgvField(serializers.ListField):
    """An argv list; tickets.services.projects.clean_argv holds its rules."""

    child = serializers.CharField(allow_blank=False)

    def to_internal_value(self, data: Any) -> list[str]:
        try:
            return services.clean_argv(data, field=self.field_name or "argv")
        except ApplicationError as error:
            raise serializers.ValidationError(error.message) from None


def _model_max(field: str) -> int:
    return int(getattr(Project._meta.get_field(field), "max_length", 0) or 0)


class ProjectSettingsSerializer(StrictSerializer):
    """The repository settings; every rule beyond a field's type is the service's."""

    schema_extra: ClassVar[dict[str, Any]] = {"minProperties": 1}  # see validate()

    name = StrictCharField(max_length=_model_max("name"), required=False)
    description = StrictCharField(max_length=5000, required=False, allow_blank=True)
    repository_url = StrictCharField(
        max_length=_model_max("repository"), required=False, allow_blank=True,
        help_text="https://, ssh://, git@host:path, or a path inside HAAO_LOCAL_REPOSITORIES; "
                  "never with credentials in it. Changing it drops the token and pinned host "
                  "keys unless `token` is given again.")
    default_branch = StrictCharField(max_length=_model_max("default_branch"), required=False)
    setup_command = ArgvField(required=False, help_text='argv, e.g. ["pip", "install", "-e", '
                                                        '"."]; run without a shell.')
    test_command = ArgvField(required=False, help_text='argv, e.g. ["pytest", "-q"].')
    auth_method = StrictChoiceField(choices=RepositoryAuth.choices, required=False)
    token = StrictCharField(max_length=services.MAX_TOKEN, required=False, allow_blank=True,
                            write_only=True, help_text="Write-only; stored encrypted, never "
                                                      "returned (see `has_token`).")
    token_username = StrictCharField(max_length=_model_max("token_username"), required=False,
                                     allow_blank=True,
                                     help_text="Blank: the forge's usual one.")
    delivery = StrictChoiceField(choices=DeliveryMode.choices, required=False,
                                 help_text="Default: pull_request on a known forge, branch for "
                                           "other remotes, none for local paths.")
    forge = StrictChoiceField(choices=[("", "Unknown"), *ForgeKind.choices], required=False,
                              allow_blank=True)
    forge_api_url = StrictCharField(max_length=_model_max("forge_api_url"), required=False,
                                    allow_blank=True)
    intake_label = StrictCharField(max_length=_model_max("intake_label"), required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise serializers.ValidationError("Give at least one setting to change.")
        return attrs


class ProjectCreateSerializer(ProjectSettingsSerializer):
    key = StrictCharField(max_length=10, validators=[project_key_validator],
                          help_text="2-10 capital letters or digits, e.g. PAY.")
    name = StrictCharField(max_length=100)
    description = StrictCharField(max_length=5000, required=False, allow_blank=True,
                                  default="")


class ProjectGrantsSerializer(StrictSerializer):
    grants = serializers.ListField(
        child=StrictChoiceField(choices=sorted(services.GRANTS)), max_length=len(services.GRANTS),
        help_text="Exactly the grants the member holds afterwards; `approve` implies `view`.",
    )


class ProjectGrantsResultSerializer(serializers.Serializer):
    membership = serializers.UUIDField(read_only=True)
    grants = serializers.ListField(child=serializers.ChoiceField(choices=sorted(services.GRANTS)),
                                   read_only=True)


# --- Views -----------------------------------------------------------------------------------


def _valid_key(key: str) -> str:
    """The key from the URL, or 404: nothing malformed (say, a NUL byte) reaches the database."""
    try:
        project_key_validator(key)
    except ValidationError:
        raise NotFound() from None
    return key


class ProjectPagination(CursorPagination):
    ordering = "key"


@extend_schema(tags=["projects"])
class ProjectListView(OrgEndpoint):
    """Projects the caller may see; admins create them."""

    write_capability = Capability.MANAGE_PROJECTS
    serializer_class = ProjectSerializer
    pagination_class = ProjectPagination

    def get_queryset(self) -> QuerySet[Project]:
        if self.is_schema_generation():
            return Project.objects.none()
        return projects_visible_to(membership=self.membership)

    @extend_schema(operation_id="projects_list",
                   responses={200: ProjectSerializer(many=True), **errors(*READ_ERRORS)})
    def get(self, request: Request, org: str) -> Response:
        """The projects you may see: all for admins and managers, granted ones otherwise."""
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(ProjectSerializer(page, many=True).data)

    @extend_schema(operation_id="projects_create", request=ProjectCreateSerializer,
                   responses={201: ProjectDetailSerializer, **errors(*WRITE_ERRORS, 409)})
    def post(self, request: Request, org: str) -> Response:
        """Create a project with its repository settings (manage projects)."""
        self.require_write_capability()
        data = dict(validated(ProjectCreateSerializer, request))
        key, name, description = data.pop("key"), data.pop("name"), data.pop("description")
        token = data.pop("token", "")
        project = services.project_create(organization=self.org, key=key, name=name,
                                          description=description, values=data, token=token,
                                          actor=self.actor)
        project.can_approve = True  # type: ignore[attr-defined]  # manage projects implies it
        return Response(ProjectDetailSerializer(project).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["projects"])
class ProjectDetailView(OrgEndpoint):
    """One project and its repository settings; admins change them."""

    write_capability = Capability.MANAGE_PROJECTS
    serializer_class = ProjectDetailSerializer

    def get_project(self, key: str) -> Project:
        project = get_object_or_404(projects_visible_to(membership=self.membership),
                                    key=_valid_key(key))
        project.can_approve = can_approve_in(  # type: ignore[attr-defined]
            membership=self.membership, project=project)
        return project

    @extend_schema(operation_id="projects_retrieve",
                   responses={200: ProjectDetailSerializer, **errors(*READ_ERRORS)})
    def get(self, request: Request, org: str, key: str) -> Response:
        """One project by key, if you may see it."""
        return Response(ProjectDetailSerializer(self.get_project(key)).data)

    @extend_schema(operation_id="projects_update", request=ProjectSettingsSerializer,
                   responses={200: ProjectDetailSerializer, **errors(*WRITE_ERRORS)})
    def patch(self, request: Request, org: str, key: str) -> Response:
        """Change some settings (manage projects); a new `repository_url` drops the stored
        token and pinned host keys unless `token` is given again in the same request."""
        self.require_write_capability()
        project = self.get_project(key)
        data = dict(validated(ProjectSettingsSerializer, request))
        token = data.pop("token", "")
        updated = services.project_update(project=project, changes=data, token=token,
                                          actor=self.actor)
        updated.can_approve = project.can_approve  # type: ignore[attr-defined]
        return Response(ProjectDetailSerializer(updated).data)


@extend_schema(tags=["projects"])
class ProjectGrantsView(OrgEndpoint):
    """Which grants one member holds on one project."""

    required_capability = Capability.MANAGE_PROJECTS
    read_scope = TokenScope.ADMIN
    write_scope = TokenScope.ADMIN
    serializer_class = ProjectGrantsResultSerializer

    def get_object(self) -> Project:
        """The project named by the URL; DRF's OPTIONS answer asks for it to describe PUT."""
        return get_object_or_404(Project.objects.for_org(self.org),
                                 key=_valid_key(self.kwargs["key"]))

    @extend_schema(operation_id="projects_grants_set", request=ProjectGrantsSerializer,
                   responses={200: ProjectGrantsResultSerializer, **errors(*WRITE_ERRORS)})
    def put(self, request: Request, org: str, key: str, membership: Any) -> Response:
        """Set exactly which grants (`view`, `approve`) a member holds on a project."""
        project = self.get_object()
        target = get_object_or_404(Membership.objects.for_org(self.org).select_related("user"),
                                   pk=membership)
        data = validated(ProjectGrantsSerializer, request)
        grants = services.project_grant_set(organization=self.org, project=project,
                                            user=target.user, grants=set(data["grants"]),
                                            actor=self.actor)
        return Response({"membership": target.pk, "grants": sorted(grants)})


class _ProjectActionView(OrgEndpoint):
    """A bodiless action on one project's repository (manage projects)."""

    required_capability = Capability.MANAGE_PROJECTS
    write_scope = TokenScope.ADMIN

    def get_project(self, key: str) -> Project:
        return get_object_or_404(Project.objects.for_org(self.org), key=_valid_key(key))


@extend_schema(tags=["projects"])
class ProjectDeployKeyView(_ProjectActionView):
    serializer_class = DeployKeySerializer

    @extend_schema(operation_id="projects_deploy_key_generate", request=None,
                   responses={201: DeployKeySerializer, **errors(401, 403, 404)})
    def post(self, request: Request, org: str, key: str) -> Response:
        """Generate a new SSH deploy key (admin scope); the project authenticates with it."""
        public = deploy_key_generate(project=self.get_project(key), actor=self.actor)
        return Response({"ssh_public_key": public}, status=status.HTTP_201_CREATED)


@extend_schema(tags=["projects"])
class ProjectConnectionTestView(_ProjectActionView):
    serializer_class = ConnectionReportSerializer

    @extend_schema(operation_id="projects_connection_test", request=None,
                   responses={200: ConnectionReportSerializer, **errors(401, 403, 404)})
    def post(self, request: Request, org: str, key: str) -> Response:
        """Ask the repository for the default branch now (admin scope); the report is also
        stored as the project's `connection_report`."""
        report = connection_test(project=self.get_project(key), actor=self.actor)
        return Response(asdict(report))


@extend_schema(tags=["projects"])
class ProjectSetupCheckView(_ProjectActionView):
    serializer_class = SetupReportSerializer

    @extend_schema(operation_id="projects_setup_check", request=None,
                   responses={200: SetupReportSerializer, **errors(401, 403, 404)})
    def post(self, request: Request, org: str, key: str) -> Response:
        """Check the project's setup now (admin scope): fetch the default branch, prepare the
        environment at its head and run the test command in the sandbox, without any model.
        The report is also stored as the project's `setup_report`."""
        report = setup_check(project=self.get_project(key), actor=self.actor)
        return Response(asdict(report))
