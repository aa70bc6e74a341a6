"""Query filters of the ticket list: `?state=…&project=PAY&requirement=PAY-R3&q=…`."""

from __future__ import annotations

from typing import Any

import django_filters
from django.core.validators import RegexValidator
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

from tickets.models import Ticket, TicketStatus, project_key_validator
from tickets.selectors import REQUIREMENT_KEY_RE

requirement_key_validator = RegexValidator(
    REQUIREMENT_KEY_RE, "Use a requirement key like PAY-R3.")


class TicketFilter(django_filters.FilterSet):
    """Every filter is bounded and checked, so a malformed value is a 400, never a query."""

    state = django_filters.MultipleChoiceFilter(
        field_name="status", choices=TicketStatus.choices,
        help_text="Only tickets in these states; repeat the parameter for several "
                  "(`?state=queued&state=running`).")
    project = django_filters.CharFilter(
        field_name="project__key", max_length=10, validators=[project_key_validator],
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

    @extend_schema_field(OpenApiTypes.STR)
    def filter_requirement(self, queryset: QuerySet[Ticket], name: str,
                           value: Any) -> QuerySet[Ticket]:
        match = REQUIREMENT_KEY_RE.match(value)
        if match is None:  # the validator refused it already; never widen the list
            return queryset.none()
        # A ticket's requirement belongs to the ticket's own project: no second join.
        return queryset.filter(project__key=match[1], requirement__number=int(match[2]))
