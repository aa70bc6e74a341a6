"""Portal pages of projects: the list, a project's page with its board, new requirements.

The requirement form calls tickets.services.requirement_create once; bad input re-renders
the page with a 400 and the error on its field, and nothing is stored.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from accounts.roles import Capability
from agents.delivery.selectors import project_branches
from haao.errors import ApplicationError
from haao.views import OrgPage, service_error
from tickets import services
from tickets.models import Project, RequirementStatus
from tickets.portal.board import (
    REQUIREMENT_TONES,
    STATE_TONES,
    project_board,
    project_card,
    requirements_with_counts,
    ticket_counts,
)
from tickets.portal.forms import RequirementForm
from tickets.selectors import can_approve_in, project_by_key, projects_visible_to

REQUIREMENTS_PAGE_SIZE = 20
# The projects list shows these counts, in the loop's order.
LIST_STATES = ("proposed", "queued", "in_progress", "awaiting_acceptance", "accepted",
               "blocked")


class ProjectsView(OrgPage):
    """The organization's projects the caller may see, with tickets by state."""

    template_name = "tickets/projects.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        projects = projects_visible_to(membership=self.membership)
        counts = ticket_counts(projects=projects)
        rows = []
        for project in projects:
            by_state = counts.get(project.pk, {})
            summary = {
                "proposed": by_state.get("proposed", 0),
                "queued": by_state.get("approved", 0) + by_state.get("queued", 0),
                "in_progress": sum(by_state.get(s, 0) for s in
                                   ("running", "retrying", "escalated", "auditing")),
                "awaiting_acceptance": by_state.get("awaiting_acceptance", 0),
                "accepted": by_state.get("accepted", 0),
                "blocked": by_state.get("blocked", 0),
            }
            rows.append({"project": project, "counts": summary,
                         "total": sum(by_state.values())})
        context["rows"] = rows
        context["may_manage"] = self.can(Capability.MANAGE_PROJECTS)
        return context


class ProjectView(OrgPage):
    """A project: its repository, requirements, a new-requirement form and the live board."""

    template_name = "tickets/project.html"

    def load(self, key: str) -> Project:
        project = project_by_key(membership=self.membership, key=key)
        if project is None:
            raise Http404("Not found.")
        return project

    def may_submit(self, project: Project) -> bool:
        return (self.can(Capability.WRITE_REQUIREMENTS)
                and can_approve_in(membership=self.membership, project=project))

    def page(self, project: Project, status: int = 200,
             form: RequirementForm | None = None) -> HttpResponse:
        may_submit = self.may_submit(project)
        requirements = Paginator(requirements_with_counts(project=project),
                                 REQUIREMENTS_PAGE_SIZE).get_page(self.request.GET.get("page"))
        return self.render(
            status, project=project, board=project_board(project=project),
            requirements=requirements, requirement_tones=REQUIREMENT_TONES,
            gate1=RequirementStatus.PROPOSED, may_submit=may_submit,
            may_manage=self.can(Capability.MANAGE_PROJECTS),
            branches=project_branches(project),
            form=form if form is not None else (RequirementForm() if may_submit else None))

    def get(self, request: HttpRequest, key: str) -> HttpResponse:
        return self.page(self.load(key))


class RequirementCreateView(ProjectView):
    """Submit a requirement: admins, and product owners granted approval on the project."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest, key: str) -> HttpResponse:
        project = self.load(key)
        if not self.may_submit(project):
            raise PermissionDenied("You may not submit requirements to this project; an admin "
                                   "can grant you approval on it.")
        form = RequirementForm(request.POST)
        if not form.is_valid():
            return self.page(project, 400, form)
        try:
            requirement = services.requirement_create(
                project=project, actor=self.user, title=form.cleaned_data["title"],
                text=form.cleaned_data["text"])
        except ApplicationError as error:
            service_error(form, error)
            return self.page(project, error.status, form)
        messages.success(request, f"{requirement.key} submitted. The Tech Lead is breaking it "
                                  "into proposed tickets for you to review.")
        return redirect(f"/o/{self.org.slug}/requirements/{requirement.key}/")


class CardView(ProjectView):
    """One board card, for the page script to insert a ticket it has not seen yet."""

    http_method_names = ["get"]

    def get(self, request: HttpRequest, key: str, ticket_key: str) -> HttpResponse:  # type: ignore[override]
        project = self.load(key)
        card = project_card(project=project, key=ticket_key)
        if card is None:
            raise Http404("Not found.")
        return render(request, "tickets/_board_card.html",
                      {"card": card, "org": self.org, "state_tones": STATE_TONES})
