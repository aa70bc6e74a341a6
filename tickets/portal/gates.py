"""Portal pages of the two human gates: a requirement's proposal (Gate 1) and a ticket (Gate 2).

Reads go through tickets.selectors, every POST calls one service of tickets.services (the
same ones the REST API calls). Bad input re-renders the page with a 400 and the problem next
to the field it concerns; nothing is stored. Another organization's or an invisible project's
requirement or ticket is a 404, a read-only role posting is a 403.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Sum
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect

from accounts.roles import Capability
from agents.delivery.branches import branch_name_for
from agents.delivery.selectors import requirement_delivery, ticket_delivery
from agents.engine.estimates import CostEstimate, ticket_cost_estimates
from agents.models import CallRole, ModelCall
from agents.preflight import base_failure
from agents.selectors import ticket_totals
from haao.errors import ApplicationError, Forbidden, NotFound
from haao.views import OrgPage
from tickets import services
from tickets.api.tickets import storable_spec
from tickets.models import (
    Attempt,
    AttemptOutcome,
    Project,
    Requirement,
    RequirementStatus,
    Ticket,
    TicketStatus,
)
from tickets.portal.gate_forms import CancelForm, MoveForm, RejectForm, SpecFields, SpecForm
from tickets.portal.progress import Progress
from tickets.selectors import (
    StreamEvent,
    can_approve_in,
    last_project_seq,
    latest_audit,
    requirement_by_key,
    ticket_by_key,
    ticket_detail,
    ticket_events,
)
from tickets.spec import SpecError, SpecInvalid
from tickets.state import TRANSITIONS

# The timeline is read in pages of this size until the newest event (the socket resumes
# after the last one shown, so nothing is skipped either way).
EVENTS_PAGE = 1000
EVENTS_MAX_PAGES = 10

# A new ticket's editor starts from this skeleton: every field of the schema, to fill in.
NEW_SPEC: dict[str, Any] = {
    "schema_version": "1",
    "title": "",
    "objective": "",
    "code_context": [],
    "allowed_paths": [],
    "constraints": [],
    "definition_of_done": [{"name": "tests", "command": ["pytest", "-q"],
                            "timeout_seconds": 120}],
    "dependencies": [],
    "complexity": 2,
}


def _raise_access(error: ApplicationError) -> None:
    """Forbidden and not-found domain errors become the portal's 403 and 404 pages."""
    if isinstance(error, Forbidden):
        raise PermissionDenied(error.message)
    if isinstance(error, NotFound):
        raise Http404("Not found.")


def _spec_problems(error: ApplicationError) -> list[SpecError]:
    """A service's refusal of a spec as a list of (JSON path, message) problems."""
    if isinstance(error, SpecInvalid):
        return list(error.errors)
    paths = [name for name in error.details if isinstance(name, str)]
    return [SpecError(f"$.{paths[0]}" if paths else "$", error.message)]


def project_url(org_slug: str, project: Project) -> str:
    return f"/o/{org_slug}/projects/{project.key}/"


class _GatePage(OrgPage):
    """Shared by both gates: who may decide in a project, and the page's own URL."""

    def may_decide(self, project: Project) -> bool:
        return can_approve_in(membership=self.membership, project=project)

    def require_decider(self, project: Project) -> None:
        if not self.may_decide(project):
            raise PermissionDenied("You may not decide on this project's tickets.")


# --- Gate 1: the requirement page ------------------------------------------------------------

@dataclass
class Card:
    """One proposed ticket as Gate 1 shows it: its spec as fields and as JSON, any refused
    save of either, and what one attempt at it is expected to cost."""

    ticket: Ticket
    form: SpecForm
    fields: SpecFields
    estimate: CostEstimate
    problems: list[SpecError] = field(default_factory=list)
    first: bool = False
    last: bool = False

    @property
    def json_open(self) -> bool:
        return bool(self.problems or self.form.errors)


