"""The one state machine: every edge of the table, the actor's right, compare-and-set,
the audit event and side effects after commit."""

from __future__ import annotations

import itertools
import threading

import pytest
from django.db import connection, transaction
from guardian.shortcuts import assign_perm

from haao.audit import SYSTEM, Actor
from haao.errors import Conflict, Forbidden
from haao.models import AuditEvent
from tests.factories import TicketFactory
from tickets.models import Ticket, TicketStatus
from tickets.state import ENGINE, GATE, TRANSITIONS, IllegalTransition, on_enter, ticket_transition

ALL_PAIRS = list(itertools.product(TicketStatus.values, repeat=2))


def make_ticket(cast, status: str) -> Ticket:
    ticket = TicketFactory(requirement__project=cast.project, status=status)
    return Ticket.objects.select_related("project__organization").get(pk=ticket.pk)


def transition_events(ticket: Ticket) -> list[AuditEvent]:
    return list(AuditEvent.objects.for_org(ticket.project.organization)
                .filter(type="ticket.transition", target_id=str(ticket.pk)))


@pytest.mark.parametrize("source,target", ALL_PAIRS, ids=lambda s: s)
def test_every_pair_of_states_is_allowed_only_if_the_table_says_so(cast, source, target) -> None:
    ticket = make_ticket(cast, source)
    kind = TRANSITIONS.get((source, target))
    actor = Actor.of(cast.admin) if kind == GATE else SYSTEM
    if kind is None:
        with pytest.raises(IllegalTransition) as raised:
            ticket_transition(ticket=ticket, to=target, actor=actor)
        assert f"from {source} to {target}" in raised.value.message
        assert Ticket.objects.get(pk=ticket.pk).status == source
        assert transition_events(ticket) == []
    else:
        ticket_transition(ticket=ticket, to=target, actor=actor)
        assert Ticket.objects.get(pk=ticket.pk).status == target
        [event] = transition_events(ticket)
        assert event.data["from"] == source and event.data["to"] == target
        assert event.project_id == cast.project.pk


def test_terminal_states_have_no_way_out() -> None:
    assert not [edge for edge in TRANSITIONS if edge[0] == TicketStatus.CANCELLED]
    # Accepted work leaves only when its merge conflicts, and only by HAAO's engine.
    assert {edge: kind for edge, kind in TRANSITIONS.items()
            if edge[0] == TicketStatus.ACCEPTED} == {
        (TicketStatus.ACCEPTED, TicketStatus.QUEUED): ENGINE}


def test_a_person_cannot_take_an_engine_edge(cast) -> None:
    ticket = make_ticket(cast, TicketStatus.QUEUED)
    with pytest.raises(Forbidden):
        ticket_transition(ticket=ticket, to=TicketStatus.RUNNING, actor=Actor.of(cast.admin))
    assert Ticket.objects.get(pk=ticket.pk).status == TicketStatus.QUEUED


def test_the_engine_cannot_decide_at_a_gate(cast) -> None:
    ticket = make_ticket(cast, TicketStatus.AWAITING_ACCEPTANCE)
    with pytest.raises(Forbidden):
        ticket_transition(ticket=ticket, to=TicketStatus.ACCEPTED, actor=SYSTEM)


@pytest.mark.parametrize("who,granted,allowed", [
    ("admin", False, True),
    ("product_owner", True, True),
    ("product_owner", False, False),
    ("manager", False, False),
    ("member", True, False),
])
def test_only_admins_and_granted_product_owners_decide(cast, who, granted, allowed) -> None:
    user = getattr(cast, who)
    if granted:
        assign_perm("tickets.approve_project", user, cast.project)
    ticket = make_ticket(cast, TicketStatus.PROPOSED)
    if allowed:
        ticket_transition(ticket=ticket, to=TicketStatus.APPROVED, actor=Actor.of(user))
        assert transition_events(ticket)[0].actor_user == user
    else:
        with pytest.raises(Forbidden):
            ticket_transition(ticket=ticket, to=TicketStatus.APPROVED, actor=Actor.of(user))
        assert Ticket.objects.get(pk=ticket.pk).status == TicketStatus.PROPOSED


def test_an_outsider_cannot_decide(cast) -> None:
    ticket = make_ticket(cast, TicketStatus.PROPOSED)
    with pytest.raises(Forbidden):
        ticket_transition(ticket=ticket, to=TicketStatus.APPROVED, actor=Actor.of(cast.outsider))


def test_a_stale_copy_cannot_overwrite_a_newer_state(cast) -> None:
    ticket = make_ticket(cast, TicketStatus.QUEUED)
    stale = Ticket.objects.select_related("project__organization").get(pk=ticket.pk)
    ticket_transition(ticket=ticket, to=TicketStatus.RUNNING, actor=SYSTEM)
    with pytest.raises(Conflict, match="running now, not queued"):
        ticket_transition(ticket=stale, to=TicketStatus.BLOCKED, actor=SYSTEM)
    assert Ticket.objects.get(pk=ticket.pk).status == TicketStatus.RUNNING
    assert len(transition_events(ticket)) == 1


def test_side_effects_run_after_commit_and_never_after_a_rollback(
        cast, django_capture_on_commit_callbacks) -> None:
    seen: list[str] = []
    hook = on_enter(TicketStatus.BLOCKED)(lambda t: seen.append(t.to_status))
    try:
        ticket = make_ticket(cast, TicketStatus.QUEUED)
        with (django_capture_on_commit_callbacks(execute=True) as callbacks,
              pytest.raises(RuntimeError), transaction.atomic()):
            ticket_transition(ticket=ticket, to=TicketStatus.BLOCKED, actor=SYSTEM)
            raise RuntimeError("rolled back")
        assert callbacks == [] and seen == []
        assert Ticket.objects.get(pk=ticket.pk).status == TicketStatus.QUEUED
        ticket.status = TicketStatus.QUEUED
        with django_capture_on_commit_callbacks(execute=True):
            ticket_transition(ticket=ticket, to=TicketStatus.BLOCKED, actor=SYSTEM)
            assert seen == []  # not before commit
        assert seen == ["blocked"]
    finally:
        from tickets import state

        state._side_effects[TicketStatus.BLOCKED].remove(hook)


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_attempts_at_one_transition_succeed_exactly_once(cast) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row-level concurrency is exercised against PostgreSQL")
    ticket = make_ticket(cast, TicketStatus.QUEUED)
    barrier = threading.Barrier(20)
    results: list[str] = []

    def worker() -> None:
        copy = Ticket.objects.select_related("project__organization").get(pk=ticket.pk)
        barrier.wait()
        try:
            ticket_transition(ticket=copy, to=TicketStatus.RUNNING, actor=SYSTEM)
            results.append("ok")
        except Conflict:
            results.append("conflict")
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count("ok") == 1 and results.count("conflict") == 19
    assert len(transition_events(ticket)) == 1


def test_engine_and_gate_are_the_only_kinds() -> None:
    assert set(TRANSITIONS.values()) == {ENGINE, GATE}
