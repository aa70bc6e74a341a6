"""REST API routes of projects, included under /api/v1/."""

from __future__ import annotations

from django.urls import path

from tickets import api

org = "orgs/<slug:org>/"

urlpatterns = [
    path(f"{org}projects/", api.ProjectListView.as_view(), name="api-projects"),
    path(f"{org}projects/<str:key>/", api.ProjectDetailView.as_view(), name="api-project"),
    path(f"{org}projects/<str:key>/grants/<uuid:membership>/", api.ProjectGrantsView.as_view(),
         name="api-project-grants"),
]