class _RequirementPage(_GatePage):
    template_name = "tickets/requirement.html"

    def load(self, key: str) -> Requirement:
        requirement = requirement_by_key(membership=self.membership, key=key)
        if requirement is None:
            raise Http404("Not found.")
        return requirement

    def page_url(self, requirement: Requirement) -> str:
        return f"/o/{self.org.slug}/requirements/{requirement.key}/"

    def page(self, requirement: Requirement, status: int = 200, *,
             edited: tuple[str, SpecForm, list[SpecError]] | None = None,
             edited_fields: tuple[str, SpecFields] | None = None,
             add_form: SpecForm | None = None, add_problems: list[SpecError] | None = None,
             error: str = "") -> HttpResponse:
        tickets = list(requirement.tickets.all())
        shown = [t for t in tickets if t.status != TicketStatus.CANCELLED]
        estimates = ticket_cost_estimates(organization=self.org,
                                          specs=[t.spec for t in shown])
        cards = []
        for position, ticket in enumerate(shown):
            card = Card(ticket=ticket, form=SpecForm(initial={
                "spec": json.dumps(ticket.spec, indent=2, ensure_ascii=False)}),
                fields=SpecFields.of(ticket.spec, prefix=ticket.key),
                estimate=estimates[position],
                first=position == 0, last=position == len(shown) - 1)
            if edited is not None and edited[0] == ticket.key:
                card.form, card.problems = edited[1], edited[2]
            if edited_fields is not None and edited_fields[0] == ticket.key:
                card.fields = edited_fields[1]
            cards.append(card)
        priced = [e.cost for e in estimates if e.cost is not None]
        may_decide = self.may_decide(requirement.project)
        editable = may_decide and requirement.status == RequirementStatus.PROPOSED
        last_seq = last_project_seq(project=requirement.project)
        return self.render(
            status, requirement=requirement, project=requirement.project, cards=cards,
            estimated_total=sum(priced, Decimal("0")) if priced else None,
            delivery=requirement_delivery(requirement),
            can_deliver=self.can(Capability.MANAGE_PROJECTS),
            dropped=[t for t in tickets if t.status == TicketStatus.CANCELLED],
            ticket_keys=[t.key for t in tickets],
            accepted_count=sum(t.status == TicketStatus.ACCEPTED for t in shown),
            may_decide=may_decide, editable=editable, error=error,
            add_form=add_form or SpecForm(initial={"spec": json.dumps(NEW_SPEC, indent=2)}),
            add_problems=add_problems or [], add_open=add_form is not None,
            page_url=self.page_url(requirement),
            project_url=project_url(self.org.slug, requirement.project),
            last_seq=last_seq,
            base_failure=(base_failure(requirement.project)
                          if requirement.status == RequirementStatus.PROPOSED else None),
            stream=f"ws/o/{self.org.slug}/projects/{requirement.project.key}/events/")

    def ticket_of(self, requirement: Requirement, ticket_key: str) -> Ticket:
        for ticket in requirement.tickets.all():
            if ticket.key == ticket_key:
                return ticket
        raise Http404("Not found.")

    def refused(self, requirement: Requirement, error: ApplicationError) -> HttpResponse:
        _raise_access(error)
        return self.page(requirement, error.status, error=error.message)


class RequirementView(_RequirementPage):
    """Gate 1: the requirement and its proposed tickets, editable by who may decide."""

    def get(self, request: HttpRequest, key: str) -> HttpResponse:
        return self.page(self.load(key))


class RequirementSpecView(_RequirementPage):
    """Save one proposed ticket's spec; a refused spec comes back on its card with a 400."""

    def post(self, request: HttpRequest, key: str, ticket_key: str) -> HttpResponse:
        requirement = self.load(key)
        self.require_decider(requirement.project)
        ticket = self.ticket_of(requirement, ticket_key)
        form = SpecForm(request.POST)
        if not form.is_valid():
            return self.page(requirement, 400, edited=(ticket.key, form, []))
        try:
            services.ticket_spec_update(ticket=ticket,
                                        spec=storable_spec(form.cleaned_data["spec"]),
                                        actor=self.user)
        except ApplicationError as error:
            _raise_access(error)
            return self.page(requirement, error.status,
                             edited=(ticket.key, form, _spec_problems(error)))
        messages.success(request, f"{ticket.key} saved.")
        return redirect(f"{self.page_url(requirement)}#ticket-{ticket.key}")


