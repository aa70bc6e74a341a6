"""Requirements and Gate 1 through the API: submitting, reading with tickets, reordering,
adding a ticket by hand and approving, per role and grant."""

from __future__ import annotations

import pytest
from guardian.shortcuts import assign_perm

from haao.audit import SYSTEM
from haao.models import AuditEvent
from tests.factories import ProjectFactory, spec_example
from tests.fixtures import last_event, token_client
from tickets import services
from tickets.models import Requirement, Ticket

pytestmark = pytest.mark.django_db

ORG = "/api/v1/orgs/acme"


@pytest.fixture
def po(cast):
    assign_perm("tickets.approve_project", cast.product_owner, cast.project)
    return cast.product_owner


def proposed(cast, po, count: int = 2) -> tuple[Requirement, list[Ticket]]:
    """A requirement the Tech Lead has decomposed into `count` proposed tickets."""
    requirement = services.requirement_create(project=cast.project, actor=po,
                                              title="Invoices", text="Round invoice totals.")
    tickets = services.requirement_propose(
        requirement=requirement, actor=SYSTEM,
        specs=[spec_example(title=f"Step {n}") for n in range(1, count + 1)])
    requirement.refresh_from_db()
    return requirement, tickets


# --- Submitting ------------------------------------------------------------------------------

def test_a_granted_product_owner_submits_a_requirement_and_it_is_audited(cast, po) -> None:
    client = token_client(cast.org, po, ["write"])
    response = client.post(f"{ORG}/projects/PAY/requirements/",
                           {"title": "Invoices", "text": "Round totals to cents."},
                           format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["key"], body["status"], body["created_by"]) == (
        "PAY-R1", "decomposing", po.email)
    requirement = Requirement.objects.for_org(cast.org).get()
    assert (requirement.title, requirement.created_by) == ("Invoices", po)
    event = last_event(cast.org)
    assert (event.type, event.target_label, event.actor_user) == (
        "requirement.created", "PAY-R1", po)


def test_an_admin_submits_without_a_grant(cast) -> None:
    client = token_client(cast.org, cast.admin, ["write"])
    response = client.post(f"{ORG}/projects/PAY/requirements/", {"title": "t", "text": "x"},
                           format="json")
    assert response.status_code == 201


@pytest.mark.parametrize("role", ["manager", "member"])
def test_managers_and_members_cannot_submit(cast, role) -> None:
    user = getattr(cast, role)
    assign_perm("tickets.view_project", user, cast.project)
    client = token_client(cast.org, user, ["write"])
    response = client.post(f"{ORG}/projects/PAY/requirements/", {"title": "t", "text": "x"},
                           format="json")
    assert response.status_code == 403
    assert not Requirement.objects.exists()


def test_a_product_owner_with_only_a_view_grant_gets_403_and_without_any_404(cast) -> None:
    client = token_client(cast.org, cast.product_owner, ["write"])
    body = {"title": "t", "text": "x"}
    assert client.post(f"{ORG}/projects/PAY/requirements/", body,
                       format="json").status_code == 404
    assign_perm("tickets.view_project", cast.product_owner, cast.project)
    response = client.post(f"{ORG}/projects/PAY/requirements/", body, format="json")
    assert response.status_code == 403
    assert not Requirement.objects.exists()


def test_a_requirement_cannot_be_submitted_to_another_organizations_project(cast) -> None:
    client = token_client(cast.org, cast.admin, ["write"])
    response = client.post(f"{ORG}/projects/GLX/requirements/", {"title": "t", "text": "x"},
                           format="json")
    assert response.status_code == 404
    assert not Requirement.objects.exists()


