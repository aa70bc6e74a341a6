"""REST API routes of inference endpoints, included under /api/v1/."""

from __future__ import annotations

from django.urls import path

from agents import api
from agents.delivery import api as delivery_api
from agents.reports import api as reports_api

endpoints = "orgs/<slug:org>/endpoints/"

urlpatterns = [
    path(endpoints, api.EndpointListView.as_view(), name="api-endpoints"),
    path(f"{endpoints}<uuid:endpoint>/", api.EndpointDetailView.as_view(), name="api-endpoint"),
    path(f"{endpoints}<uuid:endpoint>/check/", api.EndpointCheckView.as_view(),
         name="api-endpoint-check"),
    path("orgs/<slug:org>/projects/<str:key>/branches/", delivery_api.BranchListView.as_view(),
         name="api-project-branches"),
    path("orgs/<slug:org>/projects/<str:key>/branches/<uuid:branch>/deliver/",
         delivery_api.BranchDeliverView.as_view(), name="api-project-branch-deliver"),
    path("orgs/<slug:org>/reports/costs/", reports_api.CostReportAPIView.as_view(),
         name="api-reports-costs"),
    path("orgs/<slug:org>/reports/costs.csv", reports_api.CostReportCSVAPIView.as_view(),
         name="api-reports-costs-csv"),
]
