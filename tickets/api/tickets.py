"""REST endpoints of tickets: the filtered list, one ticket with its attempts and costs, the
Gate 1 spec edit and the gate decisions, under `/api/v1/orgs/<org>/tickets/`."""

from __future__ import annotations

from typing import Any, ClassVar

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.roles import Capability
from agents.delivery.api import DeliverySerializer
from agents.delivery.selectors import ticket_delivery
from agents.selectors import Totals, ticket_totals
from haao.api import (
    READ_ERRORS,
    WRITE_ERRORS,
    CursorPagination,
    StrictCharField,
    StrictSerializer,
    errors,
    validated,
)
from haao.endpoints import OrgEndpoint
from tickets import keys, services
from tickets.filters import OrgFilterBackend, TicketFilter
from tickets.models import (
    Attempt,
    AttemptOutcome,
    CheckResult,
    ExecutorKind,
    Ticket,
    TicketStatus,
)
from tickets.selectors import (
    ticket_by_key,
    ticket_detail,
    ticket_list,
)
from tickets.services.tickets import MAX_CANCEL_REASON, MAX_FEEDBACK
from tickets.spec import SpecError, SpecInvalid, json_path

SPEC_HELP = ("The Atomic Ticket, schema v1: see `GET /api/v1/schemas/atomic-ticket/v1.json`.")

# --- Serializers -----------------------------------------------------------------------------


def requirement_key(ticket: Ticket) -> str | None:
    """`PAY-R3`, from the joined project and the list's `requirement_number` (or the joined
    requirement): no query per row."""
    if ticket.requirement_id is None:
        return None
    number = getattr(ticket, "requirement_number", None)
    if number is None:
        number = ticket.requirement.number  # type: ignore[union-attr]
    return keys.requirement_key(ticket.project.key, number)


class TicketSerializer(serializers.ModelSerializer):
    """A ticket as lists show it."""

    key = serializers.CharField(read_only=True, help_text="e.g. PAY-12")
    state = serializers.ChoiceField(source="status", choices=TicketStatus.choices,
                                    read_only=True)
    project = serializers.CharField(source="project.key", read_only=True)
    requirement = serializers.SerializerMethodField(
        help_text="The requirement's key (e.g. PAY-R3); null for a ticket without one.")

    class Meta:
        model = Ticket
        fields = ["key", "title", "state", "project", "requirement", "order", "complexity",
                  "attempt_count", "retries_left", "created_at", "status_changed_at"]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_requirement(self, ticket: Ticket) -> str | None:
        return requirement_key(ticket)


class CheckResultSerializer(serializers.ModelSerializer):
    command = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = CheckResult
        fields = ["index", "name", "command", "expected_exit_code", "exit_code", "passed",
                  "expectation", "duration_ms", "stdout_tail", "stderr_tail"]
        read_only_fields = fields


class TokensSerializer(serializers.Serializer):
    input = serializers.IntegerField(source="input_tokens", read_only=True)
    output = serializers.IntegerField(source="output_tokens", read_only=True)
    cache_write = serializers.IntegerField(source="cache_write_tokens", read_only=True)
    cache_read = serializers.IntegerField(source="cache_read_tokens", read_only=True)


class AttemptSerializer(serializers.ModelSerializer):
    executor = serializers.ChoiceField(choices=ExecutorKind.choices, read_only=True)
    outcome = serializers.ChoiceField(choices=AttemptOutcome.choices, read_only=True)
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True)
    tokens = TokensSerializer(source="*", read_only=True)
    cost = serializers.DecimalField(max_digits=14, decimal_places=6, read_only=True,
                                    coerce_to_string=True,
                                    help_text="Money as a decimal string, never a float.")
    checks = CheckResultSerializer(many=True, read_only=True)

    class Meta:
        model = Attempt
        fields = ["number", "executor", "endpoint", "model", "outcome", "started_at",
                  "finished_at", "duration_seconds", "tokens", "cost", "error", "diff",
                  "checks", "policy_version", "base_commit", "commit"]
        read_only_fields = fields


class TotalsSerializer(serializers.Serializer):
    attempts = serializers.IntegerField(read_only=True)
    cost = serializers.DecimalField(max_digits=20, decimal_places=6, read_only=True,
                                    coerce_to_string=True,
                                    help_text="What the ticket cost: every model call of it (coder "
                                              "attempts, escalation and audits), a decimal "
                                              "string.")
    tokens = serializers.IntegerField(read_only=True,
                                      help_text="All tokens of those calls, cache included.")
    input_tokens = serializers.IntegerField(read_only=True)
    output_tokens = serializers.IntegerField(read_only=True)
    cache_write_tokens = serializers.IntegerField(read_only=True)
    cache_read_tokens = serializers.IntegerField(read_only=True)


