"""The cost report as CSV: one line per row, then the totals; exact amounts in USD."""

from __future__ import annotations

import csv
import io

from django.http import HttpResponse

from agents.reports.selectors import CostReport, Figures, usd
from haao.text import csv_cell

COLUMNS = ["group", "key", "label", "calls", "input_tokens", "output_tokens",
           "cache_write_tokens", "cache_read_tokens", "local_cost_usd", "cloud_cost_usd",
           "cost_usd", "all_cloud_cost_usd", "savings_usd", "accepted_tickets",
           "cost_per_accepted_ticket_usd"]


def _line(group: str, row: Figures) -> list[str]:
    values = [group, row.key, row.label, row.calls, row.input_tokens, row.output_tokens,
              row.cache_write_tokens, row.cache_read_tokens, usd(row.local_cost),
              usd(row.cloud_cost), usd(row.cost), usd(row.all_cloud_cost), usd(row.savings),
              row.accepted, usd(row.cost_per_accepted)]
    return [csv_cell(value) for value in values]


def report_csv(report: CostReport) -> str:
    """The rows of the report's grouping and a `total` line, as CSV text."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for row in report.rows:
        writer.writerow(_line(report.filters.group, row))
    writer.writerow(_line("total", report.totals))
    return out.getvalue()


def csv_response(report: CostReport, slug: str) -> HttpResponse:
    """The report as a CSV download, named after the organization, period and grouping."""
    f = report.filters
    name = f"costs-{slug}-{f.since.isoformat()}-{f.until.isoformat()}-by-{f.group}.csv"
    response = HttpResponse(report_csv(report), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
