"""Tickets through the API: who sees which, filters, one ticket's attempts and costs, the
Gate 1 spec edit and the gate decisions, each checked in the database and the audit log."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from guardian.shortcuts import assign_perm

from agents.ledger import model_call_record
from agents.services import endpoint_create
from haao.audit import SYSTEM
from haao.models import AuditEvent
from tests.factories import ProjectFactory, RequirementFactory, TicketFactory, spec_example
from tests.fixtures import last_event, token_client
from tickets import services
from tickets.models import Attempt, Ticket, TicketStatus
from tickets.services.attempts import CheckOutcome

pytestmark = pytest.mark.django_db

BASE = "/api/v1/orgs/acme/tickets"


def ticket(cast, status: str = "proposed", project=None, title: str = "Round totals to cents",
           **fields) -> Ticket:
    """A ticket in `status` (set up directly: these tests exercise the API, not the engine)."""
    project = project or cast.project
    requirement = RequirementFactory(project=project, organization=project.organization)
    return TicketFactory(requirement=requirement, status=status, title=title,
                         spec=spec_example(title=title), **fields)


def granted_po(cast, grant: str = "approve_project"):
    assign_perm(f"tickets.{grant}", cast.product_owner, cast.project)
    return cast.product_owner


def keys(response) -> list[str]:
    assert response.status_code == 200, response.content[:300]
    return [row["key"] for row in response.json()["results"]]


# --- Who sees what ---------------------------------------------------------------------------

def test_admins_and_managers_see_every_ticket_of_the_organization_and_none_of_another(
    cast,
) -> None:
    mine = ticket(cast)
    ops = ticket(cast, project=ProjectFactory(organization=cast.org, key="OPS"))
    ticket(cast, project=cast.other_project)
    for user in (cast.admin, cast.manager):
        client = token_client(cast.org, user, ["read"])
        assert sorted(keys(client.get(f"{BASE}/"))) == sorted([mine.key, ops.key])


def test_a_member_sees_only_tickets_of_projects_granted_to_them(cast) -> None:
    visible = ticket(cast)
    hidden = ticket(cast, project=ProjectFactory(organization=cast.org, key="HID"))
    client = token_client(cast.org, cast.member, ["read"])
    assert keys(client.get(f"{BASE}/")) == []
    assert client.get(f"{BASE}/{visible.key}/").status_code == 404
    assign_perm("tickets.view_project", cast.member, cast.project)
    assert keys(client.get(f"{BASE}/")) == [visible.key]
    assert client.get(f"{BASE}/{visible.key}/").status_code == 200
    assert client.get(f"{BASE}/{hidden.key}/").status_code == 404


def test_an_outsider_gets_404_for_a_ticket_even_with_its_own_admin_token(cast) -> None:
    mine = ticket(cast)
    theirs = token_client(cast.other_org, cast.outsider, ["admin"])
    assert theirs.get(f"{BASE}/{mine.key}/").status_code == 404
    assert theirs.get(f"/api/v1/orgs/globex/tickets/{mine.key}/").status_code == 404
    assert theirs.post(f"{BASE}/{mine.key}/approve/").status_code == 404
    assert Ticket.objects.get(pk=mine.pk).status == "proposed"


def test_malformed_or_absurd_ticket_keys_answer_404(cast) -> None:
    client = token_client(cast.org, cast.admin, ["read"])
    for key in ("pay-1", "PAY-0", "PAY-99999999999999999999", "PAY-1%00", "PAY", "X" * 300):
        assert client.get(f"{BASE}/{key}/").status_code == 404, key


# --- The list --------------------------------------------------------------------------------

def test_the_list_filters_by_state_project_requirement_and_title(cast) -> None:
    queued = ticket(cast, "queued", title="Export invoices as CSV")
    running = ticket(cast, "running", title="Round totals")
    other = ticket(cast, "queued", project=ProjectFactory(organization=cast.org, key="OPS"))
    client = token_client(cast.org, cast.admin, ["read"])
    assert set(keys(client.get(f"{BASE}/", {"state": ["queued", "running"]}))) == {
        queued.key, running.key, other.key}
    assert set(keys(client.get(f"{BASE}/", {"state": "queued", "project": "PAY"}))) == {
        queued.key}
    requirement = f"PAY-R{queued.requirement.number}"
    assert keys(client.get(f"{BASE}/", {"requirement": requirement})) == [queued.key]
    assert keys(client.get(f"{BASE}/", {"q": "invoices AS csv"})) == [queued.key]
    assert keys(client.get(f"{BASE}/", {"project": "NOPE"})) == []


def test_the_list_is_newest_first_and_pages_with_a_cursor(cast) -> None:
    made = [ticket(cast) for _ in range(5)]
    client = token_client(cast.org, cast.admin, ["read"])
    first = client.get(f"{BASE}/", {"page_size": 3}).json()
    second = client.get(first["next"]).json()
    shown = [row["key"] for row in first["results"] + second["results"]]
    assert shown == [t.key for t in reversed(made)]
    assert first["results"][0]["requirement"] == f"PAY-R{made[-1].requirement.number}"


@pytest.mark.parametrize("query", [{"state": "sleeping"}, {"project": "pay"},
                                   {"project": "P\x00Y"}, {"requirement": "PAY-12"},
                                   {"q": "a\x00b"}, {"q": "x" * 201}])
def test_bad_filters_answer_400_naming_the_filter(cast, query) -> None:
    client = token_client(cast.org, cast.admin, ["read"])
    response = client.get(f"{BASE}/", query)
    assert response.status_code == 400, response.content[:300]
    assert set(response.json()["error"]["details"]) == set(query)


@pytest.mark.parametrize("role", ["admin", "member"])
def test_the_list_takes_the_same_queries_for_10_and_100_tickets_per_page(cast, role) -> None:
    user = getattr(cast, role)
    assign_perm("tickets.view_project", cast.member, cast.project)
    requirement = RequirementFactory(project=cast.project, organization=cast.org)
    TicketFactory.create_batch(100, requirement=requirement)
    client = token_client(cast.org, user, ["read"])
    client.get(f"{BASE}/")  # records the token's first use outside the count
    counts = {}
    for size in (10, 100):
        with CaptureQueriesContext(connection) as queries:
            response = client.get(f"{BASE}/", {"page_size": size, "state": "proposed"})
        assert len(response.json()["results"]) == size
        counts[size] = len(queries)
    assert counts[10] == counts[100], counts


def test_page_size_is_capped_at_200(cast) -> None:
    requirement = RequirementFactory(project=cast.project, organization=cast.org)
    TicketFactory.create_batch(201, requirement=requirement)
    client = token_client(cast.org, cast.admin, ["read"])
    assert len(keys(client.get(f"{BASE}/", {"page_size": 1000}))) == 200


# --- One ticket ------------------------------------------------------------------------------

def test_a_ticket_shows_its_spec_dependencies_attempts_checks_and_decimal_totals(cast) -> None:
    first = ticket(cast, "approved")
    work = ticket(cast, "running")
    work.dependencies.add(first)
    gpu = endpoint_create(
        organization=cast.org, actor=cast.admin,
        values={"name": "GPU box", "kind": "openai_compatible", "flavor": "lm_studio",
                "base_url": "http://93.184.215.14:1234/v1", "model": "qwen", "role": "coder",
                "price_input": "100", "price_output": "0.005"})
    attempt = services.attempt_start(ticket=work, number=1, executor="local", model="qwen")
    # The totals are the ledger's: each attempt's calls, recorded as the engine records them.
    call = model_call_record(organization=cast.org, endpoint=gpu, role="code", outcome="ok",
                             attempt=attempt, input_tokens=1000, output_tokens=200)
    services.attempt_finish(
        attempt=attempt, outcome="tests_failed", diff="--- a\n+++ b\n", input_tokens=1000,
        output_tokens=200, cost=call.cost,
        checks=[CheckOutcome(name="unit tests", command=["pytest", "-q"], expected_exit_code=0,
                             exit_code=1, passed=False, duration_ms=1500, stdout="1 failed")])
    second = services.attempt_start(ticket=work, number=2, executor="cloud", model="claude")
    call = model_call_record(organization=cast.org, endpoint=gpu, role="code", outcome="ok",
                             attempt=second, input_tokens=10, output_tokens=5,
                             cache_read_tokens=7)
    services.attempt_finish(attempt=second, outcome="passed", input_tokens=10,
                            output_tokens=5, cache_read_tokens=7, cost=call.cost)
    client = token_client(cast.org, cast.manager, ["read"])
    body = client.get(f"{BASE}/{work.key}/").json()
    assert body["key"] == work.key and body["state"] == "running"
    assert body["spec"]["title"] == work.title
    assert body["dependencies"] == [first.key]
    assert [a["number"] for a in body["attempts"]] == [1, 2]
    one = body["attempts"][0]
    assert one["cost"] == "0.100001" and one["diff"] == "--- a\n+++ b\n"
    assert one["tokens"] == {"input": 1000, "output": 200, "cache_write": 0, "cache_read": 0}
    assert one["checks"][0]["passed"] is False and one["checks"][0]["stdout_tail"] == "1 failed"
    assert body["totals"] == {"attempts": 2, "cost": "0.101701", "tokens": 1222,
                              "input_tokens": 1010, "output_tokens": 205,
                              "cache_write_tokens": 0, "cache_read_tokens": 7}


def test_a_ticket_without_attempts_costs_zero(cast) -> None:
    fresh = ticket(cast)
    body = token_client(cast.org, cast.admin, ["read"]).get(f"{BASE}/{fresh.key}/").json()
    assert body["attempts"] == [] and body["totals"]["cost"] == "0.000000"


# --- Gate 1: editing the spec ----------------------------------------------------------------

def test_a_granted_product_owner_edits_a_proposed_spec_and_it_is_audited(cast) -> None:
    po = granted_po(cast)
    proposed = ticket(cast)
    client = token_client(cast.org, po, ["write"])
    response = client.patch(f"{BASE}/{proposed.key}/",
                            {"spec": spec_example(title="Renamed by hand")}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["title"] == "Renamed by hand"
    proposed.refresh_from_db()
    assert proposed.title == "Renamed by hand" and proposed.spec["title"] == "Renamed by hand"
    event = last_event(cast.org)
    assert (event.type, event.target_label, event.actor_user) == (
        "ticket.spec_edited", proposed.key, po)
    assert event.data["changed"] == ["title"]


def test_an_invalid_spec_answers_400_with_json_paths_and_changes_nothing(cast) -> None:
    proposed = ticket(cast)
    before = Ticket.objects.filter(pk=proposed.pk).values().get()
    client = token_client(cast.org, cast.admin, ["write"])
    events = AuditEvent.objects.count()
    bad = spec_example(complexity=9, definition_of_done=[])
    response = client.patch(f"{BASE}/{proposed.key}/", {"spec": bad}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "spec_invalid"
    paths = [problem["path"] for problem in error["details"]["errors"]]
    assert "$.complexity" in paths and "$.definition_of_done" in paths
    assert Ticket.objects.filter(pk=proposed.pk).values().get() == before
    assert AuditEvent.objects.count() == events


@pytest.mark.parametrize("spec", [
    spec_example(title="a\x00b"),
    spec_example(objective="fine", constraints=["bad\x00"]),
    spec_example(objective="x" * 300_000),
    spec_example(code_context=[{"path": "a.py", "line_start": 1, "line_end": 1,
                                "content": "y" * 60_000}] * 5),
])
def test_nul_bytes_or_oversized_specs_answer_400_and_change_nothing(
    cast, spec,
) -> None:
    proposed = ticket(cast)
    before = Ticket.objects.filter(pk=proposed.pk).values().get()
    client = token_client(cast.org, cast.admin, ["write"])
    response = client.patch(f"{BASE}/{proposed.key}/", {"spec": spec}, format="json")
    assert response.status_code == 400, response.content[:300]
    assert response.json()["error"]["details"]["errors"]
    assert len(response.content) < 20_000, "the error must not echo the input back"
    assert Ticket.objects.filter(pk=proposed.pk).values().get() == before


@pytest.mark.parametrize("spec", ["not an object", ["a", "list"], None, 12])
def test_a_spec_that_is_not_an_object_answers_400_naming_the_field(cast, spec) -> None:
    proposed = ticket(cast)
    client = token_client(cast.org, cast.admin, ["write"])
    response = client.patch(f"{BASE}/{proposed.key}/", {"spec": spec}, format="json")
    assert response.status_code == 400
    assert "spec" in response.json()["error"]["details"]
    assert Ticket.objects.get(pk=proposed.pk).spec == proposed.spec


def test_the_spec_of_an_approved_ticket_cannot_be_edited(cast) -> None:
    approved = ticket(cast, "approved")
    client = token_client(cast.org, cast.admin, ["write"])
    response = client.patch(f"{BASE}/{approved.key}/", {"spec": spec_example(title="Late")},
                            format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_proposed"
    assert Ticket.objects.get(pk=approved.pk).title != "Late"


def test_a_patch_without_spec_or_with_other_fields_is_refused(cast) -> None:
    proposed = ticket(cast)
    client = token_client(cast.org, cast.admin, ["write"])
    missing = client.patch(f"{BASE}/{proposed.key}/", {}, format="json")
    assert missing.status_code == 400 and "spec" in missing.json()["error"]["details"]
    status = client.patch(f"{BASE}/{proposed.key}/",
                          {"spec": spec_example(), "status": "accepted"}, format="json")
    assert status.status_code == 400 and "status" in status.json()["error"]["details"]
    assert Ticket.objects.get(pk=proposed.pk).status == "proposed"


# --- Gate decisions --------------------------------------------------------------------------

ACTIONS = [
    # action, state before, state after, body
    ("approve", "proposed", "approved", None),
    ("accept", "awaiting_acceptance", "accepted", None),
    ("reject", "awaiting_acceptance", "rejected", {"feedback": "Totals still truncate."}),
    ("cancel", "queued", "cancelled", {"reason": "Not needed any more."}),
    ("retry", "blocked", "queued", None),
]


@pytest.mark.parametrize(("action", "before", "after", "body"), ACTIONS,
                         ids=[a[0] for a in ACTIONS])
def test_a_granted_product_owner_decides_and_the_transition_is_audited(
    cast, action, before, after, body,
) -> None:
    po = granted_po(cast)
    work = ticket(cast, before)
    client = token_client(cast.org, po, ["write"])
    response = client.post(f"{BASE}/{work.key}/{action}/", body, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["state"] == after
    assert Ticket.objects.get(pk=work.pk).status == after
    event = last_event(cast.org)
    assert (event.type, event.target_label, event.actor_user) == (
        "ticket.transition", work.key, po)
    assert (event.data["from"], event.data["to"]) == (before, after)
    assert str(event.project_id) == str(cast.project.pk)


def test_an_admin_decides_without_a_grant(cast) -> None:
    work = ticket(cast, "awaiting_acceptance")
    client = token_client(cast.org, cast.admin, ["write"])
    assert client.post(f"{BASE}/{work.key}/accept/").status_code == 200
    work.refresh_from_db()
    assert (work.status, work.decided_by) == ("accepted", cast.admin)


def test_rejecting_stores_the_feedback_for_the_next_attempt(cast) -> None:
    work = ticket(cast, "awaiting_acceptance")
    client = token_client(cast.org, cast.admin, ["write"])
    client.post(f"{BASE}/{work.key}/reject/", {"feedback": "  Round half-up.  "},
                format="json")
    work.refresh_from_db()
    assert (work.status, work.feedback) == ("rejected", "Round half-up.")
    assert last_event(cast.org).data["feedback"] == "Round half-up."


@pytest.mark.parametrize("body", [{}, {"feedback": ""}, {"feedback": "   "},
                                  {"feedback": "x\x00"}, {"feedback": 12}])
def test_rejecting_needs_feedback(cast, body) -> None:
    work = ticket(cast, "awaiting_acceptance")
    client = token_client(cast.org, cast.admin, ["write"])
    response = client.post(f"{BASE}/{work.key}/reject/", body, format="json")
    assert response.status_code == 400
    assert "feedback" in response.json()["error"]["details"]
    assert Ticket.objects.get(pk=work.pk).status == "awaiting_acceptance"


@pytest.mark.parametrize(("action", "state"), [("accept", "running"), ("approve", "queued"),
                                               ("retry", "proposed"), ("cancel", "accepted")])
def test_an_illegal_transition_answers_409_naming_both_states(cast, action, state) -> None:
    work = ticket(cast, state)
    client = token_client(cast.org, cast.admin, ["write"])
    events = AuditEvent.objects.count()
    response = client.post(f"{BASE}/{work.key}/{action}/", format="json")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "illegal_transition"
    assert state in error["message"] and error["details"]["from"] == state
    assert error["details"]["to"] in error["message"]
    assert Ticket.objects.get(pk=work.pk).status == state
    assert AuditEvent.objects.count() == events


@pytest.mark.parametrize("role", ["manager", "member"])
def test_roles_without_gate_rights_get_403_even_with_a_write_token(cast, role) -> None:
    user = getattr(cast, role)
    assign_perm("tickets.view_project", user, cast.project)
    work = ticket(cast, "awaiting_acceptance")
    client = token_client(cast.org, user, ["write"])
    assert client.get(f"{BASE}/{work.key}/").status_code == 200
    for action in ("accept", "cancel"):
        assert client.post(f"{BASE}/{work.key}/{action}/").status_code == 403
    response = client.patch(f"{BASE}/{work.key}/", {"spec": spec_example()}, format="json")
    assert response.status_code == 403
    assert Ticket.objects.get(pk=work.pk).status == "awaiting_acceptance"


def test_a_product_owner_granted_only_view_gets_403_and_one_without_grants_404(cast) -> None:
    work = ticket(cast, "awaiting_acceptance")
    client = token_client(cast.org, cast.product_owner, ["write"])
    assert client.post(f"{BASE}/{work.key}/accept/").status_code == 404
    granted_po(cast, "view_project")
    response = client.post(f"{BASE}/{work.key}/accept/")
    assert response.status_code == 403
    assert "grant" in response.json()["error"]["message"]
    assert Ticket.objects.get(pk=work.pk).status == "awaiting_acceptance"


def test_a_read_token_cannot_decide_even_for_an_admin(cast) -> None:
    work = ticket(cast, "awaiting_acceptance")
    client = token_client(cast.org, cast.admin, ["read"])
    response = client.post(f"{BASE}/{work.key}/accept/")
    assert response.status_code == 403
    assert "scope" in response.json()["error"]["message"]
    assert Ticket.objects.get(pk=work.pk).status == "awaiting_acceptance"


def test_actions_refuse_unexpected_fields(cast) -> None:
    work = ticket(cast)
    client = token_client(cast.org, cast.admin, ["write"])
    response = client.post(f"{BASE}/{work.key}/approve/", {"status": "accepted"}, format="json")
    assert response.status_code == 400
    assert Ticket.objects.get(pk=work.pk).status == "proposed"


def test_a_ticket_moved_by_the_engine_shows_its_new_state(cast) -> None:
    from tickets.state import ticket_transition

    work = ticket(cast, "approved")
    ticket_transition(ticket=work, to=TicketStatus.QUEUED, actor=SYSTEM)
    body = token_client(cast.org, cast.admin, ["read"]).get(f"{BASE}/{work.key}/").json()
    assert body["state"] == "queued"
    assert Attempt.objects.count() == 0