class RequirementFieldsView(_RequirementPage):
    """Save a proposed ticket's title, objective, constraints, paths and checks from fields;
    the spec goes through the same service and validation as the JSON editor's."""

    def post(self, request: HttpRequest, key: str, ticket_key: str) -> HttpResponse:
        requirement = self.load(key)
        self.require_decider(requirement.project)
        ticket = self.ticket_of(requirement, ticket_key)
        fields = SpecFields.bound(request.POST, prefix=ticket.key)
        if not fields.is_valid():
            return self.page(requirement, 400, edited_fields=(ticket.key, fields))
        try:
            services.ticket_spec_update(ticket=ticket,
                                        spec=storable_spec(fields.spec(ticket.spec)),
                                        actor=self.user)
        except ApplicationError as error:
            _raise_access(error)
            if not isinstance(error, SpecInvalid) and not error.details:
                return self.page(requirement, error.status, error=error.message)
            fields.refuse(_spec_problems(error))
            return self.page(requirement, error.status, edited_fields=(ticket.key, fields))
        messages.success(request, f"{ticket.key} saved.")
        return redirect(f"{self.page_url(requirement)}#ticket-{ticket.key}")


class RequirementDropView(_RequirementPage):
    """Drop a proposed ticket: it is cancelled and approval leaves it out."""

    def post(self, request: HttpRequest, key: str, ticket_key: str) -> HttpResponse:
        requirement = self.load(key)
        self.require_decider(requirement.project)
        ticket = self.ticket_of(requirement, ticket_key)
        if requirement.status != RequirementStatus.PROPOSED:
            return self.page(requirement, 409,
                             error="Tickets can be dropped only while the requirement awaits "
                                   "approval.")
        try:
            services.ticket_cancel(ticket=ticket, actor=self.user, reason="Dropped at Gate 1")
        except ApplicationError as error:
            return self.refused(requirement, error)
        messages.success(request, f"{ticket.key} dropped.")
        return redirect(self.page_url(requirement))


class RequirementMoveView(_RequirementPage):
    """Move a proposed ticket one place up or down among the tickets still proposed."""

    def post(self, request: HttpRequest, key: str, ticket_key: str) -> HttpResponse:
        requirement = self.load(key)
        self.require_decider(requirement.project)
        ticket = self.ticket_of(requirement, ticket_key)
        form = MoveForm(request.POST)
        if not form.is_valid():
            return self.page(requirement, 400,
                             error="Choose a direction: up or down.")
        keys = [t.key for t in requirement.tickets.all()]
        shown = [t.key for t in requirement.tickets.all() if t.status != TicketStatus.CANCELLED]
        position = shown.index(ticket.key) if ticket.key in shown else -1
        step = -1 if form.cleaned_data["direction"] == "up" else 1
        if position < 0 or not 0 <= position + step < len(shown):
            return redirect(f"{self.page_url(requirement)}#ticket-{ticket.key}")
        neighbour = shown[position + step]
        a, b = keys.index(ticket.key), keys.index(neighbour)
        keys[a], keys[b] = keys[b], keys[a]
        try:
            services.tickets_reorder(requirement=requirement, keys=keys, actor=self.user)
        except ApplicationError as error:
            return self.refused(requirement, error)
        return redirect(f"{self.page_url(requirement)}#ticket-{ticket.key}")


class RequirementAddView(_RequirementPage):
    """Add a ticket by hand; a refused spec comes back in the "Add ticket" editor."""

    def post(self, request: HttpRequest, key: str) -> HttpResponse:
        requirement = self.load(key)
        self.require_decider(requirement.project)
        form = SpecForm(request.POST)
        if not form.is_valid():
            return self.page(requirement, 400, add_form=form)
        try:
            ticket = services.ticket_add(requirement=requirement,
                                         spec=storable_spec(form.cleaned_data["spec"]),
                                         actor=self.user)
        except ApplicationError as error:
            _raise_access(error)
            return self.page(requirement, error.status, add_form=form,
                             add_problems=_spec_problems(error))
        messages.success(request, f"{ticket.key} added.")
        return redirect(f"{self.page_url(requirement)}#ticket-{ticket.key}")


