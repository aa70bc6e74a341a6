"""REST endpoints of the cost report, under `/api/v1/orgs/<org>/reports/`.

Admins and managers (read cost reports), with a token's `read` scope. The same filters as
the portal page; money is exact text in USD to the micro-dollar.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Membership
from accounts.roles import Capability
from agents.reports.export import csv_response
from agents.reports.forms import report_filter_from
from agents.reports.selectors import (
    GROUPS,
    KINDS,
    CostReport,
    Figures,
    ReportFilter,
    cost_report,
    usd,
)
from agents.reports.views import tickets_url
from haao.api import errors, refuse_empty
from haao.endpoints import OrgAPIView

MONEY = ("local_cost", "cloud_cost", "cost", "all_cloud_cost", "savings",
         "cost_per_accepted_ticket", "all_cloud_cost_per_accepted_ticket")
PARAMETERS = [
    OpenApiParameter("from", OpenApiTypes.DATE, description="First UTC day (default: the "
                     "first of this month). Not after `to`; at most 3660 days before it."),
    OpenApiParameter("to", OpenApiTypes.DATE, description="Last UTC day, included "
                     "(default: today)."),
    OpenApiParameter("project", str, description="A project's key."),
    OpenApiParameter("requirement", str, description="A requirement's key, e.g. PAY-R3."),
    OpenApiParameter("model", str, description="Only calls to this model."),
    OpenApiParameter("endpoint", OpenApiTypes.UUID, description="Only calls to this endpoint."),
    OpenApiParameter("kind", str, enum=list(KINDS), description="Only local or cloud calls."),
    OpenApiParameter("group", str, enum=list(GROUPS), description="How rows are split "
                     "(default: project)."),
]


# Parameters with a type or a list of values: given empty, they are a mistake the portal's
# form would read as "not set", so the API refuses them (texts may be empty).
TYPED = [p.name for p in PARAMETERS if p.type is not str or p.enum]


def filters_of(request: Request, membership: Membership) -> ReportFilter:
    """The report filter of the query string; a typed parameter given empty is a 400."""
    refuse_empty(request.query_params, TYPED)
    return report_filter_from(request.query_params, membership=membership)


def _figures(row: Figures, slug: str) -> dict[str, Any]:
    data = row.as_dict()
    for name in MONEY:
        data[name] = usd(data[name]) or None
    data["savings_percent"] = None if row.savings_percent is None else str(row.savings_percent)
    data["tickets_url"] = tickets_url(slug, row.params)
    return data


def report_json(report: CostReport, slug: str) -> dict[str, Any]:
    f = report.filters
    quality = report.quality.as_dict()
    for name, value in quality.items():
        if isinstance(value, dict) and value.get("percent") is not None:
            value["percent"] = str(value["percent"])
        elif value is not None and not isinstance(value, int | dict):
            quality[name] = str(value)
    return {
        "period": {"from": f.since.isoformat(), "to": f.until.isoformat()},
        "filters": f.params(),
        "currency": "USD",
        "reference": {"model": report.reference.model, "source": report.reference.source,
                      "price": report.reference.price.snapshot()},
        "totals": _figures(report.totals, slug),
        "rows": [_figures(row, slug) for row in report.rows],
        "months": [_figures(row, slug) for row in report.months],
        "quality": quality,
        "budgets": [{**use.as_dict(), "cap": usd(use.cap) or None, "spent": usd(use.spent),
                     "percent": None if use.percent is None else str(use.percent)}
                    for use in report.budgets],
    }


class CostReportAPIView(OrgAPIView):
    required_capability = Capability.VIEW_REPORTS

    @extend_schema(tags=["reports"], operation_id="reports_costs", parameters=PARAMETERS,
                   responses={200: OpenApiResponse(OpenApiTypes.OBJECT,
                                                   description="The cost report."),
                              **errors(400, 401, 403, 404)})
    def get(self, request: Request, org: str) -> Response:
        """Cost per accepted ticket, spend, the all-cloud comparison, quality and budgets."""
        filters = filters_of(request, self.membership)
        return Response(report_json(cost_report(organization=self.org, filters=filters),
                                    self.org.slug))


class CSVRenderer(BaseRenderer):
    """Lets a client ask for `text/csv`; the view writes the CSV itself, errors stay JSON."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None,
               renderer_context: Any = None) -> bytes:
        return json.dumps(data).encode()


class CostReportCSVAPIView(OrgAPIView):
    required_capability = Capability.VIEW_REPORTS
    renderer_classes = [JSONRenderer, CSVRenderer]

    @extend_schema(tags=["reports"], operation_id="reports_costs_csv", parameters=PARAMETERS,
                   responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR,
                                                                 description="CSV rows."),
                              **errors(400, 401, 403, 404)})
    def get(self, request: Request, org: str) -> HttpResponse:
        """The report's rows and totals as CSV."""
        filters = filters_of(request, self.membership)
        return csv_response(cost_report(organization=self.org, filters=filters),
                            self.org.slug)
