"""The portal's first pages: the organization picker and an organization's overview.

They gather what every app has for the signed-in member (projects, decisions waiting, whether
checks can run here), so they sit above the apps.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views import View
from django.views.generic import TemplateView

from accounts.roles import Capability
from accounts.selectors import organizations_of
from haao.health import sandbox_state, sandbox_summary
from haao.views import OrgView
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
