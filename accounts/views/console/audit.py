"""Console pages for the audit log: filters, pages and CSV export."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import Any

from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    StreamingHttpResponse,
)
from django.utils import timezone
from django.views import View

from accounts.forms import (
    AuditFilterForm,
)
from accounts.roles import Capability
from accounts.selectors import audit_events_readable
from haao.models import AuditEvent
from haao.text import csv_cell, displayable, displayable_data
from haao.views import OrgPage, OrgView

AUDIT_PAGE_SIZE = 50
SUMMARY_LENGTH = 160


def _audit_types(membership: Any) -> list[str]:
    return list(audit_events_readable(membership=membership).order_by("type")
                .values_list("type", flat=True).distinct())


def _audit_events(membership: Any, filters: dict[str, Any]) -> QuerySet[AuditEvent]:
    events = audit_events_readable(membership=membership).order_by("-seq")
    if filters.get("actor"):
        events = events.filter(Q(actor_label__icontains=filters["actor"])
                               | Q(actor_user__name__icontains=filters["actor"]))
    if filters.get("type"):
        events = events.filter(type=filters["type"])
    if filters.get("date_from"):
        events = events.filter(created_at__date__gte=filters["date_from"])
    if filters.get("date_to"):
        events = events.filter(created_at__date__lte=filters["date_to"])
    return events


def summarize(data: Any) -> str:
    """A one-line reading of an event's data, e.g. `before: member, after: admin`."""
    if not data:
        return ""
    if isinstance(data, dict):
        parts = [f"{key}: {value if isinstance(value, str) else json.dumps(value)}"
                 for key, value in data.items()]
        text = ", ".join(parts)
    else:
        text = json.dumps(data)
    return text if len(text) <= SUMMARY_LENGTH else text[:SUMMARY_LENGTH - 1] + "…"


class AuditLogView(OrgPage):
    """The organization's audit log, filtered and paginated (newest first)."""

    required_capability = Capability.VIEW_AUDIT
    template_name = "console/audit.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        types = _audit_types(self.membership)
        form = AuditFilterForm(request.GET or None, types=types)
        if form.is_bound and not form.is_valid():
            return self.render(400, form=form, page_obj=None, events=[], filtered=True)
        filters = form.cleaned_data if form.is_bound else {}
        paginator = Paginator(_audit_events(self.membership, filters).select_related("actor_user"),
                              AUDIT_PAGE_SIZE)
        page_obj = paginator.get_page(request.GET.get("page"))
        events = list(page_obj.object_list)
        for event in events:
            # Rows stored before input was checked may hold unpaired surrogates.
            event.actor_label = displayable(event.actor_label)
            event.target_label = displayable(event.target_label)
            # Made displayable before it is cut short, so a cut URL keeps no credentials.
            event.summary = summarize(displayable_data(event.data))
        query = request.GET.copy()
        query.pop("page", None)
        return self.render(form=form, page_obj=page_obj, events=events,
                           filtered=any(filters.values()) if filters else False,
                           csv_url=self.org_url("console-audit-csv")
                           + (f"?{query.urlencode()}" if query else ""))


class _Echo:
    def write(self, value: str) -> str:
        return value


class AuditCSVView(OrgView, View):
    """The filtered audit log as CSV, streamed row by row."""

    required_capability = Capability.VIEW_AUDIT

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        form = AuditFilterForm(request.GET, types=_audit_types(self.membership))
        if not form.is_valid():
            problems = "; ".join(f"{name}: {' '.join(str(e) for e in errors)}"
                                 for name, errors in form.errors.items())
            return HttpResponse(f"Bad filter: {problems}\n", status=400,
                                content_type="text/plain; charset=utf-8")
        events = _audit_events(self.membership, form.cleaned_data)
        slug = self.org.slug
        writer = csv.writer(_Echo())

        def rows() -> Iterator[str]:
            yield writer.writerow(["seq", "time", "actor_type", "actor", "type", "target_type",
                                   "target_id", "target", "data"])
            for event in events.iterator(chunk_size=1000):
                yield writer.writerow([csv_cell(v) for v in (
                    event.seq, event.created_at.isoformat(), event.actor_type,
                    event.actor_label, event.type, event.target_type, event.target_id,
                    event.target_label,
                    json.dumps(event.data, sort_keys=True, ensure_ascii=False),
                )])

        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = (
            f'attachment; filename="audit-{slug}-{stamp}.csv"')
        return response
