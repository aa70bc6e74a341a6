"""The loop on real Celery workers: a requirement becomes a merged commit with no human action
between the two gates. Model servers are scripted over HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import pytest

from agents import services as agent_services
from agents.models import ModelCall
from agents.pricing import CURRENT_SONNET
from agents.workspaces.git import git
from haao.models import AuditEvent
from sample_models import AnthropicServer, OpenAIServer, RecordedRequest
from sample_models.anthropic import tool_use_reply
from sample_models.base import last_user_text
from sample_models.rounding import RIGHT_FIX, WRONG_FIX
from tests.loop import Processes, wait_for, workspace_root
from tests.samples import invoice_ticket
from tickets import services
from tickets.models import Attempt, Project, Requirement, Ticket

pytestmark = [pytest.mark.django_db(transaction=True)]

# The sample models' answers: a fix that passes the sample's tests, and one that does not.
__all__ = ["RIGHT_FIX", "WRONG_FIX"]


class Script:
    """Answers in order, the last one repeated; thread-safe (the server answers in threads)."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.lock = threading.Lock()
        self.calls = 0

    def next(self) -> Any:
        with self.lock:
            answer = self.answers[min(self.calls, len(self.answers) - 1)]
            self.calls += 1
        return answer


class TechLead:
    """Proposes the given tickets, audits with the given verdicts, solves with given edits."""

    def __init__(self, *, tickets: list[dict[str, Any]], verdicts: Script | None = None,
                 solutions: Script | None = None) -> None:
        self.tickets = tickets
        self.verdicts = verdicts or Script({"passed": True, "summary": "Meets the DoD.",
                                            "findings": []})
        self.solutions = solutions or Script(RIGHT_FIX)

    def __call__(self, request: RecordedRequest) -> Any:
        tools = {tool.get("name") for tool in request.body.get("tools") or []}
        if "propose_tickets" in tools:
            return tool_use_reply("propose_tickets", {"tickets": self.tickets})
        if "submit_audit" in tools:
            return tool_use_reply("submit_audit", self.verdicts.next())
        return self.solutions.next()


def kinds(server: AnthropicServer) -> list[str]:
    """What each request to the Tech Lead was: propose, audit or solve."""
    found = []
    for request in server.requests:
        if request.path != "/v1/messages":
            continue
        tools = {tool.get("name") for tool in request.body.get("tools") or []}
        found.append("propose" if "propose_tickets" in tools else
                     "audit" if "submit_audit" in tools else "solve")
    return found


def add_endpoints(cast: Any, coder: OpenAIServer | None, cloud: AnthropicServer | None,
                  **coder_values: Any) -> None:
    from django.test import override_settings

    with override_settings(HAAO_ENDPOINT_ALLOWLIST=["127.0.0.1"]):
        if coder is not None:
            agent_services.endpoint_create(
                organization=cast.org, actor=cast.admin,
                values={"name": "Workstation", "kind": "openai_compatible",
                        "flavor": "lm_studio", "base_url": coder.url, "model": "qwen-coder",
                        "role": "coder", "price_input": "0", "price_output": "0",
                        **coder_values})
        if cloud is not None:
            agent_services.endpoint_create(
                organization=cast.org, actor=cast.admin,
                values={"name": "Claude", "kind": "anthropic", "base_url": cloud.url,
                        "model": CURRENT_SONNET, "role": "tech_lead"},
                api_key="sk-ant-test")


def submit(cast: Any, project: Project) -> Requirement:
    return services.requirement_create(
        project=project, actor=cast.product_owner, title="Round totals correctly",
        text="Invoice totals must round half a cent up, like our accountants do.")


def proposed(cast: Any, project: Project, processes: Processes) -> Requirement:
    """A submitted requirement, once the Tech Lead's proposal awaits Gate 1."""
    requirement = submit(cast, project)
    wait_for(lambda: Requirement.objects.get(pk=requirement.pk).status == "proposed",
             what="the Tech Lead's proposal", processes=processes)
    requirement.refresh_from_db()
    return requirement


def approved_ticket(cast: Any, project: Project, processes: Processes) -> Ticket:
    requirement = proposed(cast, project, processes)
    [ticket] = services.requirement_approve(requirement=requirement, actor=cast.product_owner)
    return ticket


def status_of(ticket: Ticket) -> Callable[[], str]:
    return lambda: Ticket.objects.get(pk=ticket.pk).status


def events(ticket: Ticket) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(target_label=ticket.key,
                                          organization=ticket.organization).order_by("seq"))


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

