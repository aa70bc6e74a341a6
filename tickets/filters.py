"""Query filters of the ticket list: `?state=…&project=PAY&requirement=PAY-R3&q=…`."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet, Subquery
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

from accounts.models import Organization
from haao.api import StrictFilterBackend
from tickets.keys import parse_requirement_key, project_key_validator, requirement_key_validator
from tickets.models import Project, Requirement, Ticket, TicketStatus


class TicketFilter(django_filters.FilterSet):
    """Every filter is bounded and checked, so a malformed value is a 400, never a query.

    A project or requirement key becomes its id in a subquery of the organization: the
    database then reads that project's (or requirement's) tickets by index instead of
    walking the whole organization's list, newest first, looking for them.
    """

    state = django_filters.MultipleChoiceFilter(
        # Not DISTINCT (django-filter's default here): a ticket has one status, and SELECT
        # DISTINCT over whole rows made the list scan every match before its LIMIT.
        field_name="status", choices=TicketStatus.choices, distinct=False,
        help_text="Only tickets in these states; repeat the parameter for several "
                  "(`?state=queued&state=running`).")
    project = django_filters.CharFilter(
        method="filter_project", max_length=10, validators=[project_key_validator],
        help_text="Only tickets of this project, by key (e.g. `PAY`).")
    requirement = django_filters.CharFilter(
        method="filter_requirement", max_length=21, validators=[requirement_key_validator],
        help_text="Only tickets of this requirement, by key (e.g. `PAY-R3`).")
    q = django_filters.CharFilter(
        field_name="title", lookup_expr="icontains", max_length=200,
        help_text="Only tickets whose title contains this text (case-insensitive).")

    class Meta:
        model = Ticket
        fields = ["state", "project", "requirement", "q"]

    def __init__(self, *args: Any, organization: Organization, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.organization = organization

    @extend_schema_field(OpenApiTypes.STR)
    def filter_project(self, queryset: QuerySet[Ticket], name: str,
                       value: str) -> QuerySet[Ticket]:
        project = Project.objects.for_org(self.organization).filter(key=value)
        return queryset.filter(project_id=Subquery(project.values("pk")[:1]))

    @extend_schema_field(OpenApiTypes.STR)
    def filter_requirement(self, queryset: QuerySet[Ticket], name: str,
                           value: str) -> QuerySet[Ticket]:
        parsed = parse_requirement_key(value)
        if parsed is None:  # the validator refused it already; never widen the list
            return queryset.none()
        requirement = Requirement.objects.for_org(self.organization).filter(
            project__key=parsed[0], number=parsed[1])
        return queryset.filter(requirement_id=Subquery(requirement.values("pk")[:1]))


class OrgFilterBackend(StrictFilterBackend):
    """django-filter's backend, handing the view's organization to the filter set."""

    def get_filterset_kwargs(self, request: Any, queryset: Any, view: Any) -> dict[str, Any]:
        kwargs: dict[str, Any] = super().get_filterset_kwargs(request, queryset, view)
        kwargs["organization"] = view.org
        return kwargs