class TicketDetailSerializer(TicketSerializer):
    """One ticket: its spec, dependencies, attempts and what they cost."""

    spec = serializers.DictField(child=serializers.JSONField(), read_only=True,
                                 help_text=SPEC_HELP)
    dependencies = serializers.SerializerMethodField(
        help_text="Keys of the tickets this one waits for.")
    approved_by = serializers.EmailField(source="approved_by.email", read_only=True,
                                         allow_null=True, default=None)
    decided_by = serializers.EmailField(source="decided_by.email", read_only=True,
                                        allow_null=True, default=None)
    attempts = AttemptSerializer(many=True, read_only=True)
    totals = serializers.SerializerMethodField()
    delivery = serializers.SerializerMethodField(
        help_text="Where the accepted work went: branch, commit, pull request; null before "
                  "it is merged.")

    class Meta(TicketSerializer.Meta):
        fields = [*TicketSerializer.Meta.fields, "spec", "dependencies", "retry_budget",
                  "retries_left", "feedback", "block_reason", "approved_by", "approved_at",
                  "decided_by", "decided_at", "merged_commit", "merged_at", "attempts",
                  "totals", "delivery"]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_dependencies(self, ticket: Ticket) -> list[str]:
        return [dependency.key for dependency in ticket.dependencies.all()]

    @extend_schema_field(DeliverySerializer(allow_null=True))
    def get_delivery(self, ticket: Ticket) -> dict[str, Any] | None:
        return ticket_delivery(ticket) or None

    @extend_schema_field(TotalsSerializer)
    def get_totals(self, ticket: Ticket) -> dict[str, Any]:
        totals: Totals = self.context["totals"]
        return dict(TotalsSerializer(totals).data)


class SpecUpdateSerializer(StrictSerializer):
    spec = serializers.DictField(child=serializers.JSONField(),
                                 help_text=SPEC_HELP + " Replaces the whole spec.")


class RejectSerializer(StrictSerializer):
    feedback = StrictCharField(max_length=MAX_FEEDBACK, trim_whitespace=True,
                               help_text="What is wrong; the next attempt receives it.")


class CancelSerializer(StrictSerializer):
    reason = StrictCharField(max_length=MAX_CANCEL_REASON, required=False, allow_blank=True,
                             default="", help_text="Why, for the event log.")


class NoBodySerializer(StrictSerializer):
    """No fields: an action that takes no input still refuses unexpected ones."""


# --- Spec input ------------------------------------------------------------------------------

def storable_spec(value: Any) -> dict[str, Any]:
    """`value` if it is an object whose strings the database can store; else a 400.

    The schema allows any text in a title or objective, but PostgreSQL stores neither a NUL
    byte nor a lone surrogate; such input is refused here with its JSON path, before any
    service runs.
    """
    if not isinstance(value, dict):
        raise SpecInvalid([SpecError("$", "must be an object")])
    problems: list[SpecError] = []
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), value)]
    while stack and len(problems) < 20:
        parts, item = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if not _storable(str(key)):
                    problems.append(SpecError(json_path(parts), "has a property name with a "
                                                                "NUL byte or a lone surrogate"))
                else:
                    stack.append(((*parts, key), child))
        elif isinstance(item, list):
            stack.extend(((*parts, index), child) for index, child in enumerate(item))
        elif isinstance(item, str) and not _storable(item):
            problems.append(SpecError(json_path(parts),
                                      "must not contain a NUL byte or a lone surrogate"))
    if problems:
        raise SpecInvalid(sorted(problems, key=lambda problem: problem.path))
    return value


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --- Views -----------------------------------------------------------------------------------


class TicketEndpoint(OrgEndpoint):
    """Finds the ticket named by the URL among those the caller may see, or answers 404."""

    write_capability = Capability.WRITE_REQUIREMENTS

    def get_ticket(self, key: str) -> Ticket:
        ticket = ticket_by_key(membership=self.membership, key=key)
        if ticket is None:
            raise NotFound()
        return ticket

    def detail(self, ticket: Ticket) -> Response:
        loaded = ticket_detail(ticket=ticket)
        context = {"totals": ticket_totals(ticket=loaded)}
        return Response(TicketDetailSerializer(loaded, context=context).data)


@extend_schema(tags=["tickets"])
class TicketListView(OrgEndpoint):
    """Tickets of the projects the caller may see."""

    serializer_class = TicketSerializer
    pagination_class = CursorPagination
    filterset_class = TicketFilter
    filter_backends = [OrgFilterBackend]

    def get_queryset(self) -> QuerySet[Ticket]:
        if self.is_schema_generation():
            return Ticket.objects.none()
        return ticket_list(membership=self.membership)

    @extend_schema(operation_id="tickets_list",
                   responses={200: TicketSerializer(many=True), **errors(400, *READ_ERRORS)})
    def get(self, request: Request, org: str) -> Response:
        """Tickets you may see, newest first, filtered by state, project, requirement or
        title; `page_size` up to 200."""
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(TicketSerializer(page, many=True).data)


