"""Console pages for members, their roles and their project grants."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.db import transaction
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
)
from django.shortcuts import redirect

from accounts import services
from accounts.forms import (
    ProjectGrantsForm,
    RoleForm,
)
from accounts.models import Membership
from accounts.roles import Capability, Role
from haao.errors import ApplicationError
from haao.views import OrgPage
from tickets import services as ticket_services
from tickets.models import Project, ProjectUserObjectPermission
from tickets.services import GRANTS


class MembersView(OrgPage):
    """Members with their role; change a role, remove a member."""

    required_capability = Capability.MANAGE_MEMBERS
    template_name = "console/members.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        members = (Membership.objects.for_org(self.org).select_related("user")
                   .order_by("created_at"))
        context.update(members=members, roles=Role.choices,
                       admin_count=sum(1 for m in members if m.role == Role.ADMIN))
        return context


class _MemberAction(MembersView):
    http_method_names = ["post"]

    def target(self, membership_id: Any) -> Membership:
        membership = (Membership.objects.for_org(self.org).select_related("user")
                      .filter(pk=membership_id).first())
        if membership is None:
            raise Http404("Not found.")
        return membership

    def failed(self, message: str, status: int) -> HttpResponse:
        messages.error(self.request, message)
        return self.render(status)


class MemberRoleView(_MemberAction):
    """Change one member's role."""

    def post(self, request: HttpRequest, membership_id: Any) -> HttpResponse:
        target = self.target(membership_id)
        form = RoleForm(request.POST)
        if not form.is_valid():
            return self.failed("Choose one of the roles: "
                               + ", ".join(str(label) for _, label in Role.choices) + ".", 400)
        try:
            updated = services.membership_set_role(
                organization=self.org, membership=target, role=form.cleaned_data["role"],
                actor=self.user)
        except ApplicationError as error:
            return self.failed(error.message, error.status)
        messages.success(request, f"{updated.user.email} is now {updated.get_role_display()}.")
        if updated.pk == self.membership.pk and updated.role != Role.ADMIN:
            return redirect("org-overview", org=self.org.slug)
        return redirect(self.org_url("console-members"))


class MemberRemoveView(_MemberAction):
    """Remove a member from the organization (their tokens are revoked with it)."""

    def post(self, request: HttpRequest, membership_id: Any) -> HttpResponse:
        target = self.target(membership_id)
        try:
            services.membership_remove(organization=self.org, membership=target,
                                       actor=self.user)
        except ApplicationError as error:
            return self.failed(error.message, error.status)
        messages.success(request, f"{target.user.email} was removed from {self.org.name}.")
        if target.pk == self.membership.pk:
            return redirect("home")
        return redirect(self.org_url("console-members"))


class MemberDetailView(OrgPage):
    """One member's per-project grants (view, approve)."""

    required_capability = Capability.MANAGE_PROJECTS
    template_name = "console/member_detail.html"

    def load(self, membership_id: Any) -> tuple[Membership, list[Project], dict[Any, set[str]]]:
        target = (Membership.objects.for_org(self.org).select_related("user")
                  .filter(pk=membership_id).first())
        if target is None:
            raise Http404("Not found.")
        projects = list(Project.objects.for_org(self.org).order_by("name"))
        codename_to_grant = {perm: name for name, perm in GRANTS.items()}
        current: dict[Any, set[str]] = {}
        rows = (ProjectUserObjectPermission.objects
                .filter(user=target.user, content_object__organization=self.org)
                .values_list("content_object_id", "permission__codename"))
        for project_id, codename in rows:
            if codename in codename_to_grant:
                current.setdefault(project_id, set()).add(codename_to_grant[codename])
        return target, projects, current

    def get(self, request: HttpRequest, membership_id: Any) -> HttpResponse:
        target, projects, current = self.load(membership_id)
        form = ProjectGrantsForm(projects=projects, current=current)
        return self.render(target=target, form=form)

    def post(self, request: HttpRequest, membership_id: Any) -> HttpResponse:
        target, projects, current = self.load(membership_id)
        form = ProjectGrantsForm(request.POST, projects=projects, current=current)
        if not form.is_valid():
            return self.render(400, target=target, form=form)
        try:
            with transaction.atomic():  # all projects or none
                for project, grants in form.grants():
                    ticket_services.project_grant_set(
                        organization=self.org, project=project, user=target.user,
                        grants=grants, actor=self.user)
        except ApplicationError as error:
            form.add_error(None, error.message)
            return self.render(error.status, target=target, form=form)
        messages.success(request, f"Project access of {target.user.email} saved.")
        return redirect(self.org_url("console-member", membership_id=target.pk))

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        target = context.get("target")
        context["sees_all_projects"] = bool(
            target and target.role in (Role.ADMIN, Role.MANAGER))
        return context
