"""The requirement page follows its tickets live: when the last ticket is accepted and merged
the status badge turns to Delivered without a reload, and the change is announced."""

from __future__ import annotations

import pytest
from guardian.shortcuts import assign_perm

from haao.audit import SYSTEM
from haao.models import AuditEvent
from tests.browser import LIVE_STUB, signed_in
from tests.factories import spec_example
from tickets import services
from tickets.models import Requirement, Ticket
from tickets.services.engine import ticket_merged
from tickets.state import ticket_transition

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_status_badge_follows_the_tickets_to_delivered(page, live_server, cast) -> None:
    po = cast.product_owner
    assign_perm("tickets.approve_project", po, cast.project)
    requirement = services.requirement_create(project=cast.project, actor=po, title="Refunds",
                                              text="Refund card payments.")
    services.requirement_propose(requirement=requirement, actor=SYSTEM,
                                 specs=[spec_example(title="Refund endpoint")])
    requirement.refresh_from_db()
    [ticket] = services.requirement_approve(requirement=requirement, actor=po)
    ticket = Ticket.objects.select_related("project__organization").get(pk=ticket.pk)
    for to in ("queued", "running", "awaiting_acceptance"):
        ticket_transition(ticket=ticket, to=to, actor=SYSTEM)

    page.add_init_script(LIVE_STUB)
    signed_in(page, live_server, po)
    page.goto(f"{live_server.url}/o/acme/requirements/{requirement.key}/")
    page.wait_for_function("window.__live && window.__live.subs.length === 1")
    status = page.locator("#requirement-status")
    assert status.locator(".badge").inner_text() == "Approved"
    assert "0 of 1 ticket accepted" in status.inner_text()

    ticket = services.ticket_accept(ticket=ticket, actor=po)
    assert ticket_merged(ticket=ticket, commit="a" * 40)
    assert Requirement.objects.get(pk=requirement.pk).status == "delivered"
    last = AuditEvent.objects.for_org(cast.org).order_by("-seq")[0]
    page.evaluate("e => window.__live.subs[0].options.onEvent(e)", {
        "seq": last.seq, "created_at": "2026-01-31T14:00:00+00:00", "type": "ticket.merged",
        "actor_type": "system", "actor_label": "HAAO", "target_type": "tickets.ticket",
        "target_label": ticket.key, "data": {"commit": "a" * 40}})
    page.wait_for_function(
        "document.querySelector('#requirement-status .badge').textContent.trim() === 'Delivered'")
    assert page.locator("#requirement-page").get_attribute("data-status") == "delivered"
    assert "0 of 1" not in status.inner_text()
    page.wait_for_function(
        f"document.getElementById('live-region').textContent.includes('{requirement.key} is "
        "Delivered now')")
