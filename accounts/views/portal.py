"""Portal pages that every signed-in user sees: the organization list and overview."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views import View
from django.views.generic import TemplateView

from accounts import services
from accounts.roles import Capability
from accounts.selectors import organizations_of
from accounts.views.base import OrgView
from haao.errors import ApplicationError
from haao.health import sandbox_state, sandbox_summary
from tickets.selectors import decisions_waiting_for, projects_visible_to


class HomeView(LoginRequiredMixin, View):
    """The organization picker; with exactly one organization, go straight to it."""

    def get(self, request: HttpRequest) -> HttpResponse:
        organizations = list(organizations_of(user=request.user))  # type: ignore[arg-type]
        if len(organizations) == 1:
            return redirect("org-overview", org=organizations[0].slug)
        waiting = decisions_waiting_for(user=request.user)  # type: ignore[arg-type]
        return render(request, "accounts/home.html",
                      {"organizations": organizations, "waiting": waiting})


class OrgOverviewView(OrgView, TemplateView):
    template_name = "accounts/org_overview.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["projects"] = projects_visible_to(membership=self.membership)
        context["can_manage_members"] = self.can(Capability.MANAGE_MEMBERS)
        context["waiting"] = decisions_waiting_for(user=self.membership.user,
                                                   organization=self.org)
        if self.can(Capability.MANAGE_POLICIES):
            # Whether checks can run on this server at all (the sandbox part of /health).
            problem, detail = sandbox_state()
            context["sandbox"] = {"ok": not problem,
                                  "summary": sandbox_summary(problem, detail)}
        return context


class InvitationView(LoginRequiredMixin, View):
    """Shows an invitation and accepts it on POST; links are single-use."""

    def get(self, request: HttpRequest, token: str) -> HttpResponse:
        try:
            invitation = services.invitation_for_token(token)
        except ApplicationError as error:
            return render(request, "accounts/invitation.html", {"error": error.message},
                          status=error.status)
        return render(request, "accounts/invitation.html", {"invitation": invitation})

    def post(self, request: HttpRequest, token: str) -> HttpResponse:
        try:
            membership = services.invitation_accept(raw_token=token, user=request.user)  # type: ignore[arg-type]
        except ApplicationError as error:
            return render(request, "accounts/invitation.html", {"error": error.message},
                          status=error.status)
        messages.success(request, f"Welcome to {membership.organization.name}.")
        return redirect("org-overview", org=membership.organization.slug)
