"""The "Sign in with SSO" page: finds the organization's IdP and starts its login."""

from __future__ import annotations

from typing import Any

from allauth.socialaccount.providers.base.constants import AuthProcess
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views import View

from accounts.sso.forms import SSOStartForm
from accounts.sso.providers import build_app


class SSOStartView(View):
    """GET shows the form; POST sends the browser to the organization's identity provider.

    Starting the login on our own CSRF-protected POST keeps allauth's rule that a provider
    login never starts on a GET (SOCIALACCOUNT_LOGIN_ON_GET stays False).
    """

    template_name = "sso/start.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated:
            return redirect("home")
        return self._render(request, SSOStartForm())

    def post(self, request: HttpRequest) -> HttpResponse:
        form = SSOStartForm(request.POST)
        if not form.is_valid():
            return self._render(request, form, status=400)
        connection = form.connection
        app = build_app(connection)
        assert app is not None  # the form only accepts complete connections
        provider = app.get_provider(request)
        slug = connection.organization.slug
        response: HttpResponse = provider.redirect(
            request, process=AuthProcess.LOGIN,
            next_url=reverse("org-overview", kwargs={"org": slug}),
        )
        return response

    def _render(self, request: HttpRequest, form: SSOStartForm, status: int = 200) -> HttpResponse:
        context: dict[str, Any] = {"form": form}
        return render(request, self.template_name, context, status=status)
