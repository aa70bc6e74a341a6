"""Organization admin console routes (members, invitations, SSO, tokens, audit log)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver

urlpatterns: list[URLPattern | URLResolver] = []
