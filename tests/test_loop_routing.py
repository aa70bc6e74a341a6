"""Routing on real workers: HAAO holds each endpoint to its concurrency, whatever the number
of worker processes, and spreads a tenant's work over its coders by load."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agents.models import InferenceEndpoint
from haao.audit import Actor
from policies.services import policy_update
from sample_models import AnthropicServer, OpenAIServer, RecordedRequest
from sample_models.base import last_user_text
from tests.factories import ProjectFactory
from tests.loop import Processes, TechLead, add_endpoints, wait_for
from tests.samples import SAMPLE_PROJECT, git_checkout, invoice_ticket
from tickets import services
from tickets.models import Attempt, Project, Requirement, Ticket

pytestmark = [pytest.mark.django_db(transaction=True)]

TICKETS = 4
ANSWER_SECONDS = 1.5


class SlowCoder:
    """Writes the ticket's one allowed file after a pause; counts requests in flight."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most = 0

    def __call__(self, request: RecordedRequest) -> str:
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        try:
            time.sleep(ANSWER_SECONDS)
            path = re.search(r"^- (notes/\S+)$", last_user_text(request.body), re.M)
            assert path is not None
            return f"<<<<<<< FILE {path.group(1)}\ndone\n>>>>>>> END\n"
        finally:
            with self.lock:
                self.in_flight -= 1


def note_ticket(number: int) -> dict[str, Any]:
    return invoice_ticket(
        title=f"Write note {number}", objective=f"Create notes/{number}.txt.",
        allowed_paths=[f"notes/{number}.txt"],
        code_context=[{"path": "README.md", "line_start": 1, "line_end": 3}],
        definition_of_done=[{"name": "python runs", "command": ["python", "--version"],
                             "expected_exit_code": 0, "timeout_seconds": 60}])


@pytest.fixture
def project(cast: Any, tmp_path: Path) -> Project:
    repo = git_checkout(SAMPLE_PROJECT, tmp_path / "repo")
    project: Project = ProjectFactory(organization=cast.org, key="NOTE", name="Notes",
                                      repository=str(repo), default_branch="main")
    policy_update(organization=cast.org, project=project, changes={"wip_limit": TICKETS},
                  actor=Actor.of(cast.admin))
    services.project_grant_set(organization=cast.org, project=project,
                               user=cast.product_owner, grants={"approve"}, actor=cast.admin)
    return project


@pytest.fixture
def cloud() -> Iterator[AnthropicServer]:
    with AnthropicServer(api_key="sk-ant-test") as server:
        server.answer = TechLead(tickets=[note_ticket(n) for n in range(1, TICKETS + 1)])
        yield server


def run_tickets(cast: Any, project: Project, processes: Processes) -> list[Ticket]:
    requirement = services.requirement_create(project=project, actor=cast.product_owner,
                                              title="Notes", text="Write the notes.")
    wait_for(lambda: Requirement.objects.get(pk=requirement.pk).status == "proposed",
             what="the proposal", processes=processes)
    requirement.refresh_from_db()
    tickets = services.requirement_approve(requirement=requirement, actor=cast.product_owner)
    wait_for(lambda: all(t.status == "awaiting_acceptance"
                         for t in Ticket.objects.filter(project=project)),
             timeout=120, what="every ticket to await acceptance", processes=processes)
    return tickets


def test_an_endpoint_gets_no_more_calls_at_once_than_it_allows(
        cast: Any, project: Project, cloud: AnthropicServer, processes: Processes) -> None:
    slow = SlowCoder()
    with OpenAIServer(flavor="vllm") as coder:
        coder.answer = slow
        add_endpoints(cast, coder, cloud, max_concurrency=1)
        # Two worker processes with two task slots each could call it four times at once.
        processes.start_worker("worker-a")
        processes.start_worker("worker-b")
        processes.start_beat()
        run_tickets(cast, project, processes)
    assert len([r for r in coder.requests if r.path == "/v1/chat/completions"]) == TICKETS
    assert slow.most == 1
    assert Attempt.objects.filter(ticket__project=project).count() == TICKETS


def test_a_tenants_work_is_spread_over_its_coders_by_load(
        cast: Any, project: Project, cloud: AnthropicServer, processes: Processes) -> None:
    first, second = SlowCoder(), SlowCoder()
    with OpenAIServer(flavor="vllm") as box_a, OpenAIServer(flavor="ollama") as box_b:
        box_a.answer, box_b.answer = first, second
        add_endpoints(cast, box_a, cloud, max_concurrency=1)
        from django.test import override_settings

        from agents import services as agent_services

        with override_settings(HAAO_ENDPOINT_ALLOWLIST=["127.0.0.1"]):
            agent_services.endpoint_create(
                organization=cast.org, actor=cast.admin,
                values={"name": "Second box", "kind": "openai_compatible", "flavor": "ollama",
                        "base_url": box_b.url, "model": "qwen-coder", "role": "coder",
                        "price_input": "0", "price_output": "0", "max_concurrency": 1})
        processes.start_worker("worker-a")
        processes.start_worker("worker-b")
        processes.start_beat()
        run_tickets(cast, project, processes)
    attempts = Attempt.objects.filter(ticket__project=project)
    assert [(a.outcome, a.error) for a in attempts if a.outcome != "passed"] == []
    served = {endpoint.name: Attempt.objects.filter(inference_endpoint=endpoint).count()
              for endpoint in InferenceEndpoint.objects.filter(role="coder")}
    assert served == {"Workstation": TICKETS // 2, "Second box": TICKETS // 2}
    assert first.most == 1 and second.most == 1
