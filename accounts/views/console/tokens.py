"""Console pages for API tokens: create (shown once), list, revoke."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
)
from django.shortcuts import redirect

from accounts import services
from accounts.forms import (
    ApiTokenForm,
)
from accounts.models import ApiToken
from accounts.roles import Capability
from haao.errors import ApplicationError
from haao.views import OrgPage, no_store, service_error


class TokensView(OrgPage):
    """Every member's own API tokens; admins also see (and may revoke) everyone's."""

    template_name = "console/tokens.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.setdefault("form", ApiTokenForm())
        # The host and scheme this page was reached by: the example works when pasted.
        projects = self.request.build_absolute_uri(f"/api/v1/orgs/{self.org.slug}/projects/")
        context["curl_example"] = f'curl -H "Authorization: Bearer <token>" {projects}'
        tokens = ApiToken.objects.for_org(self.org).order_by("-created_at")
        context["own_tokens"] = tokens.filter(user=self.user)
        is_admin = self.can(Capability.MANAGE_MEMBERS)
        context["is_admin"] = is_admin
        if is_admin:
            context["all_tokens"] = tokens.select_related("user")
        return context

    def post(self, request: HttpRequest) -> HttpResponse:
        form = ApiTokenForm(request.POST)
        if not form.is_valid():
            return self.render(400, form=form)
        try:
            token, raw = services.api_token_create(
                organization=self.org, user=self.user,
                name=form.cleaned_data["name"], scopes=form.cleaned_data["scopes"],
                expires_at=form.expires_at())
        except ApplicationError as error:
            service_error(form, error)
            return self.render(error.status, form=form)
        # Rendered in this response only: the plaintext is never stored, not even in a session.
        return no_store(self.render(new_token=token, new_token_value=raw))


class TokenRevokeView(OrgPage):
    http_method_names = ["post"]

    def post(self, request: HttpRequest, token_id: Any) -> HttpResponse:
        tokens = ApiToken.objects.for_org(self.org)
        if not self.can(Capability.MANAGE_MEMBERS):
            tokens = tokens.filter(user=self.user)  # someone else's token: 404
        token = tokens.filter(pk=token_id).first()
        if token is None:
            raise Http404("Not found.")
        try:
            services.api_token_revoke(organization=self.org, token=token,
                                      actor=self.user)
        except ApplicationError as error:
            messages.error(request, error.message)
        else:
            messages.success(request, f"The token “{token.name}” ({token.prefix}…) was revoked.")
        return redirect(self.org_url("console-tokens"))
