"""SSO entry points: "Sign in with SSO" and each organization's identity provider."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from accounts.sso.views import SSOStartView

urlpatterns: list[URLPattern | URLResolver] = [
    path("sso/", SSOStartView.as_view(), name="sso-start"),
]