@pytest.mark.parametrize(("body", "field"), [
    ({"title": "", "text": "x"}, "title"),
    ({"title": "t" * 201, "text": "x"}, "title"),
    ({"title": "t", "text": "x" * 20_001}, "text"),
    ({"title": "t", "text": "a\x00b"}, "text"),
    ({"title": "t"}, "text"),
    ({"title": "t", "text": ["x"]}, "text"),
    ({"title": "t", "text": "x", "project": "OPS"}, "project"),
])
def test_a_bad_requirement_answers_400_naming_the_field(cast, body, field) -> None:
    client = token_client(cast.org, cast.admin, ["write"])
    response = client.post(f"{ORG}/projects/PAY/requirements/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["details"]
    assert not Requirement.objects.exists()


# --- Reading ---------------------------------------------------------------------------------

def test_a_project_lists_its_requirements_newest_first(cast, po) -> None:
    for title in ("First", "Second"):
        services.requirement_create(project=cast.project, actor=po, title=title, text="x")
    client = token_client(cast.org, cast.manager, ["read"])
    response = client.get(f"{ORG}/projects/PAY/requirements/")
    assert [r["key"] for r in response.json()["results"]] == ["PAY-R2", "PAY-R1"]


def test_a_requirement_shows_its_tickets_in_their_order(cast, po) -> None:
    _requirement, (first, second) = proposed(cast, po)
    client = token_client(cast.org, cast.manager, ["read"])
    body = client.get(f"{ORG}/requirements/PAY-R1/").json()
    assert body["status"] == "proposed"
    assert [t["key"] for t in body["tickets"]] == [first.key, second.key]
    assert body["tickets"][0]["requirement"] == "PAY-R1"


def test_requirements_of_hidden_projects_or_other_organizations_answer_404(cast, po) -> None:
    proposed(cast, po)
    member = token_client(cast.org, cast.member, ["read"])
    assert member.get(f"{ORG}/requirements/PAY-R1/").status_code == 404
    assert member.get(f"{ORG}/projects/PAY/requirements/").status_code == 404
    outsider = token_client(cast.other_org, cast.outsider, ["admin"])
    assert outsider.get("/api/v1/orgs/globex/requirements/PAY-R1/").status_code == 404
    admin = token_client(cast.org, cast.admin, ["read"])
    for key in ("PAY-R0", "PAY-1", "pay-r1", "PAY-R99999999999999"):
        assert admin.get(f"{ORG}/requirements/{key}/").status_code == 404, key


# --- Gate 1 ----------------------------------------------------------------------------------

def test_approving_a_requirement_approves_its_proposed_tickets(cast, po) -> None:
    requirement, _tickets = proposed(cast, po)
    client = token_client(cast.org, po, ["write"])
    response = client.post(f"{ORG}/requirements/PAY-R1/approve/")
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "approved"
    assert {t["state"] for t in response.json()["tickets"]} == {"approved"}
    assert set(Ticket.objects.filter(requirement=requirement)
               .values_list("status", flat=True)) == {"approved"}
    assert last_event(cast.org).type == "requirement.approved"
    assert AuditEvent.objects.filter(type="ticket.transition").count() == 2


def test_approving_twice_answers_409(cast, po) -> None:
    proposed(cast, po)
    client = token_client(cast.org, po, ["write"])
    client.post(f"{ORG}/requirements/PAY-R1/approve/")
    response = client.post(f"{ORG}/requirements/PAY-R1/approve/")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_proposed"


def test_a_manager_cannot_approve_a_requirement(cast, po) -> None:
    requirement, _ = proposed(cast, po)
    client = token_client(cast.org, cast.manager, ["write"])
    assert client.post(f"{ORG}/requirements/PAY-R1/approve/").status_code == 403
    assert Requirement.objects.get(pk=requirement.pk).status == "proposed"


def test_reordering_sets_the_order_and_is_audited(cast, po) -> None:
    _requirement, (first, second, third) = proposed(cast, po, count=3)
    client = token_client(cast.org, po, ["write"])
    order = [third.key, first.key, second.key]
    response = client.post(f"{ORG}/requirements/PAY-R1/reorder/", {"keys": order},
                           format="json")
    assert response.status_code == 200, response.json()
    assert [t["key"] for t in response.json()["tickets"]] == order
    event = last_event(cast.org)
    assert (event.type, event.data["order"]) == ("requirement.reordered", order)


@pytest.mark.parametrize("keys", [[], ["PAY-1"], ["PAY-1", "PAY-1", "PAY-2"], ["x\x00"],
                                  "PAY-1", [1, 2]])
def test_reordering_must_name_every_ticket_once(cast, po, keys) -> None:
    requirement, _tickets = proposed(cast, po)
    before = list(Ticket.objects.filter(requirement=requirement).values_list("pk", "order"))
    client = token_client(cast.org, po, ["write"])
    response = client.post(f"{ORG}/requirements/PAY-R1/reorder/", {"keys": keys},
                           format="json")
    assert response.status_code == 400
    assert "keys" in response.json()["error"]["details"]
    assert list(Ticket.objects.filter(requirement=requirement)
                .values_list("pk", "order")) == before


def test_a_product_owner_adds_a_ticket_by_hand_and_it_is_audited(cast, po) -> None:
    requirement, (first, _second) = proposed(cast, po)
    client = token_client(cast.org, po, ["write"])
    spec = spec_example(title="Also export CSV", dependencies=[first.key])
    response = client.post(f"{ORG}/requirements/PAY-R1/tickets/", spec, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["title"], body["state"], body["dependencies"]) == (
        "Also export CSV", "proposed", [first.key])
    added = Ticket.objects.get(requirement=requirement, title="Also export CSV")
    assert added.order == 3
    event = last_event(cast.org)
    assert (event.type, event.target_label, event.actor_user) == (
        "ticket.proposed", body["key"], po)


@pytest.mark.parametrize("spec", [
    spec_example(complexity=0),
    spec_example(dependencies=["OPS-1"]),
    spec_example(title="x\x00y"),
    spec_example(objective="z" * 300_000),
    ["not", "an", "object"],
])
def test_adding_an_invalid_ticket_answers_400_and_stores_nothing(cast, po, spec) -> None:
    requirement, _ = proposed(cast, po)
    client = token_client(cast.org, po, ["write"])
    events = AuditEvent.objects.count()
    response = client.post(f"{ORG}/requirements/PAY-R1/tickets/", spec, format="json")
    assert response.status_code == 400, response.content[:300]
    assert response.json()["error"]["message"]
    assert Ticket.objects.filter(requirement=requirement).count() == 2
    assert AuditEvent.objects.count() == events


def test_tickets_can_be_added_only_while_the_requirement_awaits_approval(cast, po) -> None:
    proposed(cast, po)
    client = token_client(cast.org, po, ["write"])
    client.post(f"{ORG}/requirements/PAY-R1/approve/")
    response = client.post(f"{ORG}/requirements/PAY-R1/tickets/", spec_example(),
                           format="json")
    assert response.status_code == 409


def test_a_product_owner_granted_on_one_project_cannot_act_on_another(cast, po) -> None:
    other = ProjectFactory(organization=cast.org, key="OPS")
    assign_perm("tickets.view_project", cast.product_owner, other)
    client = token_client(cast.org, po, ["write"])
    response = client.post(f"{ORG}/projects/OPS/requirements/", {"title": "t", "text": "x"},
                           format="json")
    assert response.status_code == 403
    assert not Requirement.objects.filter(project=other).exists()
