"""URL map: portal pages under /o/<org>/, the REST API under /api/v1/, SSO, health.

The one root of every app's routes: each app lists its own pages and endpoints, here they
are put under their prefixes."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerView,
)

from accounts.views.invitations import InvitationView
from agents.delivery.webhooks import forge_webhook
from haao.health import health
from haao.metrics import metrics
from haao.portal import HomeView, OrgOverviewView

urlpatterns = [
    path("health", health, name="health"),
    path("metrics", metrics, name="metrics"),
    path("hooks/forge/<str:project_id>/", forge_webhook, name="forge-webhook"),
    path("platform-admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/v1/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("api/v1/", include("accounts.api.urls")),
    path("api/v1/", include("tickets.urls")),
    path("api/v1/", include("agents.urls")),
    path("api/v1/", include("policies.urls")),
    path("", include("accounts.sso.urls")),
    path("", HomeView.as_view(), name="home"),
    path("invitations/<str:token>/", InvitationView.as_view(), name="invitation"),
    path("o/<slug:org>/", OrgOverviewView.as_view(), name="org-overview"),
    path("o/<slug:org>/", include("accounts.urls_console")),
    path("o/<slug:org>/", include("agents.urls_console")),
    path("o/<slug:org>/", include("agents.urls_reports")),
    path("o/<slug:org>/", include("policies.urls_console")),
    path("o/<slug:org>/", include("tickets.urls_portal")),
    path("o/<slug:org>/", include("tickets.urls_gates")),
    path("o/<slug:org>/", include("agents.delivery.urls")),
]
