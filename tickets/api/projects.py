"""REST endpoints of projects and per-project grants, under `/api/v1/orgs/<org>/projects/`."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.serializers import StrictCharField, StrictChoiceField, StrictSerializer
from accounts.api.views import READ_ERRORS, WRITE_ERRORS, OrgEndpoint, errors, validated
from accounts.models import Membership
from accounts.roles import Capability, TokenScope
from haao.api import CursorPagination
from tickets import services
from tickets.models import Project, project_key_validator
from tickets.selectors import can_approve_in, projects_visible_to

# --- Serializers -----------------------------------------------------------------------------


class ProjectSerializer(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = ["id", "key", "name", "description", "created_at"]
        read_only_fields = fields


class ProjectDetailSerializer(ProjectSerializer):
    can_approve = serializers.BooleanField(
        read_only=True, help_text="Whether you may decide at this project's gates.")

    class Meta(ProjectSerializer.Meta):
        fields = [*ProjectSerializer.Meta.fields, "can_approve"]
        read_only_fields = fields


class ProjectCreateSerializer(StrictSerializer):
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
                   responses={201: ProjectSerializer, **errors(*WRITE_ERRORS, 409)})
    def post(self, request: Request, org: str) -> Response:
        """Create a project (manage projects)."""
        self.require_write_capability()
        data = validated(ProjectCreateSerializer, request)
        project = services.project_create(organization=self.org, key=data["key"],
                                          name=data["name"], description=data["description"],
                                          actor=self.actor)
        return Response(ProjectSerializer(project).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["projects"])
class ProjectDetailView(OrgEndpoint):
    serializer_class = ProjectDetailSerializer

    @extend_schema(operation_id="projects_retrieve",
                   responses={200: ProjectDetailSerializer, **errors(*READ_ERRORS)})
    def get(self, request: Request, org: str, key: str) -> Response:
        """One project by key, if you may see it."""
        project = get_object_or_404(projects_visible_to(membership=self.membership),
                                    key=_valid_key(key))
        project.can_approve = can_approve_in(  # type: ignore[attr-defined]
            membership=self.membership, project=project)
        return Response(ProjectDetailSerializer(project).data)


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
