"""Portal routes of projects and their board, included under /o/<org>/."""

from __future__ import annotations

from django.urls import path

from tickets.portal import project_settings, projects

urlpatterns = [
    path("projects/", projects.ProjectsView.as_view(), name="portal-projects"),
    path("projects/new/", project_settings.ProjectNewView.as_view(), name="portal-project-new"),
    path("projects/<str:key>/", projects.ProjectView.as_view(), name="portal-project"),
    path("projects/<str:key>/requirements/new/", projects.RequirementCreateView.as_view(),
         name="portal-requirement-new"),
    path("projects/<str:key>/settings/", project_settings.ProjectSettingsView.as_view(),
         name="portal-project-settings"),
    path("projects/<str:key>/settings/deploy-key/", project_settings.DeployKeyView.as_view(),
         name="portal-project-deploy-key"),
    path("projects/<str:key>/settings/webhook-secret/",
         project_settings.WebhookSecretView.as_view(), name="portal-project-webhook-secret"),
    path("projects/<str:key>/settings/connection-test/",
         project_settings.ConnectionTestView.as_view(), name="portal-project-connection-test"),
    path("projects/<str:key>/settings/setup-check/",
         project_settings.SetupCheckView.as_view(), name="portal-project-setup-check"),
    path("projects/<str:key>/cards/<str:ticket_key>/", projects.CardView.as_view(),
         name="portal-project-card"),
]