class RequirementApproveView(_RequirementPage):
    """Gate 1: approve every proposed ticket; then the project's board shows them."""

    def post(self, request: HttpRequest, key: str) -> HttpResponse:
        requirement = self.load(key)
        self.require_decider(requirement.project)
        try:
            approved = services.requirement_approve(requirement=requirement, actor=self.user)
        except ApplicationError as error:
            return self.refused(requirement, error)
        messages.success(request, f"{requirement.key} approved: {len(approved)} "
                                  f"ticket{'s' if len(approved) != 1 else ''} join the queue.")
        return redirect(project_url(self.org.slug, requirement.project))


# --- Gate 2: the ticket page -----------------------------------------------------------------

@dataclass(frozen=True)
class CallRow:
    """Model calls of one role on one side (local or cloud) for this ticket."""

    role: str
    role_label: str
    is_cloud: bool
    calls: int
    input_tokens: int
    output_tokens: int
    cache_tokens: int
    cost: Decimal

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_tokens


def _events(ticket: Ticket) -> list[StreamEvent]:
    events: list[StreamEvent] = []
    after = 0
    for _ in range(EVENTS_MAX_PAGES):
        page = ticket_events(ticket=ticket, after=after, limit=EVENTS_PAGE)
        events.extend(page)
        if len(page) < EVENTS_PAGE:
            break
        after = page[-1].seq or 0
    return events


def _progress(events: list[StreamEvent], attempts: list[Attempt]) -> dict[int, Progress]:
    running = {a.number for a in attempts if a.outcome == AttemptOutcome.RUNNING}
    found = {number: Progress(attempt=number) for number in running}
    for event in events:
        number = event.data.get("attempt") if isinstance(event.data, dict) else None
        if number not in found:
            continue
        found[number].apply(event.type, event.data)
    return found


def _calls(ticket: Ticket) -> list[CallRow]:
    labels = dict(CallRole.choices)
    rows = (ModelCall.objects.for_org(ticket.project.organization).filter(ticket=ticket)
            .values("role", "is_cloud")
            .annotate(calls=Count("pk"),
                      input_tokens=Coalesce(Sum("input_tokens"), 0),
                      output_tokens=Coalesce(Sum("output_tokens"), 0),
                      cache_tokens=Coalesce(Sum("cache_write_tokens"), 0)
                      + Coalesce(Sum("cache_read_tokens"), 0),
                      cost=Coalesce(Sum("cost"), Decimal("0")))
            .order_by("is_cloud", "role"))
    return [CallRow(role=row["role"], role_label=labels.get(row["role"], row["role"]),
                    is_cloud=row["is_cloud"], calls=row["calls"],
                    input_tokens=row["input_tokens"], output_tokens=row["output_tokens"],
                    cache_tokens=row["cache_tokens"], cost=Decimal(row["cost"]))
            for row in rows]


