"""The event streams of a project and a ticket: in order, resumable after any seq, bounded."""

from __future__ import annotations

import pytest
from guardian.shortcuts import assign_perm

from haao.audit import SYSTEM, seal
from tests.factories import ProjectFactory, spec_example
from tests.fixtures import token_client
from tickets import services
from tickets.models import TicketStatus
from tickets.state import ticket_transition

pytestmark = pytest.mark.django_db

ORG = "/api/v1/orgs/acme"


@pytest.fixture
def history(cast):
    """A requirement decomposed into two tickets; the first approved and queued."""
    assign_perm("tickets.approve_project", cast.product_owner, cast.project)
    requirement = services.requirement_create(project=cast.project, actor=cast.product_owner,
                                              title="Invoices", text="Round totals.")
    first, second = services.requirement_propose(
        requirement=requirement, actor=SYSTEM,
        specs=[spec_example(title="One"), spec_example(title="Two")])
    services.ticket_approve(ticket=first, actor=cast.product_owner)
    ticket_transition(ticket=first, to=TicketStatus.QUEUED, actor=SYSTEM)
    # Noise the streams must leave out: another project and the organization itself.
    other = ProjectFactory(organization=cast.org, key="OPS")
    services.requirement_create(project=other, actor=cast.admin, title="Ops", text="x")
    seal(cast.org.pk)  # what the writers' commits do
    return first, second


def test_a_project_stream_lists_its_events_oldest_first(cast, history) -> None:
    client = token_client(cast.org, cast.manager, ["read"])
    body = client.get(f"{ORG}/projects/PAY/events/").json()
    types = [event["type"] for event in body["results"]]
    assert types == ["requirement.created", "ticket.proposed", "ticket.proposed",
                     "requirement.proposed", "ticket.transition", "ticket.transition"]
    seqs = [event["seq"] for event in body["results"]]
    assert seqs == sorted(seqs)
    assert body["next_after"] == seqs[-1] and body["has_more"] is False


def test_a_ticket_stream_lists_only_that_tickets_events(cast, history) -> None:
    first, _second = history
    client = token_client(cast.org, cast.member, ["read"])
    assign_perm("tickets.view_project", cast.member, cast.project)
    body = client.get(f"{ORG}/tickets/{first.key}/events/").json()
    assert [(e["type"], e["data"].get("to")) for e in body["results"]] == [
        ("ticket.proposed", None), ("ticket.transition", "approved"),
        ("ticket.transition", "queued")]
    assert {e["target_label"] for e in body["results"]} == {first.key}
    assert body["results"][1]["actor_label"] == cast.product_owner.email
    assert body["results"][2]["actor_type"] == "system"


def test_a_client_resumes_after_the_last_seq_it_saw_without_gaps_or_repeats(
    cast, history,
) -> None:
    client = token_client(cast.org, cast.admin, ["read"])
    everything = client.get(f"{ORG}/projects/PAY/events/").json()["results"]
    seen, after = [], 0
    while True:
        page = client.get(f"{ORG}/projects/PAY/events/", {"after": after, "limit": 2}).json()
        seen += [event["seq"] for event in page["results"]]
        after = page["next_after"]
        if not page["has_more"]:
            break
    assert seen == [event["seq"] for event in everything]
    empty = client.get(f"{ORG}/projects/PAY/events/", {"after": after}).json()
    assert (empty["results"], empty["next_after"], empty["has_more"]) == ([], after, False)


@pytest.mark.parametrize("query", [{"after": "-1"}, {"after": "abc"}, {"after": "1e400"},
                                   {"after": str(2**70)}, {"limit": "0"}, {"limit": "501"},
                                   {"limit": "\x00"}])
def test_bad_after_or_limit_answers_400(cast, history, query) -> None:
    client = token_client(cast.org, cast.admin, ["read"])
    response = client.get(f"{ORG}/projects/PAY/events/", query)
    assert response.status_code == 400
    assert set(response.json()["error"]["details"]) == set(query)


def test_streams_of_hidden_or_foreign_projects_answer_404(cast, history) -> None:
    first, _ = history
    member = token_client(cast.org, cast.member, ["read"])
    assert member.get(f"{ORG}/projects/PAY/events/").status_code == 404
    assert member.get(f"{ORG}/tickets/{first.key}/events/").status_code == 404
    outsider = token_client(cast.other_org, cast.outsider, ["admin"])
    assert outsider.get(f"{ORG}/projects/PAY/events/").status_code == 404
    assert outsider.get(f"/api/v1/orgs/globex/tickets/{first.key}/events/").status_code == 404
