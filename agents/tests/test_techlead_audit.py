"""The Tech Lead's audit verdicts and its solutions of escalated tickets, over the real SDK."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agents.edits import parse_edits
from agents.models import InferenceEndpoint, ModelCall
from agents.techlead.audit import AuditVerdict, audit
from agents.techlead.client import InvalidAnswer, TechLeadClient
from agents.techlead.solve import solve
from sample_models import AnthropicServer
from sample_models import anthropic as anth
from tests.factories import RequirementFactory, TicketFactory
from tests.fixtures import tech_lead_endpoint
from tickets.services import CheckOutcome, attempt_finish, attempt_start

pytestmark = pytest.mark.django_db
MESSAGES = "/v1/messages"
DIFF = """\
--- a/billing/totals.py
+++ b/billing/totals.py
@@ -1,2 +1,4 @@
-def total(items):
-    return sum(items)
+from decimal import ROUND_HALF_UP, Decimal
+
+def total(items):
+    return sum(items, Decimal("0")).quantize(Decimal("0.01"), ROUND_HALF_UP)
"""
EDITS = """Here is the fix.

<<<<<<< SEARCH billing/totals.py
    return sum(items)
=======
    return sum(items, Decimal("0")).quantize(Decimal("0.01"), ROUND_HALF_UP)
>>>>>>> REPLACE
"""


@pytest.fixture
def server() -> Iterator[AnthropicServer]:
    with AnthropicServer() as running:
        yield running


@pytest.fixture
def endpoint(cast, settings, server) -> InferenceEndpoint:
    settings.HAAO_ENDPOINT_ALLOWLIST = ["127.0.0.1"]
    return tech_lead_endpoint(cast.org, cast.admin, base_url=server.url)


@pytest.fixture
def ticket(cast):
    return TicketFactory(requirement=RequirementFactory(project=cast.project),
                         status="auditing")


def finished_attempt(ticket, number: int = 1, *, passed: bool = True):
    attempt = attempt_start(ticket=ticket, number=number, executor="local",
                            endpoint="Local coder", model="qwen2.5-coder-7b")
    check = CheckOutcome(name="unit tests", command=["pytest", "-q"], expected_exit_code=0,
                         exit_code=0 if passed else 1, passed=passed, duration_ms=900,
                         stdout="3 passed" if passed else "FAILED test_totals - 0.12 != 0.13")
    return attempt_finish(attempt=attempt, outcome="passed" if passed else "tests_failed",
                          checks=[check], diff=DIFF)


def run_audit(ticket, endpoint, attempt):
    return audit(ticket=ticket, diff=DIFF, check_results=list(attempt.checks.all()),
                 endpoint=endpoint, client=TechLeadClient(endpoint))


def test_a_clean_diff_passes_the_audit(ticket, endpoint, server) -> None:
    attempt = finished_attempt(ticket)
    server.enqueue(anth.tool_use_reply("submit_audit", {
        "passed": True, "summary": "Rounds half-up as asked.",
        "findings": [{"severity": "info", "message": "Consider a test for 0.125."}]}))
    verdict = run_audit(ticket, endpoint, attempt)
    assert verdict == AuditVerdict(passed=True, summary="Rounds half-up as asked.", findings=[
        {"severity": "info", "message": "Consider a test for 0.125."}])
    [request] = server.requests_to(MESSAGES)
    assert request.body["tool_choice"] == {"type": "tool", "name": "submit_audit"}
    prompt = request.body["messages"][0]["content"][0]["text"]
    assert "unit tests: passed" in prompt and "quantize" in prompt
    [call] = ModelCall.objects.all()
    assert call.role == "audit" and call.ticket == ticket and call.attempt == attempt


def test_a_diff_with_a_blocker_fails_the_audit_with_its_findings(ticket, endpoint,
                                                                 server) -> None:
    attempt = finished_attempt(ticket)
    finding = {"severity": "blocker", "path": "tests/test_totals.py",
               "message": "The failing test was deleted instead of fixed."}
    server.enqueue(anth.tool_use_reply("submit_audit", {
        "passed": True, "summary": "Looks fine.", "findings": [finding]}))
    verdict = run_audit(ticket, endpoint, attempt)
    assert not verdict.passed and verdict.findings == [finding] and not verdict.error


def test_a_malformed_verdict_is_repaired_once(ticket, endpoint, server) -> None:
    attempt = finished_attempt(ticket)
    server.enqueue(anth.tool_use_reply("submit_audit", {"passed": "yes"}),
                   anth.tool_use_reply("submit_audit", {"passed": False, "summary": "No.",
                                                        "findings": []}))
    verdict = run_audit(ticket, endpoint, attempt)
    assert verdict == AuditVerdict(passed=False, summary="No.")
    [result] = server.requests_to(MESSAGES)[1].body["messages"][-1]["content"]
    assert result["is_error"] is True and "$.passed: 'yes' is not of type 'boolean'" in (
        result["content"])


def test_a_verdict_malformed_twice_is_a_failed_audit_with_an_error(ticket, endpoint,
                                                                   server) -> None:
    attempt = finished_attempt(ticket)
    server.enqueue(anth.text_reply("I think it is fine."),
                   anth.tool_use_reply("submit_audit", {"summary": "ok"}))
    verdict = run_audit(ticket, endpoint, attempt)
    assert not verdict.passed and "'passed' is a required property" in verdict.error
    assert len(server.requests_to(MESSAGES)) == 2
    assert ModelCall.objects.count() == 2


def test_an_escalated_ticket_gets_edits_written_with_the_failed_attempts_in_view(
        ticket, endpoint, server) -> None:
    history = [finished_attempt(ticket, 1, passed=False), finished_attempt(ticket, 2,
                                                                          passed=False)]
    ticket.feedback = "Use ROUND_HALF_UP, not banker's rounding."
    server.enqueue(anth.text_reply(EDITS))
    text = solve(ticket=ticket, history=history, endpoint=endpoint,
                 client=TechLeadClient(endpoint))
    assert [edit.path for edit in parse_edits(text)] == ["billing/totals.py"]
    [request] = server.requests_to(MESSAGES)
    assert request.body["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert '"billing/totals.py"' in request.body["system"][-1]["text"]
    prompt = request.body["messages"][0]["content"][0]["text"]
    assert "## Attempt 2" in prompt and "0.12 != 0.13" in prompt
    assert "banker's rounding" in prompt
    assert ModelCall.objects.get().role == "solve"


def test_an_answer_without_edit_blocks_is_sent_back_once_then_refused(ticket, endpoint,
                                                                      server) -> None:
    server.enqueue(anth.text_reply("Just round it."), anth.text_reply("Really, round it."))
    with pytest.raises(InvalidAnswer):
        solve(ticket=ticket, history=[], endpoint=endpoint, client=TechLeadClient(endpoint))
    second = server.requests_to(MESSAGES)[1]
    assert "could not be applied" in second.body["messages"][-1]["content"][0]["text"]


def test_an_empty_answer_twice_is_a_failed_audit_not_a_crash(ticket, endpoint, server) -> None:
    attempt = finished_attempt(ticket)
    empty = anth.Response(body=anth.message([], usage=anth.usage(30, 1)))
    server.enqueue(empty, empty)
    verdict = run_audit(ticket, endpoint, attempt)
    assert not verdict.passed and "no content" in verdict.error
    assert ModelCall.objects.count() == 2