class _TicketPage(_GatePage):
    template_name = "tickets/ticket.html"

    def load(self, key: str) -> Ticket:
        ticket = ticket_by_key(membership=self.membership, key=key)
        if ticket is None:
            raise Http404("Not found.")
        return ticket

    def page_url(self, ticket: Ticket) -> str:
        return f"/o/{self.org.slug}/tickets/{ticket.key}/"

    def page(self, ticket: Ticket, status: int = 200, *, reject_form: RejectForm | None = None,
             cancel_form: CancelForm | None = None, error: str = "") -> HttpResponse:
        loaded = ticket_detail(ticket=ticket)
        attempts = list(loaded.attempts.all())
        events = _events(loaded)
        calls = _calls(loaded)
        progress = _progress(events, attempts)
        totals = ticket_totals(ticket=loaded)
        may_decide = self.may_decide(loaded.project)
        state = loaded.status
        requirement = loaded.requirement
        latest = attempts[-1] if attempts else None
        return self.render(
            status, ticket=loaded, project=loaded.project, attempts=attempts,
            latest=latest,
            audit=latest_audit(events, attempt=latest.number) if latest is not None else None,
            attempt_rows=[(a, progress.get(a.number)) for a in reversed(attempts)],
            timeline=[e for e in events if e.type != "attempt.tokens"],
            last_seq=events[-1].seq if events else 0,
            refusals=[e for e in events if e.type == "guardrail.refused"],
            totals=totals,
            # What the attempts' own figures leave out: audits, and calls of a running attempt.
            other_cost=totals.cost - sum((a.cost for a in attempts), Decimal("0")),
            calls=calls,
            calls_local=sum((row.cost for row in calls if not row.is_cloud), Decimal("0")),
            calls_cloud=sum((row.cost for row in calls if row.is_cloud), Decimal("0")),
            may_decide=may_decide,
            can_gate2=may_decide and state == TicketStatus.AWAITING_ACCEPTANCE,
            can_retry=may_decide and state == TicketStatus.BLOCKED,
            can_cancel=may_decide and (state, TicketStatus.CANCELLED) in TRANSITIONS,
            reject_form=reject_form or RejectForm(), cancel_form=cancel_form or CancelForm(),
            reject_open=reject_form is not None, cancel_open=cancel_form is not None,
            error=error, page_url=self.page_url(loaded),
            project_url=project_url(self.org.slug, loaded.project),
            requirement_url=(f"/o/{self.org.slug}/requirements/{requirement.key}/"
                             if requirement is not None else ""),
            stream=f"ws/o/{self.org.slug}/tickets/{loaded.key}/events/",
            delivery=ticket_delivery(loaded),
            can_deliver=self.can(Capability.MANAGE_PROJECTS))

    def decided(self, ticket: Ticket, text: str) -> HttpResponse:
        messages.success(self.request, text)
        return redirect(self.page_url(ticket))

    def refused(self, ticket: Ticket, error: ApplicationError, **forms: Any) -> HttpResponse:
        _raise_access(error)
        return self.page(ticket, error.status, error=error.message, **forms)


class TicketView(_TicketPage):
    """Gate 2: a ticket's spec, timeline, attempts, checks, diff and costs."""

    def get(self, request: HttpRequest, key: str) -> HttpResponse:
        return self.page(self.load(key))


class TicketAcceptView(_TicketPage):
    def post(self, request: HttpRequest, key: str) -> HttpResponse:
        ticket = self.load(key)
        self.require_decider(ticket.project)
        try:
            services.ticket_accept(ticket=ticket, actor=self.user)
        except ApplicationError as error:
            return self.refused(ticket, error)
        return self.decided(ticket, f"{ticket.key} accepted; HAAO merges it into "
                                    f"{branch_name_for(ticket)[0]}.")


class TicketRejectView(_TicketPage):
    def post(self, request: HttpRequest, key: str) -> HttpResponse:
        ticket = self.load(key)
        self.require_decider(ticket.project)
        form = RejectForm(request.POST)
        if not form.is_valid():
            return self.page(ticket, 400, reject_form=form)
        try:
            services.ticket_reject(ticket=ticket, actor=self.user,
                                   feedback=form.cleaned_data["feedback"])
        except ApplicationError as error:
            if "feedback" in error.details and error.status == 400:
                form.add_error("feedback", error.message)
                return self.page(ticket, 400, reject_form=form)
            return self.refused(ticket, error, reject_form=form)
        return self.decided(ticket, f"{ticket.key} rejected; the next attempt gets your "
                                    "feedback.")


class TicketRetryView(_TicketPage):
    def post(self, request: HttpRequest, key: str) -> HttpResponse:
        ticket = self.load(key)
        self.require_decider(ticket.project)
        try:
            services.ticket_retry(ticket=ticket, actor=self.user)
        except ApplicationError as error:
            return self.refused(ticket, error)
        return self.decided(ticket, f"{ticket.key} is back in the queue with a fresh budget.")


class TicketCancelView(_TicketPage):
    def post(self, request: HttpRequest, key: str) -> HttpResponse:
        ticket = self.load(key)
        self.require_decider(ticket.project)
        form = CancelForm(request.POST)
        if not form.is_valid():
            return self.page(ticket, 400, cancel_form=form)
        try:
            services.ticket_cancel(ticket=ticket, actor=self.user,
                                   reason=form.cleaned_data["reason"])
        except ApplicationError as error:
            return self.refused(ticket, error, cancel_form=form)
        return self.decided(ticket, f"{ticket.key} cancelled.")
