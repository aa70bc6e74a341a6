"""REST API routes of inference endpoints, included under /api/v1/."""

from __future__ import annotations

from django.urls import path

from agents import api

endpoints = "orgs/<slug:org>/endpoints/"

urlpatterns = [
    path(endpoints, api.EndpointListView.as_view(), name="api-endpoints"),
    path(f"{endpoints}<uuid:endpoint>/", api.EndpointDetailView.as_view(), name="api-endpoint"),
    path(f"{endpoints}<uuid:endpoint>/check/", api.EndpointCheckView.as_view(),
         name="api-endpoint-check"),
]
