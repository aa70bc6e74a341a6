"""An attempt on the sample project through the engine's own steps (dispatch, model step,
check step), with a scripted coder answering over real HTTP."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.db import OperationalError
from django.test import override_settings

from agents import execution, services
from agents.execution import idempotency_key
from agents.models import InferenceEndpoint, ModelCall
from agents.sandbox import SandboxError, sandbox_available
from haao.audit import Actor
from haao.models import AuditEvent
from policies.services import policy_update
from sample_models import OpenAIServer, delayed
from sample_models import openai as oai
from tests.engine import InProcessEngine
from tests.factories import ProjectFactory, TicketFactory
from tests.samples import RIGHT_FIX, SAMPLE_PROJECT, WRONG_FIX, git_checkout, sample_spec
from tickets.models import Attempt, Ticket

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("allow_loopback")]

FAILING_TEST = "tests/test_totals.py::test_total_rounds_half_a_cent_up"

OUTSIDE_ALLOWED = """<<<<<<< SEARCH tests/test_totals.py
    assert total([Decimal("0.125")]) == Decimal("0.13")
=======
    assert total([Decimal("0.125")]) == Decimal("0.12")
>>>>>>> REPLACE
"""

MALFORMED = """Just change round() to use ROUND_HALF_UP:

<<<<<<< SEARCH invoice_calc/totals.py
    return Decimal(str(round(float(amount), 2)))
>>>>>>> REPLACE
"""


@pytest.fixture
def sample_repo(tmp_path: Path) -> Path:
    """The sample project as its own git repository with one commit on main."""
    repo = git_checkout(SAMPLE_PROJECT, tmp_path / "invoice-calc")
    return repo


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer(flavor="ollama") as running:
        yield running


@pytest.fixture
def endpoint(cast: Any, server: OpenAIServer) -> InferenceEndpoint:
    return services.endpoint_create(
        organization=cast.org, actor=cast.admin,
        values={"name": "Workstation coder", "kind": "openai_compatible", "flavor": "ollama",
                "base_url": server.url, "model": "qwen2.5-coder:7b", "role": "coder",
                "price_input": "1.5", "price_output": "3"})


@pytest.fixture
def workspaces(tmp_path: Path) -> Iterator[Path]:
    """Where this machine keeps the projects' repositories (HAAO_WORKSPACE_ROOT)."""
    with override_settings(HAAO_WORKSPACE_ROOT=tmp_path / "ws"):
        yield tmp_path / "ws"


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> InProcessEngine:
    return InProcessEngine(monkeypatch)


@pytest.fixture
def ticket(cast: Any, sample_repo: Path, workspaces: Path) -> Ticket:
    # Checks run unsandboxed only where bubblewrap cannot (the organization's opt-in).
    type(cast.org).objects.filter(pk=cast.org.pk).update(
        allow_unsandboxed_checks=not sandbox_available())
    project = ProjectFactory(organization=cast.org, key="INV", name="Invoice calc",
                             repository=str(sample_repo), default_branch="main")
    ticket: Ticket = TicketFactory(requirement__project=project, spec=sample_spec(),
                                   title="Round invoice totals half-up to the cent")
    return ticket


def bare_repo(root: Path, ticket: Ticket) -> Path:
    return root / str(ticket.project.pk) / "repo"


def user_prompt(server: OpenAIServer, index: int) -> str:
    body = server.requests_to("/v1/chat/completions")[index].body
    return str(body["messages"][-1]["content"])


