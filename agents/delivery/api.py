"""Where accepted work went, in the API: on tickets and requirements, and a project's branches
(`/api/v1/orgs/<org>/projects/<KEY>/branches/`) with a retry of a failed delivery."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.roles import Capability, TokenScope
from agents.delivery.selectors import branch_summary
from agents.delivery.services import branch_delivery_retry
from agents.models import DeliveryStatus, IntegrationBranch, PullRequestState
from haao.api import NOT_FOUND_MESSAGE, READ_ERRORS, errors
from haao.endpoints import OrgEndpoint
from tickets.models import Project
from tickets.selectors import project_by_key


class DeliverySerializer(serializers.Serializer):
    """Where the work is: HAAO's branch, its commit, and the team's pull request."""

    branch = serializers.CharField(read_only=True, help_text="e.g. haao/PAY-R3")
    commit = serializers.CharField(read_only=True, required=False,
                                   help_text="The merge commit of this ticket, if a ticket.")
    head = serializers.CharField(read_only=True, help_text="The branch's newest commit.")
    status = serializers.ChoiceField(choices=DeliveryStatus.choices, read_only=True)
    delivered_commit = serializers.CharField(
        read_only=True, help_text="The commit last pushed to the team's remote.")
    failure = serializers.CharField(read_only=True, help_text="Why the last delivery failed.")
    next_try_at = serializers.DateTimeField(read_only=True, allow_null=True)
    pull_request_number = serializers.IntegerField(read_only=True, allow_null=True)
    pull_request_url = serializers.CharField(read_only=True)
    pull_request_state = serializers.ChoiceField(
        choices=[("", "none"), *PullRequestState.choices], read_only=True)


class BranchSerializer(DeliverySerializer):
    """One of HAAO's branches of a project, and where it stands in the team's forge."""

    id = serializers.UUIDField(read_only=True)
    requirement = serializers.CharField(read_only=True, allow_null=True,
                                        help_text="The requirement whose pull request it is.")
    tries = serializers.IntegerField(read_only=True,
                                     help_text="Failed deliveries since the last success.")
    updated_at = serializers.DateTimeField(read_only=True)


def branch_data(branch: IntegrationBranch) -> dict[str, Any]:
    return {**branch_summary(branch), "id": branch.pk, "tries": branch.tries,
            "requirement": branch.requirement.key if branch.requirement else None,
            "updated_at": branch.updated_at}


class _BranchesBase(OrgEndpoint):
    read_scope = TokenScope.READ
    write_scope = TokenScope.ADMIN
    write_capability = Capability.MANAGE_PROJECTS
    serializer_class = BranchSerializer
    queryset = IntegrationBranch.objects.none()  # the schema's model; views scope by org

    def get_project(self, key: str) -> Project:
        project = project_by_key(membership=self.membership, key=key)
        if project is None:
            raise NotFound(NOT_FOUND_MESSAGE)
        return project


@extend_schema(tags=["projects"])
class BranchListView(_BranchesBase):
    pagination_class = None  # the 200 most recent, as one list

    @extend_schema(operation_id="projects_branches_list",
                   responses={200: BranchSerializer(many=True), **errors(*READ_ERRORS)})
    def get(self, request: Request, org: str, key: str) -> Response:
        """HAAO's branches of the project: where accepted work is, pushed and reviewed."""
        project = self.get_project(key)
        branches = (IntegrationBranch.objects.for_org(self.org).filter(project=project)
                    .select_related("requirement__project").order_by("-updated_at")[:200])
        return Response([branch_data(branch) for branch in branches])


@extend_schema(tags=["projects"])
class BranchDeliverView(_BranchesBase):
    @extend_schema(operation_id="projects_branches_deliver", request=None,
                   responses={202: BranchSerializer, **errors(401, 403, 404, 400)})
    def post(self, request: Request, org: str, key: str, branch: Any) -> Response:
        """Try a failed or pending delivery again now (admins)."""
        self.require_write_capability()
        project = self.get_project(key)
        found = (IntegrationBranch.objects.for_org(self.org)
                 .filter(project=project, pk=branch)
                 .select_related("project__organization", "requirement__project").first())
        if found is None:
            raise NotFound(NOT_FOUND_MESSAGE)
        branch_delivery_retry(branch=found, actor=self.actor)
        found.refresh_from_db()
        return Response(branch_data(found), status=status.HTTP_202_ACCEPTED)
