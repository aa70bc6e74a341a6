"""REST API routes of organizations, members, invitations, tokens and the audit log."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver

urlpatterns: list[URLPattern | URLResolver] = []
