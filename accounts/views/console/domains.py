"""Console pages for the organization's email domains: claim, verify by DNS, remove."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect

from accounts.forms import DomainForm
from accounts.models import OrganizationDomain
from accounts.roles import Capability
from accounts.sso import services
from accounts.sso.domains import record_name, record_value
from accounts.sso.selectors import organization_domains
from haao.errors import ApplicationError
from haao.views import OrgPage, service_error


class DomainsView(OrgPage):
    """The email domains the organization's identity provider may speak for."""

    required_capability = Capability.MANAGE_SSO
    template_name = "console/domains.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.setdefault("form", DomainForm())
        context["domains"] = [
            {"row": row, "record_name": record_name(row.domain),
             "record_value": record_value(row.token)}
            for row in organization_domains(organization=self.org)
        ]
        return context

    def post(self, request: HttpRequest) -> HttpResponse:
        form = DomainForm(request.POST)
        if not form.is_valid():
            return self.render(400, form=form)
        try:
            claim = services.organization_domain_add(
                organization=self.org, domain=form.cleaned_data["domain"], actor=self.user)
        except ApplicationError as error:
            service_error(form, error)
            return self.render(error.status, form=form)
        messages.success(request, f"{claim.domain} added. Publish its TXT record, then verify.")
        return redirect(self.org_url("console-domains"))


class _DomainAction(OrgPage):
    required_capability = Capability.MANAGE_SSO
    http_method_names = ["post"]

    def claim(self, domain_id: Any) -> OrganizationDomain:
        row = OrganizationDomain.objects.for_org(self.org).filter(pk=domain_id).first()
        if row is None:
            raise Http404("Not found.")
        return row


class DomainVerifyView(_DomainAction):
    def post(self, request: HttpRequest, domain_id: Any) -> HttpResponse:
        claim = self.claim(domain_id)
        try:
            services.organization_domain_verify(organization=self.org, domain=claim,
                                                actor=self.user)
        except ApplicationError as error:
            messages.error(request, error.message)
        else:
            messages.success(request, f"{claim.domain} is verified.")
        return redirect(self.org_url("console-domains"))


class DomainRemoveView(_DomainAction):
    def post(self, request: HttpRequest, domain_id: Any) -> HttpResponse:
        claim = self.claim(domain_id)
        try:
            services.organization_domain_remove(organization=self.org, domain=claim,
                                                actor=self.user)
        except ApplicationError as error:
            messages.error(request, error.message)
        else:
            messages.success(request, f"{claim.domain} was removed.")
        return redirect(self.org_url("console-domains"))
