"""Console pages for the organization's identity provider, SSO policy and unsandboxed checks."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
)
from django.shortcuts import redirect

from accounts import services
from accounts.forms import (
    SSOConnectionForm,
    SSOPolicyForm,
    UnsandboxedChecksForm,
)
from accounts.models import SSOConnection, SSOProtocol, User
from accounts.roles import Capability, Role
from accounts.sso.selectors import verified_domains
from haao.errors import ApplicationError
from haao.views import OrgPage, service_error


class SSOView(OrgPage):
    """The organization's identity provider and its SSO policy."""

    required_capability = Capability.MANAGE_SSO
    template_name = "console/sso.html"

    def connection(self) -> SSOConnection | None:
        return SSOConnection.objects.for_org(self.org).first()

    def admins(self) -> QuerySet[User]:
        return User.objects.filter(memberships__organization=self.org,
                                   memberships__role=Role.ADMIN).order_by("email")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        connection = kwargs["connection"] if "connection" in kwargs else self.connection()
        context["connection"] = connection
        context.setdefault("form", SSOConnectionForm(connection=connection))
        context.setdefault("policy_form", SSOPolicyForm(
            admins=self.admins(),
            initial={"sso_required": self.org.sso_required,
                     "break_glass_user": self.org.break_glass_user_id}))
        context.setdefault("unsandboxed_form", UnsandboxedChecksForm(
            initial={"allowed": self.org.allow_unsandboxed_checks}))
        slug = self.org.slug
        context.update(
            oidc_redirect_uri=f"{settings.BASE_URL}/accounts/oidc/org-{slug}/login/callback/",
            saml_acs_url=f"{settings.BASE_URL}/accounts/saml/{slug}/acs/",
            saml_entity_id=f"{settings.BASE_URL}/accounts/saml/{slug}/metadata/",
            protocols=SSOProtocol,
            verified_domains=sorted(verified_domains(organization=self.org)),
        )
        return context

    def post(self, request: HttpRequest) -> HttpResponse:
        connection = self.connection()
        form = SSOConnectionForm(request.POST, connection=connection)
        if not form.is_valid():
            return self.render(400, form=form, connection=connection)
        try:
            saved = services.sso_connection_save(
                organization=self.org, actor=self.user,
                fields=form.service_fields(), client_secret=form.cleaned_data["client_secret"])
        except (ApplicationError, ValidationError) as error:
            service_error(form, error)
            status = error.status if isinstance(error, ApplicationError) else 400
            return self.render(status, form=form, connection=connection)
        messages.success(request, f"{saved.get_protocol_display()} settings saved.")
        return redirect(self.org_url("console-sso"))


class SSOPolicyView(SSOView):
    """Require SSO for members, with an optional break-glass admin."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest) -> HttpResponse:
        form = SSOPolicyForm(request.POST, admins=self.admins())
        if not form.is_valid():
            return self.render(400, policy_form=form)
        try:
            services.organization_set_sso_policy(
                organization=self.org, actor=self.user,
                sso_required=form.cleaned_data["sso_required"],
                break_glass_user=form.cleaned_data["break_glass_user"])
        except ApplicationError as error:
            service_error(form, error)
            return self.render(error.status, policy_form=form)
        messages.success(request, "SSO policy saved.")
        return redirect(self.org_url("console-sso"))


class UnsandboxedChecksView(SSOView):
    """The organization's explicit opt-in to checks without bubblewrap (Security)."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest) -> HttpResponse:
        form = UnsandboxedChecksForm(request.POST)
        if not form.is_valid():
            return self.render(400, unsandboxed_form=form)
        try:
            services.organization_set_unsandboxed(
                organization=self.org, actor=self.user, allowed=form.cleaned_data["allowed"],
                reason=form.cleaned_data["reason"])
        except ApplicationError as error:
            service_error(form, error)
            return self.render(error.status, unsandboxed_form=form)
        messages.success(request, "Unsandboxed checks are now allowed."
                         if form.cleaned_data["allowed"] else "Unsandboxed checks are now refused.")
        return redirect(self.org_url("console-sso"))
