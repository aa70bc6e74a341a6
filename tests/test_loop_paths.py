"""The loop's other paths on real Celery workers: escalation, a policy that forbids it, audit
findings, rejection feedback and merge conflicts. Model servers are scripted over HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from agents.models import ModelCall
from agents.workspaces.git import git
from haao.audit import Actor
from policies.services import policy_update
from sample_models import AnthropicServer, OpenAIServer, RecordedRequest
from sample_models.base import last_user_text
from sample_models.rounding import RIGHT_FIX, WRONG_FIX
from tests.loop import (
    Processes,
    Script,
    TechLead,
    add_endpoints,
    approve,
    chats,
    events,
    kinds,
    reach,
    wait_for,
    workspace_root,
)
from tests.samples import invoice_ticket
from tickets import services
from tickets.models import Attempt, Project, Ticket

pytestmark = [pytest.mark.django_db(transaction=True)]

FAILED_AUDIT = {"passed": False, "summary": "Works, but the rounding mode is implicit.",
                "findings": [{"severity": "major", "message": "Name ROUND_HALF_UP where "
                              "totals are summed as well (finding F-4417)."}]}
PASSED_AUDIT = {"passed": True, "summary": "Meets the DoD.", "findings": []}


def solves(server: AnthropicServer) -> list[RecordedRequest]:
    requests = [r for r in server.requests if r.path == "/v1/messages"]
    return [r for r, kind in zip(requests, kinds(server), strict=True) if kind == "solve"]


def outcomes(ticket: Ticket) -> list[tuple[int, str, str]]:
    return [(a.number, a.executor, a.outcome)
            for a in Attempt.objects.filter(ticket=ticket).order_by("number")]


def test_a_ticket_whose_budget_is_spent_is_solved_by_the_tech_lead(
        cast: Any, project: Project, coder: OpenAIServer, cloud: AnthropicServer,
        processes: Processes) -> None:
    coder.answer = lambda request: WRONG_FIX
    cloud.answer = TechLead(tickets=[invoice_ticket()])
    add_endpoints(cast, coder, cloud)
    processes.start_worker()
    processes.start_beat()

    [ticket] = approve(cast, project, processes, retry_budget=1)
    ticket = reach(ticket, "awaiting_acceptance", processes)

    assert outcomes(ticket) == [(1, "local", "tests_failed"), (2, "local", "tests_failed"),
                                (3, "cloud", "passed")]
    assert ticket.retries_left == 0 and ticket.cloud_attempts == 1
    # The policy audits the local coders' work; the Tech Lead does not audit its own.
    assert kinds(cloud) == ["propose", "solve"]
    [to_gate] = [e for e in events(ticket) if e.type == "ticket.transition"
                 and e.data["to"] == "awaiting_acceptance"]
    assert to_gate.data["audit"] == "skipped: the policy audits only the local coders' work"
    # The Tech Lead was shown what the local attempts' checks printed.
    [solve] = solves(cloud)
    assert "1 failed" in last_user_text(solve.body)
    assert "test_total_rounds_half_a_cent_up" in last_user_text(solve.body)
    escalated = [e for e in events(ticket) if e.type == "ticket.escalated"]
    assert len(escalated) == 1
    assert "tests failed" in escalated[0].data["reason"].lower()
    assert ModelCall.objects.filter(ticket=ticket, role="code").count() == 2


def test_a_ticket_is_blocked_when_policy_forbids_escalation(
        cast: Any, project: Project, coder: OpenAIServer, cloud: AnthropicServer,
        processes: Processes) -> None:
    policy_update(organization=cast.org, actor=Actor.of(cast.admin),
                  changes={"escalation_allowed": False})
    coder.answer = lambda request: WRONG_FIX
    cloud.answer = TechLead(tickets=[invoice_ticket()])
    add_endpoints(cast, coder, cloud)
    processes.start_worker()
    processes.start_beat()

    [ticket] = approve(cast, project, processes, retry_budget=1)
    ticket = reach(ticket, "blocked", processes)

    assert outcomes(ticket) == [(1, "local", "tests_failed"), (2, "local", "tests_failed")]
    assert "not allowed by policy" in ticket.block_reason
    assert "retry budget is spent" in ticket.block_reason
    assert "solve" not in kinds(cloud)
    assert not [e for e in events(ticket) if e.type == "ticket.escalated"]


def test_audit_findings_reach_the_next_attempt_which_passes(
        cast: Any, project: Project, coder: OpenAIServer, cloud: AnthropicServer,
        processes: Processes) -> None:
    coder.answer = lambda request: RIGHT_FIX
    cloud.answer = TechLead(tickets=[invoice_ticket()],
                            verdicts=Script(FAILED_AUDIT, PASSED_AUDIT))
    add_endpoints(cast, coder, cloud)
    processes.start_worker()
    processes.start_beat()

    [ticket] = approve(cast, project, processes)
    ticket = reach(ticket, "awaiting_acceptance", processes)

    assert outcomes(ticket) == [(1, "local", "passed"), (2, "local", "passed")]
    assert kinds(cloud) == ["propose", "audit", "audit"]
    first, second = (last_user_text(r.body) for r in chats(coder))
    assert "F-4417" in second and "F-4417" not in first
    assert "rounding mode is implicit" in second
    # The failed audit cost one retry.
    assert ticket.retries_left == ticket.retry_budget - 1
    assert ticket.audit_failures == 1
    verdicts = [e.data["passed"] for e in events(ticket) if e.type == "ticket.audited"]
    assert verdicts == [False, True]


def test_rejection_feedback_reaches_the_next_attempt(
        cast: Any, project: Project, coder: OpenAIServer, cloud: AnthropicServer,
        processes: Processes) -> None:
    coder.answer = lambda request: RIGHT_FIX
    cloud.answer = TechLead(tickets=[invoice_ticket()])
    add_endpoints(cast, coder, cloud)
    processes.start_worker()
    processes.start_beat()

    [ticket] = approve(cast, project, processes)
    ticket = reach(ticket, "awaiting_acceptance", processes)
    services.ticket_reject(ticket=ticket, actor=cast.product_owner,
                           feedback="Keep the old behaviour for credit notes (R-9052).")
    wait_for(lambda: len(chats(coder)) == 2, what="a second coder request",
             processes=processes)
    ticket = reach(ticket, "awaiting_acceptance", processes)

    first, second = (last_user_text(r.body) for r in chats(coder))
    assert "R-9052" in second and "R-9052" not in first
    assert outcomes(ticket) == [(1, "local", "passed"), (2, "local", "passed")]
    types = [e.type for e in events(ticket)]
    assert types.count("ticket.dispatched") == 2


# Both tickets rewrite the same lines; whichever is accepted second no longer merges.
OTHER_FIX = RIGHT_FIX.replace('rounding=ROUND_HALF_UP)', 'rounding=ROUND_HALF_UP)  # cents')
REDONE_FIX = """<<<<<<< SEARCH invoice_calc/totals.py
    return amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
