"""Admin console routes of guardrail policies, included under /o/<org>/."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from policies import views

project = "admin/policies/projects/<uuid:project_id>/"

urlpatterns: list[URLPattern | URLResolver] = [
    path("admin/policies/", views.PoliciesView.as_view(), name="console-policies"),
    path("admin/policies/try/", views.PolicyTryView.as_view(), name="console-policy-try"),
    path(project, views.ProjectPolicyView.as_view(), name="console-policy-project"),
    path(f"{project}try/", views.ProjectPolicyTryView.as_view(),
         name="console-policy-project-try"),
]
