"""REST endpoints of requirements and Gate 1: submit, read with tickets, reorder, add a
ticket by hand, approve. Under `/api/v1/orgs/<org>/`."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.roles import Capability
from agents.delivery.api import DeliverySerializer
from agents.delivery.selectors import requirement_delivery
from agents.preflight import base_failure
from agents.selectors import ticket_totals
from haao.api import (
    READ_ERRORS,
    WRITE_ERRORS,
    CursorPagination,
    StrictCharField,
    StrictSerializer,
    errors,
    validated,
)
from haao.endpoints import OrgEndpoint
from tickets import services
from tickets.api.projects import SetupReportSerializer
from tickets.api.tickets import (
    SPEC_HELP,
    NoBodySerializer,
    TicketDetailSerializer,
    TicketSerializer,
    storable_spec,
)
from tickets.models import Project, Requirement, RequirementStatus
from tickets.selectors import (
    project_by_key,
    requirement_by_key,
    requirements_of,
    ticket_detail,
)
from tickets.services.requirements import MAX_TEXT

# --- Serializers -----------------------------------------------------------------------------


class RequirementSerializer(serializers.ModelSerializer):
    key = serializers.CharField(read_only=True, help_text="e.g. PAY-R3")
    project = serializers.CharField(source="project.key", read_only=True)
    status = serializers.ChoiceField(choices=RequirementStatus.choices, read_only=True)
    created_by = serializers.EmailField(source="created_by.email", read_only=True,
                                        allow_null=True, default=None)
    approved_by = serializers.EmailField(source="approved_by.email", read_only=True,
                                         allow_null=True, default=None)

    class Meta:
        model = Requirement
        fields = ["key", "project", "title", "text", "status", "created_by", "created_at",
                  "approved_by", "approved_at", "failure"]
        read_only_fields = fields


class BaseFailureSerializer(SetupReportSerializer):
    failed_tests = serializers.ListField(child=serializers.CharField(), read_only=True,
                                         help_text="Up to five failing tests, by name.")


class RequirementDetailSerializer(RequirementSerializer):
    tickets = TicketSerializer(many=True, read_only=True,
                               help_text="The requirement's tickets in their order.")
    delivery = serializers.SerializerMethodField(
        help_text="Its pull request branch and where it stands; null before work is merged.")
    base_failure = serializers.SerializerMethodField(
        help_text="While proposed: the setup check's report when the project's tests already "
                  "fail at the commit the tickets start from; null otherwise.")

    class Meta(RequirementSerializer.Meta):
        fields = [*RequirementSerializer.Meta.fields, "issue_url", "tickets", "delivery",
                  "base_failure"]
        read_only_fields = fields

    @extend_schema_field(BaseFailureSerializer(allow_null=True))
    def get_base_failure(self, requirement: Requirement) -> dict[str, Any] | None:
        """While proposed: the project's setup check, when it found the tests already failing
        at the commit the tickets would start from (what Gate 1 warns about)."""
        if requirement.status != RequirementStatus.PROPOSED:
            return None
        return base_failure(requirement.project)

    @extend_schema_field(DeliverySerializer(allow_null=True))
    def get_delivery(self, requirement: Requirement) -> dict[str, Any] | None:
        return requirement_delivery(requirement) or None


class RequirementCreateSerializer(StrictSerializer):
    title = StrictCharField(max_length=200)
    text = StrictCharField(max_length=MAX_TEXT,
                           help_text="What you need, in plain language; the Tech Lead "
                                     "decomposes it into proposed tickets.")


class ReorderSerializer(StrictSerializer):
    keys = serializers.ListField(
        child=StrictCharField(max_length=21), max_length=1000,
        help_text="Every ticket key of the requirement exactly once, in the new order.")


# --- Views -----------------------------------------------------------------------------------


class RequirementEndpoint(OrgEndpoint):
    """Finds the requirement named by the URL among those the caller may see, or 404."""

    write_capability = Capability.WRITE_REQUIREMENTS

    def get_requirement(self, key: str) -> Requirement:
        requirement = requirement_by_key(membership=self.membership, key=key)
        if requirement is None:
            raise NotFound()
        return requirement

    def detail(self, key: str) -> Response:
        return Response(RequirementDetailSerializer(self.get_requirement(key)).data)


@extend_schema(tags=["requirements"])
class RequirementListView(OrgEndpoint):
    """A project's requirements; admins and granted product owners submit new ones."""

    write_capability = Capability.WRITE_REQUIREMENTS
    serializer_class = RequirementSerializer
    pagination_class = CursorPagination

    def get_project(self, key: str) -> Project:
        project = project_by_key(membership=self.membership, key=key)
        if project is None:
            raise NotFound()
        return project

    def get_queryset(self) -> QuerySet[Requirement]:
        if self.is_schema_generation():
            return Requirement.objects.none()
        return requirements_of(project=self.get_project(self.kwargs["key"]))

    @extend_schema(operation_id="requirements_list",
                   responses={200: RequirementSerializer(many=True), **errors(*READ_ERRORS)})
    def get(self, request: Request, org: str, key: str) -> Response:
        """The project's requirements, newest first."""
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(RequirementSerializer(page, many=True).data)

    @extend_schema(operation_id="requirements_create", request=RequirementCreateSerializer,
                   responses={201: RequirementSerializer, **errors(*WRITE_ERRORS)})
    def post(self, request: Request, org: str, key: str) -> Response:
        """Submit a requirement (admin, or product owner granted approval on the project);
        decomposition into proposed tickets starts at once."""
        self.require_write_capability()
        project = self.get_project(key)
        data = validated(RequirementCreateSerializer, request)
        requirement = services.requirement_create(project=project, actor=self.actor,
                                                  title=data["title"], text=data["text"])
        return Response(RequirementSerializer(requirement).data,
                        status=status.HTTP_201_CREATED)


