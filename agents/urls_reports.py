"""Portal routes of the cost reports, included under /o/<org>/."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from agents.reports import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("reports/costs/", views.CostReportView.as_view(), name="reports-costs"),
    path("reports/costs.csv", views.CostReportCSVView.as_view(), name="reports-costs-csv"),
    path("reports/tickets/", views.ReportTicketsView.as_view(), name="reports-tickets"),
]