def test_the_right_fix_passes_its_check_and_is_committed(ticket, endpoint, server, engine,
                                                        workspaces) -> None:
    server.enqueue(oai.chat_reply(RIGHT_FIX))

    attempt = engine.attempt(ticket)

    assert attempt.outcome == "passed", attempt.error
    check = attempt.checks.get()
    assert check.passed and check.exit_code == 0
    assert "passed" in check.stdout_tail and "failed" not in check.stdout_tail
    assert "+    return amount.quantize(Decimal(\"0.01\"), rounding=ROUND_HALF_UP)" in attempt.diff
    assert "-    return Decimal(str(round(float(amount), 2)))" in attempt.diff
    call = ModelCall.objects.get(idempotency_key=idempotency_key(attempt))
    assert (call.role, call.outcome, call.model) == ("code", "ok", "qwen2.5-coder:7b")
    assert call.input_tokens > 0 and call.output_tokens > 0
    assert call.ticket_id == ticket.pk and call.attempt_id == attempt.pk
    expected = (Decimal(call.input_tokens) * Decimal("1.5")
                + Decimal(call.output_tokens) * 3) / 1_000_000
    assert call.cost == expected.quantize(Decimal("0.000001")) and call.cost > 0
    assert (attempt.input_tokens, attempt.output_tokens, attempt.cost) == (
        call.input_tokens, call.output_tokens, call.cost)
    shown = subprocess.run(["git", "show", f"{attempt.commit}:invoice_calc/totals.py"],
                           cwd=bare_repo(workspaces, ticket), capture_output=True, text=True,
                           check=True).stdout
    assert "ROUND_HALF_UP" in shown
    ticket.refresh_from_db()
    # No Tech Lead endpoint to audit it: the work waits for the product owner at Gate 2.
    assert ticket.status == "awaiting_acceptance" and ticket.attempt_count == 1


def test_the_coder_was_asked_with_the_ticket_streamed(ticket, endpoint, server,
                                                      engine) -> None:
    server.enqueue(oai.chat_reply(RIGHT_FIX))

    attempt = engine.attempt(ticket)

    body = server.requests_to("/v1/chat/completions")[0].body
    assert body["stream"] is True and body["model"] == "qwen2.5-coder:7b"
    prompt = user_prompt(server, 0)
    assert "total() rounds exact half cents down" in prompt
    assert "- invoice_calc/totals.py" in prompt
    assert "def round_money(amount: Decimal) -> Decimal:" in prompt
    assert '"python", "-m", "pytest"' in prompt
    assert "<<<<<<< SEARCH" in body["messages"][0]["content"]
    assert attempt.answer == RIGHT_FIX  # the streamed answer, kept whole before the checks


def test_a_wrong_fix_fails_the_tests_with_the_failing_output_recorded(ticket, endpoint, server,
                                                                       engine) -> None:
    server.enqueue(oai.chat_reply(WRONG_FIX))

    attempt = engine.attempt(ticket)

    assert attempt.outcome == "tests_failed"
    check = attempt.checks.get()
    assert not check.passed and check.exit_code == 1
    assert f"FAILED {FAILING_TEST}" in check.stdout_tail
    assert "1 failed" in check.stdout_tail
    assert "unit tests: exit code 1, expected 0" in attempt.error
    assert "amount.quantize(Decimal(\"0.01\"))" in attempt.diff


def test_an_edit_outside_the_allowed_paths_is_a_guardrail_violation_and_nothing_runs(
        ticket, endpoint, server, engine) -> None:
    server.enqueue(oai.chat_reply(OUTSIDE_ALLOWED))

    attempt = engine.attempt(ticket)

    assert attempt.outcome == "guardrail_violation"
    assert "tests/test_totals.py" in attempt.error and "may not change" in attempt.error
    assert attempt.checks.count() == 0
    assert attempt.diff == ""
    assert ModelCall.objects.get(attempt=attempt).outcome == "ok"


def test_a_path_escaping_the_repository_is_a_guardrail_violation(ticket, endpoint, server,
                                                                 engine) -> None:
    server.enqueue(oai.chat_reply("<<<<<<< FILE ../../etc/cron.d/x\n* * * * * root sh\n"
                                  ">>>>>>> END\n"))

    attempt = engine.attempt(ticket)

    assert attempt.outcome == "guardrail_violation"
    assert "'..'" in attempt.error
    assert attempt.checks.count() == 0


def test_malformed_edit_text_is_invalid_output(ticket, endpoint, server, engine) -> None:
    server.enqueue(oai.chat_reply(MALFORMED))

    attempt = engine.attempt(ticket)

    assert attempt.outcome == "invalid_output"
    assert "no '=======' line" in attempt.error
    assert attempt.checks.count() == 0
    call = ModelCall.objects.get(attempt=attempt)  # the model answered; its text is unusable
    assert call.outcome == "ok" and call.output_tokens > 0


