"""The loop on real Celery workers: a requirement becomes a merged commit with no human action
between the two gates. Model servers are scripted over HTTP on 127.0.0.1."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agents.models import ModelCall
from agents.workspaces.git import git
from sample_models import AnthropicServer, OpenAIServer
from sample_models.base import last_user_text
from sample_models.rounding import RIGHT_FIX, WRONG_FIX
from tests.loop import (
    Processes,
    Script,
    TechLead,
    add_endpoints,
    approved_ticket,
    events,
    kinds,
    status_of,
    wait_for,
    workspace_root,
)
from tests.samples import invoice_ticket
from tickets import services
from tickets.models import Attempt, Project, Ticket

pytestmark = [pytest.mark.django_db(transaction=True)]

def test_a_requirement_becomes_a_merged_commit(cast: Any, project: Project, coder: OpenAIServer,
                                               cloud: AnthropicServer,
                                               processes: Processes) -> None:
    coder_script = Script(WRONG_FIX, RIGHT_FIX)
    coder.answer = lambda request: coder_script.next()
    cloud.answer = TechLead(tickets=[invoice_ticket()])
    add_endpoints(cast, coder, cloud)
    processes.start_worker()
    processes.start_beat()

    ticket = approved_ticket(cast, project, processes)
    wait_for(lambda: status_of(ticket)() == "awaiting_acceptance",
             what="the ticket to await acceptance", processes=processes)

    attempts = list(Attempt.objects.filter(ticket=ticket).order_by("number"))
    assert [(a.number, a.outcome) for a in attempts] == [(1, "tests_failed"), (2, "passed")]
    assert "test_total_rounds_half_a_cent_up" in attempts[0].checks.get().stdout_tail
    # The retry was told what failed: the second prompt carries the first attempt's output.
    chats = [r for r in coder.requests if r.path == "/v1/chat/completions"]
    assert len(chats) == 2
    assert "1 failed" in last_user_text(chats[1].body)
    assert "1 failed" not in last_user_text(chats[0].body)
    assert kinds(cloud) == ["propose", "audit"]
    # One usage row per model call, none twice.
    assert ModelCall.objects.filter(ticket=ticket, role="code").count() == 2
    assert ModelCall.objects.filter(ticket=ticket, role="audit").count() == 1

    services.ticket_accept(ticket=Ticket.objects.get(pk=ticket.pk), actor=cast.product_owner)
    merged = wait_for(lambda: Ticket.objects.get(pk=ticket.pk).merged_commit,
                      what="the merge", processes=processes)
    bare = workspace_root(processes) / str(project.pk) / "repo"
    log = git(["log", "--format=%H %s", "haao/integration"], cwd=bare).stdout
    assert log.splitlines()[0] == f"{merged} {ticket.key}: {ticket.title}"
    fixed = git(["show", "haao/integration:invoice_calc/totals.py"], cwd=bare).stdout
    assert "ROUND_HALF_UP" in fixed
    # The customer's default branch is never touched.
    assert "ROUND_HALF_UP" not in git(["show", "main:invoice_calc/totals.py"], cwd=bare).stdout

    types = [event.type for event in events(ticket)]
    for step in ("ticket.dispatched", "attempt.started", "attempt.answered", "attempt.check",
                 "attempt.finished", "ticket.audited", "ticket.merged"):
        assert step in types, f"no {step} event in {types}"
    checks = [e.data for e in events(ticket) if e.type == "attempt.check"]
    assert [(c["attempt"], c["index"], c["of"], c["passed"]) for c in checks] == [
        (1, 1, 1, False), (2, 1, 1, True)]
    assert json.dumps(types)  # the stream is plain JSON for the portal

