"""SSO entry points: "Sign in with SSO" and each organization's identity provider."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver

urlpatterns: list[URLPattern | URLResolver] = []
