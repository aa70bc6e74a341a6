"""Requirements and both human gates, through the services the API and portal call."""

from __future__ import annotations

from decimal import Decimal

import pytest
from guardian.shortcuts import assign_perm

from haao.audit import SYSTEM
from haao.errors import ApplicationError, Conflict, Forbidden
from tests.factories import TicketFactory, spec_example
from tests.fixtures import audit_events
from tickets import services
from tickets.models import Attempt, CheckResult, Requirement, Ticket, TicketStatus
from tickets.services.attempts import CheckOutcome
from tickets.spec import SpecInvalid
from tickets.state import ticket_transition


@pytest.fixture
def po(cast):
    assign_perm("tickets.approve_project", cast.product_owner, cast.project)
    return cast.product_owner


def proposed_requirement(cast, po, specs=None) -> tuple[Requirement, list[Ticket]]:
    requirement = services.requirement_create(project=cast.project, actor=po,
                                              title="Invoices", text="Round invoice totals.")
    tickets = services.requirement_propose(
        requirement=requirement, actor=SYSTEM,
        specs=specs or [spec_example(title="First"),
                        spec_example(title="Second", dependencies=["#1"])])
    requirement.refresh_from_db()
    return requirement, tickets


def test_a_proposal_gets_project_keys_and_resolves_dependencies_within_it(cast, po) -> None:
    requirement, (first, second) = proposed_requirement(cast, po)
    assert requirement.status == "proposed" and requirement.key == "PAY-R1"
    assert (first.key, second.key) == ("PAY-1", "PAY-2")
    assert list(second.dependencies.all()) == [first]
    assert [e.target_label for e in audit_events(cast.org, "ticket.proposed")] == ["PAY-1", "PAY-2"]


def test_an_invalid_ticket_in_a_proposal_stores_none_of_it(cast, po) -> None:
    requirement = services.requirement_create(project=cast.project, actor=po, title="x",
                                              text="y")
    with pytest.raises(SpecInvalid, match="Ticket #2"):
        services.requirement_propose(requirement=requirement, actor=SYSTEM, specs=[
            spec_example(), spec_example(complexity=9)])
    assert not Ticket.objects.filter(requirement=requirement).exists()
    assert Requirement.objects.get(pk=requirement.pk).status == "decomposing"


def test_a_requirement_needs_a_product_owner_granted_on_the_project(cast) -> None:
    with pytest.raises(Forbidden):
        services.requirement_create(project=cast.project, actor=cast.product_owner,
                                    title="x", text="y")
    with pytest.raises(Forbidden):
        services.requirement_create(project=cast.project, actor=cast.member, title="x", text="y")
    assert not Requirement.objects.exists()


def test_gate_one_edit_is_validated_and_a_bad_edit_leaves_the_ticket_unchanged(cast, po) -> None:
    _, (first, _) = proposed_requirement(cast, po)
    services.ticket_spec_update(ticket=first, actor=po, spec=spec_example(title="Renamed"))
    first.refresh_from_db()
    assert first.title == "Renamed" and first.spec["title"] == "Renamed"
    before = dict(first.spec)
    with pytest.raises(SpecInvalid) as raised:
        services.ticket_spec_update(ticket=first, actor=po,
                                    spec=spec_example(definition_of_done=[]))
    assert raised.value.details["errors"][0]["path"].startswith("$.definition_of_done")
    first.refresh_from_db()
    assert first.spec == before
    assert [e.data["changed"] for e in audit_events(cast.org, "ticket.spec_edited")] == [["title"]]


def test_a_dependency_cycle_is_refused(cast, po) -> None:
    _, (first, second) = proposed_requirement(cast, po)
    with pytest.raises(ApplicationError, match="depend on itself"):
        services.ticket_spec_update(ticket=first, actor=po,
                                    spec=spec_example(dependencies=[second.key]))
    assert list(first.dependencies.all()) == []


