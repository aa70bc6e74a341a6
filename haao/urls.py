"""URL map: portal pages under /o/<org>/, the REST API under /api/v1/, SSO, health."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerView,
)

from agents.delivery.webhooks import forge_webhook
from haao.health import health
from haao.metrics import metrics

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
    path("", include("accounts.urls")),
]