@extend_schema(tags=["tickets"])
class TicketDetailView(TicketEndpoint):
    serializer_class = TicketDetailSerializer

    @extend_schema(operation_id="tickets_retrieve",
                   responses={200: TicketDetailSerializer, **errors(*READ_ERRORS)})
    def get(self, request: Request, org: str, key: str) -> Response:
        """One ticket by key (e.g. PAY-12): spec, dependencies, attempts with their checks,
        and totals."""
        return self.detail(self.get_ticket(key))

    @extend_schema(operation_id="tickets_update_spec", request=SpecUpdateSerializer,
                   responses={200: TicketDetailSerializer, **errors(*WRITE_ERRORS, 409)})
    def patch(self, request: Request, org: str, key: str) -> Response:
        """Gate 1: replace a proposed ticket's spec. An invalid spec answers 400 with each
        problem's JSON path in `details.errors` and leaves the ticket unchanged."""
        self.require_write_capability()
        ticket = self.get_ticket(key)
        data = validated(SpecUpdateSerializer, request)
        updated = services.ticket_spec_update(ticket=ticket, spec=storable_spec(data["spec"]),
                                              actor=self.actor)
        return self.detail(updated)


class TicketActionView(TicketEndpoint):
    """A gate decision on one ticket: validate the body, call one service, show the ticket."""

    serializer_class = TicketDetailSerializer
    body: ClassVar[type[serializers.Serializer]] = NoBodySerializer

    def post(self, request: Request, org: str, key: str) -> Response:
        self.require_write_capability()
        ticket = self.get_ticket(key)
        data = validated(self.body, request)
        self.perform(ticket, data)
        return self.detail(ticket)

    def perform(self, ticket: Ticket, data: dict[str, Any]) -> None:
        raise NotImplementedError


ACTION_ERRORS = errors(*WRITE_ERRORS, 409)


@extend_schema(tags=["tickets"])
class TicketApproveView(TicketActionView):
    @extend_schema(operation_id="tickets_approve", request=None,
                   responses={200: TicketDetailSerializer, **ACTION_ERRORS})
    def post(self, request: Request, org: str, key: str) -> Response:
        """Gate 1: approve one proposed ticket."""
        return super().post(request, org, key)

    def perform(self, ticket: Ticket, data: dict[str, Any]) -> None:
        services.ticket_approve(ticket=ticket, actor=self.actor)


@extend_schema(tags=["tickets"])
class TicketAcceptView(TicketActionView):
    @extend_schema(operation_id="tickets_accept", request=None,
                   responses={200: TicketDetailSerializer, **ACTION_ERRORS})
    def post(self, request: Request, org: str, key: str) -> Response:
        """Gate 2: accept finished work; it is merged into the integration branch."""
        return super().post(request, org, key)

    def perform(self, ticket: Ticket, data: dict[str, Any]) -> None:
        services.ticket_accept(ticket=ticket, actor=self.actor)


@extend_schema(tags=["tickets"])
class TicketRejectView(TicketActionView):
    body = RejectSerializer

    @extend_schema(operation_id="tickets_reject", request=RejectSerializer,
                   responses={200: TicketDetailSerializer, **ACTION_ERRORS})
    def post(self, request: Request, org: str, key: str) -> Response:
        """Gate 2: reject finished work with feedback (required) for the next attempt."""
        return super().post(request, org, key)

    def perform(self, ticket: Ticket, data: dict[str, Any]) -> None:
        services.ticket_reject(ticket=ticket, actor=self.actor, feedback=data["feedback"])


@extend_schema(tags=["tickets"])
class TicketCancelView(TicketActionView):
    body = CancelSerializer

    @extend_schema(operation_id="tickets_cancel", request=CancelSerializer,
                   responses={200: TicketDetailSerializer, **ACTION_ERRORS})
    def post(self, request: Request, org: str, key: str) -> Response:
        """Cancel a ticket that is not finished; an optional reason goes to the event log."""
        return super().post(request, org, key)

    def perform(self, ticket: Ticket, data: dict[str, Any]) -> None:
        services.ticket_cancel(ticket=ticket, actor=self.actor, reason=data["reason"])


@extend_schema(tags=["tickets"])
class TicketRetryView(TicketActionView):
    @extend_schema(operation_id="tickets_retry", request=None,
                   responses={200: TicketDetailSerializer, **ACTION_ERRORS})
    def post(self, request: Request, org: str, key: str) -> Response:
        """Send a blocked ticket back to the queue with a fresh retry budget."""
        return super().post(request, org, key)

    def perform(self, ticket: Ticket, data: dict[str, Any]) -> None:
        services.ticket_retry(ticket=ticket, actor=self.actor)
