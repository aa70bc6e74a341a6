"""Portal routes of projects and their board, included under /o/<org>/."""

from __future__ import annotations

from django.urls import path

from tickets.portal import projects

urlpatterns = [
    path("projects/", projects.ProjectsView.as_view(), name="portal-projects"),
    path("projects/<str:key>/", projects.ProjectView.as_view(), name="portal-project"),
    path("projects/<str:key>/requirements/new/", projects.RequirementCreateView.as_view(),
         name="portal-requirement-new"),
    path("projects/<str:key>/cards/<str:ticket_key>/", projects.CardView.as_view(),
         name="portal-project-card"),
]