def test_a_search_text_not_in_the_file_is_invalid_output(ticket, endpoint, server,
                                                         engine) -> None:
    server.enqueue(oai.chat_reply("<<<<<<< SEARCH invoice_calc/totals.py\nnot there\n=======\n"
                                  "x\n>>>>>>> REPLACE\n"))

    attempt = engine.attempt(ticket)

    assert attempt.outcome == "invalid_output"
    assert attempt.checks.count() == 0


def test_the_second_attempt_is_told_the_first_ones_failure_and_the_feedback(
        ticket, endpoint, server, engine) -> None:
    Ticket.objects.filter(pk=ticket.pk).update(
        feedback="Use ROUND_HALF_UP from the decimal module, as the README asks.")
    server.enqueue(oai.chat_reply(WRONG_FIX), oai.chat_reply(RIGHT_FIX))

    first = engine.attempt(ticket)
    second = engine.attempt(ticket)

    assert (first.number, first.outcome, second.number, second.outcome) == (
        1, "tests_failed", 2, "passed")
    assert "What went wrong" not in user_prompt(server, 0)
    prompt = user_prompt(server, 1)
    assert "What went wrong in attempt 1 (tests_failed)" in prompt
    assert f"FAILED {FAILING_TEST}" in prompt
    assert "assert Decimal('0.12') == Decimal('0.13')" in prompt
    assert "Use ROUND_HALF_UP from the decimal module, as the README asks." in prompt
    assert ModelCall.objects.filter(ticket=ticket).count() == 2


def test_a_second_delivery_of_a_step_does_nothing(ticket, endpoint, server, engine) -> None:
    server.enqueue(oai.chat_reply(MALFORMED))
    engine.dispatch(ticket)
    model_step = next(kwargs for name, kwargs in engine.sent if name == "model_step")
    engine.run("model_step", "check_step")
    attempt = Attempt.objects.get(ticket=ticket)

    engine.sent.append(("model_step", model_step))  # the broker delivers it again
    engine.run("model_step", "check_step")

    assert len(server.requests) == 1
    assert Attempt.objects.filter(ticket=ticket).count() == 1
    assert Attempt.objects.get(ticket=ticket).outcome == attempt.outcome == "invalid_output"


def test_a_worker_that_also_takes_the_checks_queue_runs_the_attempt_in_one_task(
        ticket, endpoint, server, engine, monkeypatch) -> None:
    """Model, apply and check in the model step's task, once the model's slot is free: no
    check step goes through the broker. A worker that takes only the coders' queue sends one."""
    from agents.engine import workers
    from agents.models import EndpointLease

    server.enqueue(oai.chat_reply(WRONG_FIX), oai.chat_reply(RIGHT_FIX))
    monkeypatch.setattr(workers, "_queues", frozenset({"local"}))
    first = engine.attempt(ticket)
    assert first.outcome == "tests_failed"
    assert engine.log.count("check_step") == 1

    monkeypatch.setattr(workers, "_queues", frozenset({"local", "checks"}))
    slots_during_checks: list[int] = []
    run_check = execution.run_check

    def check_counting_slots(**kwargs: Any) -> Any:
        slots_during_checks.append(EndpointLease.objects.count())
        return run_check(**kwargs)

    monkeypatch.setattr(execution, "run_check", check_counting_slots)
    second = engine.attempt(ticket)
    assert second.outcome == "passed"
    assert slots_during_checks and set(slots_during_checks) == {0}  # the model's slot was free
    assert engine.log.count("check_step") == 1  # still the first attempt's only


def test_a_coder_timeout_ends_the_attempt_as_timeout_with_a_usage_row(ticket, endpoint, server,
                                                                       engine) -> None:
    server.enqueue(delayed(oai.chat_reply(RIGHT_FIX), 5))

    with override_settings(HAAO_CODER_TIMEOUT=0.5):
        attempt = engine.attempt(ticket)

    assert attempt.outcome == "timeout"
    assert "0.5 seconds" in attempt.error
    assert ModelCall.objects.get(attempt=attempt).outcome == "timeout"


def test_a_server_error_ends_the_attempt_as_error_naming_the_vendor_message(
        ticket, endpoint, server, engine) -> None:
    server.enqueue(oai.ollama_model_not_found("qwen2.5-coder:7b"))

    attempt = engine.attempt(ticket)

    assert attempt.outcome == "error"
    assert 'model "qwen2.5-coder:7b" not found, try pulling it first' in attempt.error
    assert ModelCall.objects.get(attempt=attempt).outcome == "client_error"


