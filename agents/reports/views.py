"""Portal pages of the cost report (admins and managers): figures, charts, CSV, the tickets."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.urls import reverse
from django.views import View

from accounts.roles import Capability
from agents.reports.export import csv_response
from agents.reports.forms import GROUP_LABELS, ReportFilterForm
from agents.reports.selectors import CostReport, cost_report, report_ticket_spend
from haao.views import OrgPage, OrgView

TICKETS_PAGE_SIZE = 100


def tickets_url(slug: str, params: dict[str, str]) -> str:
    """The page listing the tickets behind a figure."""
    return f"{reverse('reports-tickets', kwargs={'org': slug})}?{urlencode(params)}"


def chart_data(report: CostReport) -> dict[str, Any]:
    """What the charts draw (floats, for drawing only; the tables show the exact amounts)."""
    return {
        "months": {"labels": [row.label for row in report.months],
                   "local": [float(row.local_cost) for row in report.months],
                   "cloud": [float(row.cloud_cost) for row in report.months],
                   "all_cloud": [float(row.all_cloud_cost) for row in report.months],
                   "per_accepted": [None if row.cost_per_accepted is None
                                    else float(row.cost_per_accepted)
                                    for row in report.months]},
        "rows": {"labels": [row.label for row in report.rows[:20]],
                 "cost": [float(row.cost) for row in report.rows[:20]],
                 "all_cloud": [float(row.all_cloud_cost) for row in report.rows[:20]]},
    }


class CostReportView(OrgPage):
    """Cost per accepted ticket, spend, savings against all-cloud, quality and budgets."""

    required_capability = Capability.VIEW_REPORTS
    template_name = "reports/costs.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = ReportFilterForm(request.GET, membership=self.membership)
        if not form.is_valid():
            return self.render(400, form=form, report=None)
        report = cost_report(organization=self.org, filters=form.report_filter())
        slug = self.org.slug
        query = urlencode(report.filters.params())
        for row in [report.totals, *report.rows, *report.months]:
            row.tickets_url = tickets_url(slug, row.params)
        for use in report.budgets:
            use.link = f"/o/{slug}/{use.path}" if use.path else tickets_url(slug, use.params)
        return self.render(form=form, report=report, chart=chart_data(report),
                           group_label=GROUP_LABELS[report.filters.group],
                           csv_url=f"{reverse('reports-costs-csv', kwargs={'org': slug})}?{query}",
                           api_url=f"/api/v1/orgs/{slug}/reports/costs/?{query}")


class CostReportCSVView(OrgView, View):
    """The report's rows and totals as CSV."""

    required_capability = Capability.VIEW_REPORTS

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        form = ReportFilterForm(request.GET, membership=self.membership)
        if not form.is_valid():
            return HttpResponse(form.problem().message + "\n", status=400,
                                content_type="text/plain; charset=utf-8")
        return csv_response(cost_report(organization=self.org,
                                        filters=form.report_filter()), self.org.slug)


class ReportTicketsView(OrgPage):
    """The tickets whose calls make up a figure of the report, most expensive first."""

    required_capability = Capability.VIEW_REPORTS
    template_name = "reports/tickets.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = ReportFilterForm(request.GET, membership=self.membership)
        if not form.is_valid():
            return self.render(400, form=form, page_obj=None)
        filters = form.report_filter()
        rows, unassigned = report_ticket_spend(organization=self.org, filters=filters)
        page_obj = Paginator(rows, TICKETS_PAGE_SIZE).get_page(request.GET.get("page"))
        total = sum((row.cost for row in rows), unassigned["cost"])
        back = reverse("reports-costs", kwargs={"org": self.org.slug})
        return self.render(form=form, filters=filters, page_obj=page_obj, rows=page_obj.object_list,
                           count=len(rows), unassigned=unassigned, total=total,
                           accepted=sum(1 for row in rows if row.accepted_in_period),
                           back_url=f"{back}?{urlencode(filters.params())}")
