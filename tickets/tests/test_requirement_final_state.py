"""A requirement reaches its final state when its tickets are done, whatever the delivery."""

from __future__ import annotations

from typing import Any

import pytest
from guardian.shortcuts import assign_perm

from haao.audit import SYSTEM
from haao.models import AuditEvent
from tests.factories import spec_example
from tickets import services
from tickets.models import DeliveryMode, Requirement, Ticket, TicketStatus
from tickets.services.engine import ticket_merged
from tickets.state import ticket_transition

pytestmark = pytest.mark.django_db


def approved(cast: Any, titles: tuple[str, ...] = ("First", "Second")) -> list[Ticket]:
    po = cast.product_owner
    assign_perm("tickets.approve_project", po, cast.project)
    requirement = services.requirement_create(project=cast.project, actor=po,
                                              title="Invoices", text="Round invoice totals.")
    services.requirement_propose(requirement=requirement, actor=SYSTEM,
                                 specs=[spec_example(title=title) for title in titles])
    requirement.refresh_from_db()
    return services.requirement_approve(requirement=requirement, actor=po)


def accept(cast: Any, ticket: Ticket) -> Ticket:
    ticket = Ticket.objects.select_related("project__organization").get(pk=ticket.pk)
    for to in ("queued", "running", "awaiting_acceptance"):
        ticket_transition(ticket=ticket, to=to, actor=SYSTEM)
    return services.ticket_accept(ticket=ticket, actor=cast.product_owner)


def status_of(ticket: Ticket) -> str:
    return Requirement.objects.get(pk=ticket.requirement_id).status


def test_work_kept_in_haao_is_delivered_when_the_last_ticket_is_merged(
        cast, django_capture_on_commit_callbacks) -> None:
    first, second = approved(cast)
    first = accept(cast, first)
    with django_capture_on_commit_callbacks(execute=True):
        services.ticket_cancel(ticket=Ticket.objects.get(pk=second.pk),
                               actor=cast.product_owner, reason="not needed")
    assert status_of(first) == "approved", "accepted work not merged yet is not delivered"
    assert not AuditEvent.objects.for_org(cast.org).filter(type="requirement.delivered")

    assert ticket_merged(ticket=first, commit="a" * 40)
    assert status_of(first) == "delivered"
    event = AuditEvent.objects.for_org(cast.org).get(type="requirement.delivered")
    assert event.target_label == Requirement.objects.get(pk=first.requirement_id).key
    assert event.data["reason"] == "every ticket was accepted or cancelled"


@pytest.mark.parametrize("delivery", [DeliveryMode.NONE, DeliveryMode.BRANCH])
def test_a_cancelled_last_ticket_delivers_the_merged_rest(
        cast, django_capture_on_commit_callbacks, delivery) -> None:
    cast.project.delivery = delivery
    cast.project.save(update_fields=["delivery"])
    first, second = approved(cast)
    ticket_merged(ticket=accept(cast, first), commit="a" * 40)
    with django_capture_on_commit_callbacks(execute=True):
        services.ticket_cancel(ticket=Ticket.objects.get(pk=second.pk),
                               actor=cast.product_owner)
    assert status_of(first) == "delivered"


def test_a_requirement_whose_tickets_were_all_cancelled_is_cancelled(
        cast, django_capture_on_commit_callbacks) -> None:
    tickets = approved(cast)
    with django_capture_on_commit_callbacks(execute=True):
        for ticket in tickets:
            services.ticket_cancel(ticket=Ticket.objects.get(pk=ticket.pk),
                                   actor=cast.product_owner)
    assert status_of(tickets[0]) == "cancelled"
    event = AuditEvent.objects.for_org(cast.org).get(type="requirement.cancelled")
    assert event.data["reason"] == "every ticket was cancelled"


def test_a_pull_request_project_waits_for_the_merge_of_its_pull_request(cast) -> None:
    cast.project.delivery = DeliveryMode.PULL_REQUEST
    cast.project.save(update_fields=["delivery"])
    [ticket] = approved(cast, ("Only",))
    ticket_merged(ticket=accept(cast, ticket), commit="a" * 40)
    assert Ticket.objects.get(pk=ticket.pk).status == TicketStatus.ACCEPTED
    assert status_of(ticket) == "approved"
    requirement = Requirement.objects.get(pk=ticket.requirement_id)
    assert services.requirement_deliver(requirement=requirement, branch="haao/x",
                                        pull_request="http://forge/pr/1", commit="a" * 40)
    assert status_of(ticket) == "delivered"
