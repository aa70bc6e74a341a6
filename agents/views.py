"""Admin console pages of inference endpoints: list with health, create, edit, check, delete.

Each POST validates agents.forms.EndpointForm or takes no input, and calls one service;
domain errors become form errors or messages, never a 500.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect

from accounts.roles import Capability
from agents import health, pricing, selectors, services
from agents.forms import EndpointForm
from agents.models import InferenceEndpoint
from haao.audit import Actor
from haao.errors import ApplicationError
from haao.views import OrgPage


def _form_error(form: EndpointForm, error: ApplicationError) -> None:
    """A service's error on the field it names (an SSRF refusal lands on the URL)."""
    fields = [name for name in error.details if name in form.fields]
    form.add_error(fields[0] if fields else None, error.message)


class EndpointsView(OrgPage):
    """The organization's endpoints with their health; create one."""

    required_capability = Capability.MANAGE_POLICIES
    template_name = "agents/endpoints.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.setdefault("form", EndpointForm())
        context["endpoints"] = selectors.endpoints_of(organization=self.org)
        context["price_table"] = [(model, pricing.price_for(model))
                                  for model in pricing.known_models()]
        context["prices_read_on"] = pricing.PRICES_READ_ON
        context["prices_source"] = pricing.PRICES_SOURCE
        return context

    def post(self, request: HttpRequest) -> HttpResponse:
        form = EndpointForm(request.POST)
        if not form.is_valid():
            return self.render(400, form=form)
        try:
            endpoint = services.endpoint_create(
                organization=self.org, actor=self.user, values=form.values(),
                api_key=form.cleaned_data["api_key"])
        except ApplicationError as error:
            _form_error(form, error)
            return self.render(error.status, form=form)
        messages.success(request, f"Endpoint “{endpoint.name}” created.")
        return redirect(self.org_url("console-endpoints"))


class _EndpointPage(OrgPage):
    required_capability = Capability.MANAGE_POLICIES

    def load(self, endpoint_id: Any) -> InferenceEndpoint:
        endpoint = selectors.endpoint_by_id(organization=self.org, endpoint_id=endpoint_id)
        if endpoint is None:
            raise Http404("Not found.")
        return endpoint


class EndpointDetailView(_EndpointPage):
    """Edit one endpoint; its key can be replaced or removed, never read."""

    template_name = "agents/endpoint_form.html"

    def get(self, request: HttpRequest, endpoint_id: Any) -> HttpResponse:
        endpoint = self.load(endpoint_id)
        return self.render(endpoint=endpoint, form=EndpointForm(endpoint=endpoint))

    def post(self, request: HttpRequest, endpoint_id: Any) -> HttpResponse:
        endpoint = self.load(endpoint_id)
        form = EndpointForm(request.POST, endpoint=endpoint)
        if not form.is_valid():
            return self.render(400, endpoint=endpoint, form=form)
        try:
            services.endpoint_update(
                organization=self.org, endpoint=endpoint, actor=self.user,
                changes=form.values(), api_key=form.cleaned_data["api_key"],
                clear_api_key=form.cleaned_data.get("clear_api_key", False))
        except ApplicationError as error:
            _form_error(form, error)
            return self.render(error.status, endpoint=endpoint, form=form)
        messages.success(request, f"Endpoint “{form.cleaned_data['name']}” saved.")
        return redirect(self.org_url("console-endpoints"))


class EndpointCheckView(_EndpointPage):
    """Check an endpoint's health now."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest, endpoint_id: Any) -> HttpResponse:
        endpoint = health.endpoint_check_health(endpoint=self.load(endpoint_id),
                                                  actor=Actor.of(self.user))
        if endpoint.health_status == "ok":
            messages.success(request, f"“{endpoint.name}” answered in "
                                      f"{endpoint.health_latency_ms} ms.")
        else:
            messages.error(request, f"“{endpoint.name}” is failing: {endpoint.health_error}")
        return redirect(self.org_url("console-endpoints"))


class EndpointEnabledView(_EndpointPage):
    """Enable or disable an endpoint (a disabled one gets no work)."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest, endpoint_id: Any) -> HttpResponse:
        endpoint = self.load(endpoint_id)
        enabled = request.POST.get("enabled") == "1"
        try:
            services.endpoint_update(organization=self.org, endpoint=endpoint, actor=self.user,
                                     changes={"enabled": enabled})
        except ApplicationError as error:
            messages.error(request, error.message)
        else:
            messages.success(request, f"“{endpoint.name}” is "
                                      f"{'enabled' if enabled else 'disabled'}.")
        return redirect(self.org_url("console-endpoints"))


class EndpointDeleteView(_EndpointPage):
    """Delete an endpoint that no recorded call refers to."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest, endpoint_id: Any) -> HttpResponse:
        endpoint = self.load(endpoint_id)
        try:
            services.endpoint_delete(organization=self.org, endpoint=endpoint, actor=self.user)
        except ApplicationError as error:
            messages.error(request, error.message)
        else:
            messages.success(request, f"Endpoint “{endpoint.name}” deleted.")
        return redirect(self.org_url("console-endpoints"))
