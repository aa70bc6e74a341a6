"""The portal's delivery action: an admin asks for a failed or pending delivery now."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect

from accounts.roles import Capability
from agents.delivery.services import branch_delivery_retry
from agents.models import IntegrationBranch
from haao.errors import ApplicationError
from haao.views import OrgPage
from tickets.selectors import project_by_key


class BranchDeliverView(OrgPage):
    """Deliver one of the project's branches again now (admins)."""

    required_capability = Capability.MANAGE_PROJECTS
    http_method_names = ["post"]

    def post(self, request: HttpRequest, key: str, branch: Any) -> HttpResponse:
        project = project_by_key(membership=self.membership, key=key)
        found = (IntegrationBranch.objects.for_org(self.org).filter(project=project, pk=branch)
                 .select_related("project__organization", "requirement__project").first()
                 if project is not None else None)
        if found is None:
            raise Http404("Not found.")
        try:
            branch_delivery_retry(branch=found, actor=self.user)
        except ApplicationError as error:
            messages.error(request, error.message)
        else:
            messages.success(request, f"HAAO is delivering {found.name} now.")
        if found.requirement is not None:
            return redirect(f"/o/{self.org.slug}/requirements/{found.requirement.key}/")
        return redirect(f"/o/{self.org.slug}/projects/{found.project.key}/")
