"""The "Sign in with SSO" page: finds the organization's IdP and starts its login."""

from __future__ import annotations

import logging
from typing import Any

from allauth.socialaccount.providers.base.constants import AuthProcess
from allauth.socialaccount.providers.oauth2.client import OAuth2Error
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View
from requests import RequestException

from accounts.sso.forms import SSOStartForm
from accounts.sso.providers import build_app

logger = logging.getLogger(__name__)


class SSOStartView(View):
    """GET shows the form; POST sends the browser to the organization's identity provider.

    Starting the login on our own CSRF-protected POST keeps allauth's rule that a provider
    login never starts on a GET (SOCIALACCOUNT_LOGIN_ON_GET stays False).
    """

    template_name = "sso/start.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        org = request.GET.get("org", "").strip()[:50]
        if request.user.is_authenticated and not org:
            return redirect("home")
        # `org` comes from the organization door: the session has not met that organization's
        # sign-in rule yet. Only the typed slug is echoed, so the page reveals no tenant.
        form = SSOStartForm(initial={"identifier": org}) if org else SSOStartForm()
        return self._render(request, form, required=bool(org), next_url=self._next(request))

    def post(self, request: HttpRequest) -> HttpResponse:
        form = SSOStartForm(request.POST)
        if not form.is_valid():
            return self._render(request, form, status=400, next_url=self._next(request))
        connection = form.connection
        app = build_app(connection)
        assert app is not None  # the form only accepts complete connections
        provider = app.get_provider(request)
        slug = connection.organization.slug
        overview = reverse("org-overview", kwargs={"org": slug})
        next_url = self._next(request)
        try:
            response: HttpResponse = provider.redirect(
                request, process=AuthProcess.LOGIN,
                # Back to the page that asked, if it is a page of the organization signed in to.
                next_url=next_url if next_url and next_url.startswith(overview) else overview,
            )
        except (OAuth2Error, RequestException) as error:
            # The IdP is unreachable or answered nonsense: say so, as a gateway would; the
            # reason goes to the log (the visitor is anonymous).
            logger.warning("SSO start for %s failed: %s", connection.organization.slug, error)
            form.add_error(None, "The organization's identity provider cannot be reached or "
                                 "answered something that is not an OpenID configuration. "
                                 "Try again later, or ask its admin to check the single "
                                 "sign-on settings.")
            return self._render(request, form, status=502, next_url=next_url)
        return response

    @staticmethod
    def _next(request: HttpRequest) -> str:
        value = request.POST.get("next") or request.GET.get("next") or ""
        if value.startswith("/") and url_has_allowed_host_and_scheme(
                value, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
            return value
        return ""

    def _render(self, request: HttpRequest, form: SSOStartForm, status: int = 200, *,
                required: bool = False, next_url: str = "") -> HttpResponse:
        context: dict[str, Any] = {"form": form, "required": required, "next_url": next_url}
        return render(request, self.template_name, context, status=status)