def test_gate_one_drop_reorder_add_and_approve(cast, po) -> None:
    requirement, (first, second) = proposed_requirement(cast, po)
    added = services.ticket_add(requirement=requirement, actor=po,
                                spec=spec_example(title="Added by hand"))
    services.tickets_reorder(requirement=requirement, actor=po,
                             keys=[added.key, second.key, first.key])
    services.ticket_cancel(ticket=first, actor=po, reason="not needed")
    approved = services.requirement_approve(requirement=requirement, actor=po)
    assert [t.key for t in approved] == [added.key, second.key]
    requirement.refresh_from_db()
    assert (requirement.status, requirement.approved_by) == ("approved", po)
    for ticket in approved:
        ticket.refresh_from_db()
        assert ticket.status == TicketStatus.APPROVED and ticket.approved_by == po
    assert Ticket.objects.get(pk=first.pk).status == TicketStatus.CANCELLED


def test_nothing_can_be_edited_after_approval(cast, po) -> None:
    requirement, (first, _) = proposed_requirement(cast, po)
    services.requirement_approve(requirement=requirement, actor=po)
    with pytest.raises(Conflict, match="only proposed tickets"):
        services.ticket_spec_update(ticket=first, actor=po, spec=spec_example(title="Late"))
    with pytest.raises(Conflict):
        services.requirement_approve(requirement=requirement, actor=po)
    with pytest.raises(Conflict, match="reordered only"):
        services.tickets_reorder(requirement=requirement, actor=po,
                                 keys=[t.key for t in requirement.tickets.all()])


def test_gate_two_accept_and_reject_with_feedback(cast, po) -> None:
    accepted = TicketFactory(requirement__project=cast.project, status="awaiting_acceptance")
    rejected = TicketFactory(requirement__project=cast.project, status="awaiting_acceptance")
    services.ticket_accept(ticket=accepted, actor=po)
    with pytest.raises(ApplicationError, match="feedback is required"):
        services.ticket_reject(ticket=rejected, actor=po, feedback="   ")
    services.ticket_reject(ticket=rejected, actor=po, feedback="Rounding must be half-up.")
    accepted.refresh_from_db()
    rejected.refresh_from_db()
    assert (accepted.status, accepted.decided_by) == ("accepted", po)
    assert rejected.status == "rejected" and rejected.feedback == "Rounding must be half-up."
    last = audit_events(cast.org, "ticket.transition")[-1]
    assert last.data["feedback"] == "Rounding must be half-up."


def test_a_manager_reads_but_cannot_decide(cast) -> None:
    ticket = TicketFactory(requirement__project=cast.project, status="awaiting_acceptance")
    with pytest.raises(Forbidden):
        services.ticket_accept(ticket=ticket, actor=cast.manager)
    assert Ticket.objects.get(pk=ticket.pk).status == "awaiting_acceptance"


def test_retrying_a_blocked_ticket_restores_its_budget(cast, po) -> None:
    ticket = TicketFactory(requirement__project=cast.project, status="blocked", retries_left=0,
                           block_reason="budget spent", audit_failures=3, cloud_attempts=1)
    services.ticket_retry(ticket=ticket, actor=po)
    ticket.refresh_from_db()
    assert (ticket.status, ticket.retries_left, ticket.block_reason) == ("queued", 3, "")
    # The Tech Lead may take it over again, and audits start counting afresh.
    assert (ticket.audit_failures, ticket.cloud_attempts) == (0, 0)


def test_an_attempt_runs_once_and_finishes_once_with_its_checks(cast) -> None:
    ticket = TicketFactory(requirement__project=cast.project, status="queued")
    ticket_transition(ticket=ticket, to="running", actor=SYSTEM)
    attempt = services.attempt_start(ticket=ticket, number=1, executor="local", model="coder")
    with pytest.raises(Conflict):
        services.attempt_start(ticket=ticket, number=1, executor="local")
    check = CheckOutcome(name="tests", command=["pytest"], expected_exit_code=0, exit_code=1,
                         passed=False, duration_ms=120, stdout="x" * 40_000, stderr="boom",
                         expectation="exit code 1, expected 0")
    services.attempt_finish(attempt=attempt, outcome="tests_failed", checks=[check],
                            input_tokens=100, output_tokens=20, cost=Decimal("0.000123"))
    with pytest.raises(Conflict):
        services.attempt_finish(attempt=attempt, outcome="passed")
    stored = CheckResult.objects.get(attempt=attempt)
    assert not stored.passed and stored.stdout_tail.endswith("x")
    assert len(stored.stdout_tail) < 17_000  # the tail is capped, the end kept
    assert Attempt.objects.get(pk=attempt.pk).cost == Decimal("0.000123")
    assert Ticket.objects.get(pk=ticket.pk).attempt_count == 1
