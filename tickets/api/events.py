"""The event streams of a project and of a ticket: audit rows in `seq` order after a given
id, so a client that lost its socket resumes exactly where it stopped."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.roles import hidden_event_prefixes
from haao.api import READ_ERRORS, errors
from haao.endpoints import OrgEndpoint
from haao.models import ActorType, AuditEvent
from haao.text import displayable_data
from tickets.selectors import (
    StreamEvent,
    project_by_key,
    project_events,
    ticket_by_key,
    ticket_events,
)

MAX_LIMIT = 500
DEFAULT_LIMIT = 100
# Sequence numbers are 64-bit in the database; a larger `after` could match nothing anyway.
MAX_SEQ = 2**62


class EventQuerySerializer(serializers.Serializer):
    after = serializers.IntegerField(min_value=0, max_value=MAX_SEQ, default=0,
                                     help_text="Only events with a larger `seq`; 0 (the "
                                               "default) starts at the beginning.")
    limit = serializers.IntegerField(min_value=1, max_value=MAX_LIMIT, default=DEFAULT_LIMIT,
                                     help_text=f"At most this many events (1-{MAX_LIMIT}).")


class EventSerializer(serializers.ModelSerializer):
    actor_type = serializers.ChoiceField(choices=ActorType.choices, read_only=True)

    class Meta:
        model = AuditEvent
        fields = ["seq", "created_at", "type", "actor_type", "actor_label", "target_type",
                  "target_label", "data"]
        read_only_fields = fields

    def to_representation(self, instance: StreamEvent) -> Any:
        # Rows stored before input was checked may hold unpaired surrogates: shown replaced.
        return displayable_data(super().to_representation(instance))


class EventPageSerializer(serializers.Serializer):
    results = EventSerializer(many=True, read_only=True)
    next_after = serializers.IntegerField(
        read_only=True, help_text="Pass this as `after` to get the next events: the last "
                                  "`seq` returned, or your `after` when none were new.")
    has_more = serializers.BooleanField(
        read_only=True, help_text="Whether more events were waiting beyond this page.")


EVENT_PARAMETERS = [EventQuerySerializer]  # their bounds go into the schema


class EventStreamView(OrgEndpoint):
    """Events oldest first after `after`, `limit` at a time; no cursor to keep."""

    serializer_class = EventPageSerializer
    pagination_class = None
    filter_backends: list[type] = []

    def page(self, request: Request,
             events_after: Callable[..., list[StreamEvent]]) -> Response:
        # A plain dict: DRF would read `?after=` from a QueryDict as "not given".
        query = EventQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        after, limit = query.validated_data["after"], query.validated_data["limit"]
        # One row more than asked tells whether more are waiting, without a count.
        rows = events_after(after=after, limit=limit + 1)
        results = rows[:limit]
        body = {
            "results": EventSerializer(results, many=True).data,
            "next_after": results[-1].seq if results else after,
            "has_more": len(rows) > limit,
        }
        return Response(body)


@extend_schema(tags=["events"])
class ProjectEventsView(EventStreamView):
    @extend_schema(operation_id="projects_events", parameters=EVENT_PARAMETERS,
                   responses={200: EventPageSerializer, **errors(400, *READ_ERRORS)})
    def get(self, request: Request, org: str, key: str) -> Response:
        """Events of a project (requirements, tickets, gate decisions) in order."""
        project = project_by_key(membership=self.membership, key=key)
        if project is None:
            raise NotFound()
        hidden = hidden_event_prefixes(self.membership.role)
        return self.page(request, lambda after, limit: project_events(
            project=project, after=after, limit=limit, hidden=hidden))


@extend_schema(tags=["events"])
class TicketEventsView(EventStreamView):
    @extend_schema(operation_id="tickets_events", parameters=EVENT_PARAMETERS,
                   responses={200: EventPageSerializer, **errors(400, *READ_ERRORS)})
    def get(self, request: Request, org: str, key: str) -> Response:
        """Events of one ticket (proposal, edits, every state change) in order."""
        ticket = ticket_by_key(membership=self.membership, key=key)
        if ticket is None:
            raise NotFound()
        return self.page(request, lambda after, limit: ticket_events(
            ticket=ticket, after=after, limit=limit))
