"""Admin console routes of inference endpoints, included under /o/<org>/."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from agents import views

endpoint = "admin/endpoints/<uuid:endpoint_id>/"

urlpatterns: list[URLPattern | URLResolver] = [
    path("admin/endpoints/", views.EndpointsView.as_view(), name="console-endpoints"),
    path(endpoint, views.EndpointDetailView.as_view(), name="console-endpoint"),
    path(f"{endpoint}check/", views.EndpointCheckView.as_view(), name="console-endpoint-check"),
    path(f"{endpoint}enabled/", views.EndpointEnabledView.as_view(),
         name="console-endpoint-enabled"),
    path(f"{endpoint}delete/", views.EndpointDeleteView.as_view(),
         name="console-endpoint-delete"),
]
