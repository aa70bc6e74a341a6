"""Machine failures on the real loop: a program missing from the sandbox, a failing setup
command, no sandbox at all. None is the code's fault, so each ticket waits for an admin after
one attempt, with no retry, no escalation and no cloud call spent on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agents.models import ModelCall
from agents.workspaces.samples import git_checkout
from haao.models import AuditEvent
from sample_models import AnthropicServer, OpenAIServer
from sample_models.rounding import RIGHT_FIX
from tests.factories import ProjectFactory
from tests.loop import (
    Processes,
    TechLead,
    add_endpoints,
    proposed,
    status_of,
    wait_for,
)
from tests.samples import SAMPLE_PROJECT, invoice_ticket
from tickets import services
from tickets.models import Attempt, Project, Ticket

pytestmark = [pytest.mark.django_db(transaction=True)]

# `go` is a program the default policy allows, and this machine does not have.
GO_TESTS = {"name": "go tests", "command": ["go", "test", "./..."], "expected_exit_code": 0,
            "timeout_seconds": 60}
PYTESTS = {"name": "unit tests", "command": ["python", "-m", "pytest", "-q"],
           "expected_exit_code": 0, "timeout_seconds": 120}


def start(cast: Any, coder: OpenAIServer, cloud: AnthropicServer, processes: Processes,
          check: dict[str, Any], **worker_env: str) -> None:
    coder.answer = lambda request: RIGHT_FIX
    cloud.answer = TechLead(tickets=[invoice_ticket(definition_of_done=[check])])
    add_endpoints(cast, coder, cloud)
    processes.start_worker(env=worker_env)
    processes.start_beat()


def approved(cast: Any, project: Project, processes: Processes) -> Ticket:
    [ticket] = services.requirement_approve(requirement=proposed(cast, project, processes),
                                            actor=cast.product_owner)
    return ticket


def assert_waits_for_an_admin(ticket: Ticket, processes: Processes, *, cause: str) -> Ticket:
    wait_for(lambda: status_of(ticket)() == "blocked", what=f"{ticket.key} to be blocked",
             processes=processes)
    blocked = Ticket.objects.get(pk=ticket.pk)
    assert blocked.block_reason.startswith("Needs an admin: "), blocked.block_reason
    assert cause in blocked.block_reason
    [attempt] = Attempt.objects.filter(ticket=ticket)
    assert (attempt.outcome, attempt.executor) == ("infrastructure", "local")
    assert blocked.retry_budget > 0 and blocked.retries_left == blocked.retry_budget
    assert blocked.cloud_attempts == 0
    assert not ModelCall.objects.filter(ticket=ticket, is_cloud=True).exists()
    [event] = AuditEvent.objects.filter(target_id=str(ticket.pk), type="ticket.needs_admin")
    assert event.data["cause"] in blocked.block_reason
    return blocked


def test_a_missing_program_and_a_failing_setup_command_wait_for_an_admin(
        cast: Any, project: Project, tmp_path: Path, coder: OpenAIServer,
        cloud: AnthropicServer, processes: Processes) -> None:
    broken = ProjectFactory(
        organization=cast.org, key="SET", name="Broken setup", default_branch="main",
        repository=str(git_checkout(SAMPLE_PROJECT, tmp_path / "broken")),
        setup_command=["python3", "-c", "raise SystemExit('no package index reachable')"])
    services.project_grant_set(organization=cast.org, project=broken,
                               user=cast.product_owner, grants={"approve"}, actor=cast.admin)
    start(cast, coder, cloud, processes, GO_TESTS)

    missing, failing = approved(cast, project, processes), approved(cast, broken, processes)

    blocked = assert_waits_for_an_admin(
        missing, processes, cause="`go` is not found inside the sandbox: the check's program "
                                  "is not on the sandbox's PATH (")
    assert "HAAO_CHECK_TOOLCHAIN" in blocked.block_reason
    check = Attempt.objects.get(ticket=missing).checks.get()
    assert check.exit_code == 127 and "failed to execute go" in check.stderr_tail
    blocked = assert_waits_for_an_admin(failing, processes,
                                        cause="The project's setup command \"python3 -c")
    assert "failed (exit code 1, expected 0)" in blocked.block_reason
    assert "no package index reachable" in blocked.block_reason
    assert "correct the setup command in the project's settings" in blocked.block_reason


def test_a_worker_without_a_sandbox_sends_the_ticket_to_an_admin(
        cast: Any, project: Project, coder: OpenAIServer, cloud: AnthropicServer,
        processes: Processes) -> None:
    start(cast, coder, cloud, processes, PYTESTS, HAAO_SANDBOX="false")

    ticket = approved(cast, project, processes)

    blocked = assert_waits_for_an_admin(ticket, processes, cause="bubblewrap is not available")
    assert "apt-get install bubblewrap util-linux" in blocked.block_reason
    assert not Attempt.objects.get(ticket=ticket).checks.exists()