def test_an_unreachable_repository_ends_the_attempt_before_any_check_runs(
        ticket, endpoint, server, engine, tmp_path) -> None:
    type(ticket.project).objects.filter(pk=ticket.project.pk).update(
        repository=str(tmp_path / "missing"))
    server.enqueue(oai.chat_reply(RIGHT_FIX))

    attempt = engine.attempt(ticket)

    assert attempt.outcome == "error"
    assert "could not be fetched" in attempt.error
    assert not attempt.checks.exists()


def test_a_program_the_policy_does_not_allow_is_never_started(ticket, endpoint, server, cast,
                                                               engine) -> None:
    server.enqueue(oai.chat_reply(RIGHT_FIX))
    engine.dispatch(ticket)
    engine.run("model_step")
    # The policy changed after the ticket was dispatched: the check itself is refused.
    policy_update(organization=cast.org, actor=Actor.of(cast.admin),
                  changes={"allowed_programs": ["pytest"]})

    engine.run("check_step")

    attempt = Attempt.objects.get(ticket=ticket)
    assert attempt.outcome == "guardrail_violation"
    assert "allowed_programs" in attempt.error and "'python'" in attempt.error
    assert not attempt.checks.exists()
    event = AuditEvent.objects.get(type="guardrail.refused", target_id=str(ticket.pk))
    assert (event.data["rule"], event.data["value"], event.data["point"]) == (
        "allowed_programs", "python", "command")


def test_a_change_larger_than_the_policy_allows_is_not_written(ticket, endpoint, server, cast,
                                                                 engine) -> None:
    policy_update(organization=cast.org, actor=Actor.of(cast.admin),
                  changes={"max_changed_lines": 2})
    server.enqueue(oai.chat_reply(RIGHT_FIX))  # 4 changed lines

    attempt = engine.attempt(ticket)

    assert attempt.outcome == "guardrail_violation"
    assert "max_changed_lines" in attempt.error and attempt.diff == ""



def test_a_sandbox_failing_during_the_checks_ends_the_attempt_on_the_machine_with_its_diff(
        ticket, endpoint, server, engine, monkeypatch) -> None:
    server.enqueue(oai.chat_reply(RIGHT_FIX))

    def sandbox_that_cannot_start(**kwargs: Any) -> Any:
        raise SandboxError("The sandbox did not start: setting up uid map: Permission denied")

    monkeypatch.setattr(execution, "run_check", sandbox_that_cannot_start)

    attempt = engine.attempt(ticket)

    assert attempt.outcome == "infrastructure"
    assert "The sandbox did not start" in attempt.error and "bubblewrap" in attempt.error
    assert "ROUND_HALF_UP" in attempt.diff and not attempt.checks.exists()


def test_a_passing_commit_that_cannot_be_stored_ends_as_an_error_keeping_its_checks(
        ticket, endpoint, server, engine, monkeypatch) -> None:
    server.enqueue(oai.chat_reply(RIGHT_FIX))

    def full_disk(**kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(execution, "pack_save", full_disk)

    attempt = engine.attempt(ticket)

    assert attempt.outcome == "error"
    assert attempt.error.startswith("Internal error: OSError:") and "No space" in attempt.error
    assert attempt.checks.get().passed and "ROUND_HALF_UP" in attempt.diff
    assert attempt.base_commit and attempt.commit == ""


def test_an_end_that_cannot_be_recorded_at_first_is_recorded_as_an_error_with_its_checks(
        ticket, endpoint, server, engine, monkeypatch) -> None:
    server.enqueue(oai.chat_reply(RIGHT_FIX))
    finish = execution.attempt_finish
    calls: list[str] = []

    def database_gone_once(**kwargs: Any) -> Any:
        calls.append(kwargs["outcome"])
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return finish(**kwargs)

    monkeypatch.setattr(execution, "attempt_finish", database_gone_once)

    attempt = engine.attempt(ticket)

    assert calls == ["passed", "error"]
    assert attempt.outcome == "error" and "server closed the connection" in attempt.error
    # What the checks found is kept, as on any other error after them.
    assert attempt.checks.get().passed and "ROUND_HALF_UP" in attempt.diff
    assert attempt.base_commit and attempt.commit
