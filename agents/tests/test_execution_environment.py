"""An attempt with a prepared environment, and without bubblewrap: refused unless opted in.

Through the engine's own steps (tests/engine.py), as the loop runs them."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from accounts import services as account_services
from agents import sandbox
from agents import services as agent_services
from agents.execution import UNSANDBOXED_WARNING
from agents.failures import SANDBOX_MISSING
from agents.models import InferenceEndpoint
from haao.audit import SYSTEM
from policies.services import policy_update
from sample_models import OpenAIServer
from sample_models import openai as oai
from tests.engine import InProcessEngine
from tests.factories import ProjectFactory, TicketFactory
from tests.samples import RIGHT_FIX, SAMPLE_PROJECT, git_checkout, sample_spec
from tickets.models import Ticket

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("allow_loopback")]


@pytest.fixture(autouse=True)
def workspaces(tmp_path: Path) -> Iterator[Path]:
    with override_settings(HAAO_WORKSPACE_ROOT=tmp_path / "ws", DATA_DIR=tmp_path / "data"):
        yield tmp_path / "ws"


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> InProcessEngine:
    return InProcessEngine(monkeypatch)


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer(flavor="ollama") as running:
        yield running


@pytest.fixture
def endpoint(cast: Any, server: OpenAIServer) -> InferenceEndpoint:
    return agent_services.endpoint_create(
        organization=cast.org, actor=cast.admin,
        values={"name": "Workstation coder", "kind": "openai_compatible", "flavor": "ollama",
                "base_url": server.url, "model": "qwen2.5-coder:7b", "role": "coder"})


@pytest.fixture
def ticket(cast: Any, tmp_path: Path) -> Ticket:
    repo = git_checkout(SAMPLE_PROJECT, tmp_path / "invoice-calc")
    project = ProjectFactory(organization=cast.org, key="INV", name="Invoice calc",
                             repository=str(repo), default_branch="main")
    ticket: Ticket = TicketFactory(requirement__project=project, spec=sample_spec(),
                                   title="Round invoice totals half-up to the cent")
    return ticket


@pytest.fixture
def no_bubblewrap(monkeypatch: pytest.MonkeyPatch) -> None:
    """This worker as if bubblewrap were not installed."""
    real_tool = sandbox._tool
    monkeypatch.setattr(sandbox, "sandbox_available", lambda: False)
    monkeypatch.setattr(sandbox, "_tool", lambda name: None if name == "bwrap" else real_tool(name))


def test_without_bubblewrap_an_attempt_needs_an_admin_who_is_told_how_to_fix_it(
        ticket: Ticket, endpoint: InferenceEndpoint, server: OpenAIServer,
        engine: InProcessEngine, no_bubblewrap: None) -> None:
    server.enqueue(oai.chat_reply(RIGHT_FIX))
    refused = engine.attempt(ticket)
    assert refused.outcome == "infrastructure"  # the machine's fault: no retry is spent
    assert refused.error == SANDBOX_MISSING
    assert "apt-get install bubblewrap" in refused.error
    assert "allow unsandboxed checks" in refused.error
    assert not refused.checks.exists()
    ticket.refresh_from_db()
    assert ticket.status == "blocked" and ticket.retries_left == ticket.retry_budget


def test_an_opted_in_organization_runs_checks_unsandboxed_with_a_visible_warning(
        cast: Any, ticket: Ticket, endpoint: InferenceEndpoint, server: OpenAIServer,
        engine: InProcessEngine, no_bubblewrap: None) -> None:
    account_services.organization_set_unsandboxed(
        organization=cast.org, actor=cast.admin, allowed=True, reason="throwaway CI VMs")
    server.enqueue(oai.chat_reply(RIGHT_FIX))
    done = engine.attempt(ticket)
    assert done.outcome == "passed"
    assert done.error == UNSANDBOXED_WARNING
    assert "WITHOUT a sandbox" in done.error
    assert done.checks.get().passed


@pytest.mark.skipif(not sandbox.sandbox_available(), reason="bubblewrap cannot run here")
def test_checks_run_with_the_prepared_environment(
        ticket: Ticket, endpoint: InferenceEndpoint, server: OpenAIServer,
        engine: InProcessEngine) -> None:
    project = ticket.project
    base_python = str(Path(sys.base_prefix) / "bin" / "python3")
    project.setup_command = [base_python, "-m", "venv", "--system-site-packages", "/env/venv"]
    project.save(update_fields=["setup_command"])
    # The check prints the interpreter's prefix with python -c: inline code, allowed here.
    policy_update(organization=project.organization, actor=SYSTEM,
                  changes={"inline_code": True})
    spec = sample_spec()
    spec["definition_of_done"][0]["command"] = [
        "python", "-c", "import sys, pytest; sys.exit(pytest.main(['-q', '-p', "
        "'no:cacheprovider', 'tests']) or print('prefix', sys.prefix))"]
    spec["definition_of_done"][0]["output_must_contain"] = ["prefix /env/venv"]
    ticket.spec = spec
    ticket.save(update_fields=["spec"])
    server.enqueue(oai.chat_reply(RIGHT_FIX))
    done = engine.attempt(ticket)
    assert done.outcome == "passed", done.error
    assert done.error == ""