=======
    return amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)  # to the cent
>>>>>>> REPLACE
"""


def test_work_that_no_longer_merges_is_redone_on_top_of_the_integration_branch(
        cast: Any, project: Project, coder: OpenAIServer, cloud: AnthropicServer,
        processes: Processes) -> None:
    def answer(request: RecordedRequest) -> str:
        prompt = last_user_text(request.body)
        if "Round money half-up" in prompt:
            return RIGHT_FIX
        return REDONE_FIX if "no longer merges" in prompt else OTHER_FIX

    coder.answer = answer
    cloud.answer = TechLead(tickets=[
        invoice_ticket(), invoice_ticket(title="Round to whole cents, commented")])
    add_endpoints(cast, coder, cloud)
    processes.start_worker()
    processes.start_beat()

    first, second = approve(cast, project, processes)
    first = reach(first, "awaiting_acceptance", processes)
    second = reach(second, "awaiting_acceptance", processes)
    services.ticket_accept(ticket=first, actor=cast.product_owner)
    wait_for(lambda: Ticket.objects.get(pk=first.pk).merged_commit, what="the first merge",
             processes=processes)

    services.ticket_accept(ticket=second, actor=cast.product_owner)
    wait_for(lambda: [e for e in events(second) if e.type == "ticket.merge_conflict"],
             what="the conflict", processes=processes)
    redone = Ticket.objects.get(pk=second.pk)
    assert redone.status in ("queued", "running", "auditing", "awaiting_acceptance")
    assert "no longer merges" in redone.feedback
    assert "invoice_calc/totals.py" in redone.feedback
    assert not redone.merged_commit

    redone = reach(second, "awaiting_acceptance", processes)
    assert [o for _, _, o in outcomes(redone)] == ["passed", "passed"]
    services.ticket_accept(ticket=redone, actor=cast.product_owner)
    merged = wait_for(lambda: Ticket.objects.get(pk=second.pk).merged_commit,
                      what="the second merge", processes=processes)

    bare = workspace_root(processes) / str(project.pk) / "repo"
    log = git(["log", "--first-parent", "--format=%H %s", "haao/integration"],
              cwd=bare).stdout.splitlines()
    # One merge commit per accepted ticket on the integration branch, the redone one last.
    assert [line.split(" ", 1)[1].split(":")[0] for line in log[:2]] == [second.key, first.key]
    assert log[0].split()[0] == merged
    totals = git(["show", "haao/integration:invoice_calc/totals.py"], cwd=bare).stdout
    assert "# to the cent" in totals
    assert "<<<<<<<" not in totals
