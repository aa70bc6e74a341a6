"""REST API routes of guardrail policies, included under /api/v1/."""

from __future__ import annotations

from django.urls import path

from policies import api

policy = "orgs/<slug:org>/policy/"
project_policy = "orgs/<slug:org>/projects/<str:key>/policy/"

urlpatterns = [
    path(policy, api.PolicyView.as_view(), name="api-policy"),
    path(f"{policy}try/", api.PolicyTryView.as_view(), name="api-policy-try"),
    path(f"{policy}versions/", api.PolicyVersionListView.as_view(), name="api-policy-versions"),
    path(project_policy, api.ProjectPolicyView.as_view(), name="api-project-policy"),
    path(f"{project_policy}try/", api.ProjectPolicyTryView.as_view(),
         name="api-project-policy-try"),
]