@extend_schema(tags=["requirements"])
class RequirementDetailView(RequirementEndpoint):
    serializer_class = RequirementDetailSerializer

    @extend_schema(operation_id="requirements_retrieve",
                   responses={200: RequirementDetailSerializer, **errors(*READ_ERRORS)})
    def get(self, request: Request, org: str, key: str) -> Response:
        """One requirement by key (e.g. PAY-R3) with its tickets in order."""
        return self.detail(key)


@extend_schema(tags=["requirements"])
class RequirementApproveView(RequirementEndpoint):
    serializer_class = RequirementDetailSerializer

    @extend_schema(operation_id="requirements_approve", request=None,
                   responses={200: RequirementDetailSerializer,
                              **errors(*WRITE_ERRORS, 409)})
    def post(self, request: Request, org: str, key: str) -> Response:
        """Gate 1: approve every proposed ticket of the requirement at once."""
        self.require_write_capability()
        requirement = self.get_requirement(key)
        validated(NoBodySerializer, request)
        services.requirement_approve(requirement=requirement, actor=self.actor)
        return self.detail(key)


@extend_schema(tags=["requirements"])
class RequirementReorderView(RequirementEndpoint):
    serializer_class = RequirementDetailSerializer

    @extend_schema(operation_id="requirements_reorder", request=ReorderSerializer,
                   responses={200: RequirementDetailSerializer,
                              **errors(*WRITE_ERRORS, 409)})
    def post(self, request: Request, org: str, key: str) -> Response:
        """Gate 1: set the order of the requirement's tickets."""
        self.require_write_capability()
        requirement = self.get_requirement(key)
        data = validated(ReorderSerializer, request)
        services.tickets_reorder(requirement=requirement, keys=data["keys"], actor=self.actor)
        return self.detail(key)


@extend_schema(tags=["requirements"])
class RequirementTicketsView(RequirementEndpoint):
    serializer_class = TicketDetailSerializer

    @extend_schema(
        operation_id="requirements_add_ticket",
        request={"application/json": OpenApiTypes.OBJECT},
        description="Gate 1: add a ticket by hand to a requirement awaiting approval. The "
                    "body is the spec itself. " + SPEC_HELP + " An invalid spec answers 400 "
                    "with each problem's JSON path in `details.errors`.",
        examples=[OpenApiExample("A small ticket", request_only=True, value={
            "schema_version": "1", "title": "Round totals to cents",
            "objective": "Invoice totals are rounded half-up to two decimals.",
            "code_context": [], "allowed_paths": ["billing/totals.py"], "constraints": [],
            "definition_of_done": [{"name": "tests", "command": ["pytest", "-q"],
                                    "timeout_seconds": 120}],
            "dependencies": [], "complexity": 2})],
        responses={201: TicketDetailSerializer, **errors(*WRITE_ERRORS, 409)})
    def post(self, request: Request, org: str, key: str) -> Response:
        self.require_write_capability()
        requirement = self.get_requirement(key)
        ticket = services.ticket_add(requirement=requirement, spec=storable_spec(request.data),
                                     actor=self.actor)
        loaded = ticket_detail(ticket=ticket)
        body = TicketDetailSerializer(loaded, context={"totals": ticket_totals(ticket=loaded)})
        return Response(body.data, status=status.HTTP_201_CREATED)

