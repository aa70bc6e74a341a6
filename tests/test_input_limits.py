"""Text a person submits over its limit is refused with the limit named, never cut."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from guardian.shortcuts import assign_perm

from haao.errors import ApplicationError
from haao.models import AuditEvent
from tests.factories import TicketFactory
from tests.fixtures import token_client
from tickets import services
from tickets.models import Requirement, Ticket

pytestmark = pytest.mark.django_db


def test_the_requirement_form_gives_the_browser_no_limit_that_would_cut_a_paste(cast) -> None:
    client = Client()
    client.force_login(cast.admin)
    html = client.get("/o/acme/projects/PAY/").content.decode()
    fields = re.findall(r'<(?:input|textarea)[^>]*name="(?:title|text)"[^>]*>', html)
    assert len(fields) == 2 and not any("maxlength" in field for field in fields), fields


def test_an_api_requirement_with_a_long_title_is_refused_naming_the_limit(cast) -> None:
    api = token_client(cast.org, cast.admin, ["write"])
    response = api.post("/api/v1/orgs/acme/projects/PAY/requirements/",
                        {"title": "t" * 250, "text": "Round totals."}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "title: At most 200 characters (got 250)."
    assert not Requirement.objects.exists()


def test_a_cancel_reason_over_the_limit_is_refused_not_cut(cast) -> None:
    ticket = TicketFactory(requirement__project=cast.project, status="queued")
    api = token_client(cast.org, cast.admin, ["write"])
    response = api.post(f"/api/v1/orgs/acme/tickets/{ticket.key}/cancel/",
                        {"reason": "r" * 1001}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "reason: At most 1000 characters (got 1001)."
    # The service refuses it as well, whoever calls it.
    refusal = r"The reason is at most 1000 characters \(got 1001\)"
    with pytest.raises(ApplicationError, match=refusal):
        services.ticket_cancel(ticket=ticket, actor=cast.admin, reason="r" * 1001)
    assert Ticket.objects.get(pk=ticket.pk).status == "queued"
    services.ticket_cancel(ticket=ticket, actor=cast.admin, reason="r" * 1000)
    event = AuditEvent.objects.for_org(cast.org).filter(type="ticket.transition").last()
    assert event.data["reason"] == "r" * 1000


def test_rejection_feedback_over_the_limit_comes_back_on_its_field(cast) -> None:
    assign_perm("tickets.approve_project", cast.product_owner, cast.project)
    ticket = TicketFactory(requirement__project=cast.project, status="awaiting_acceptance")
    client = Client()
    client.force_login(cast.product_owner)
    response = client.post(f"/o/acme/tickets/{ticket.key}/reject/", {"feedback": "f" * 10_001})
    assert response.status_code == 400
    assert "Feedback is at most 10000 characters (got 10001)." in response.content.decode()
    assert Ticket.objects.get(pk=ticket.pk).status == "awaiting_acceptance"
