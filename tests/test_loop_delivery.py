"""The forge loop on real workers: a project connected through the API to a git server on
127.0.0.1, its accepted tickets delivered as one pull request that the "forge" merges, and
two workers with no shared disk finishing one project's tickets."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from agents.models import DeliveryStatus, IntegrationBranch, PullRequestState
from sample_models import AnthropicServer, OpenAIServer
from sample_models.rounding import RIGHT_FIX
from tests.fixtures import token_client
from tests.loop import Processes, Script, TechLead, add_endpoints, status_of, wait_for
from tests.samples import SAMPLE_PROJECT, invoice_ticket
from tests.servers.forges import FakeGitHub
from tests.servers.git_http import GitHTTPServer
from tickets import services
from tickets.models import Project, Requirement, RequirementStatus, Ticket

pytestmark = [pytest.mark.django_db(transaction=True)]

# A second ticket of the same requirement: a new module that depends on the first.
CURRENCY = ("<<<<<<< FILE invoice_calc/currency.py\n"
            "\"\"\"The invoice currency.\"\"\"\n\nDEFAULT = \"EUR\"\n>>>>>>> END\n")


def currency_ticket() -> dict[str, Any]:
    return invoice_ticket(
        title="Name the default currency", objective="Add invoice_calc/currency.py with "
        "DEFAULT = 'EUR'.", allowed_paths=["invoice_calc/currency.py"],
        code_context=[{"path": "invoice_calc/totals.py", "line_start": 1, "line_end": 5}],
        dependencies=["#1"])


@pytest.fixture
def forge(git_http_server: GitHTTPServer) -> Any:
    with FakeGitHub(git_http_server) as github:
        github.create_repo("acme/invoice-calc", directory=SAMPLE_PROJECT)
        git_http_server.password = github.token  # one token for git and the API, as on GitHub
        yield github


def connect(cast: Any, forge: FakeGitHub) -> Project:
    """The admin connects the team's repository through the API, as team tooling would."""
    api: APIClient = token_client(cast.org, cast.admin, ["read", "write", "admin"])
    with override_settings(HAAO_ENDPOINT_ALLOWLIST=["127.0.0.1"]):
        answer = api.post("/api/v1/orgs/acme/projects/", {
            "key": "INV", "name": "Invoice calc",
            "repository_url": forge.git.url_for("acme/invoice-calc"), "default_branch": "main",
            "test_command": ["python", "-m", "pytest", "-q"], "auth_method": "token",
            "token": forge.token, "token_username": forge.git.user, "delivery": "pull_request",
            "forge": "github", "forge_api_url": forge.api_url}, format="json")
    assert answer.status_code == 201, answer.content
    assert "token" not in answer.json() and answer.json()["has_token"] is True
    project = Project.objects.get(organization=cast.org, key="INV")
    services.project_grant_set(organization=cast.org, project=project, user=cast.product_owner,
                               grants={"approve"}, actor=cast.admin)
    return project


def test_accepted_tickets_arrive_as_one_pull_request_that_delivers_the_requirement(
        cast: Any, forge: FakeGitHub, coder: OpenAIServer, cloud: AnthropicServer,
        processes: Processes, tmp_path: Path) -> None:
    project = connect(cast, forge)
    answers = Script(RIGHT_FIX, CURRENCY)
    coder.answer = lambda request: answers.next()
    cloud.answer = TechLead(tickets=[invoice_ticket(), currency_ticket()])
    add_endpoints(cast, coder, cloud)
    web = processes.start_web()
    forge.add_webhook(f"{web}/hooks/forge/{project.pk}/",
                      secret=project.webhook_secret.reveal())
    processes.start_worker()
    processes.start_beat()

    requirement = services.requirement_create(project=project, actor=cast.product_owner,
                                              title="Round totals and name the currency",
                                              text="Round half a cent up; default to EUR.")
    wait_for(lambda: Requirement.objects.get(pk=requirement.pk).status == "proposed",
             what="the proposal", processes=processes)
    requirement.refresh_from_db()
    first, second = services.requirement_approve(requirement=requirement,
                                                 actor=cast.product_owner)
    branch_name = f"haao/{requirement.key}"

    wait_for(lambda: status_of(first)() == "awaiting_acceptance", what="the first ticket",
             processes=processes)
    services.ticket_accept(ticket=Ticket.objects.get(pk=first.pk), actor=cast.product_owner)
    wait_for(lambda: forge.pulls.get("acme/invoice-calc"), what="the pull request",
             processes=processes)
    [pull] = forge.pulls["acme/invoice-calc"]
    assert (pull.head, pull.base) == (branch_name, "main")
    assert requirement.key in pull.title and first.key in pull.body
    assert second.key not in pull.body
    assert "ROUND_HALF_UP" in forge.git.read_file("acme/invoice-calc", branch=branch_name,
                                                  path="invoice_calc/totals.py")

    wait_for(lambda: status_of(second)() == "awaiting_acceptance", what="the second ticket",
             processes=processes)
    services.ticket_accept(ticket=Ticket.objects.get(pk=second.pk), actor=cast.product_owner)
    wait_for(lambda: second.key in forge.pull(pull.number).body, what="the updated pull request",
             processes=processes)
    assert len(forge.pulls["acme/invoice-calc"]) == 1  # updated, never a second one
    body = forge.pull(pull.number).body
    assert "unit tests" in body and "✅" in body and "$" in body

    forge.merge(pull.number)  # the team merges it; the webhook tells HAAO
    wait_for(lambda: Requirement.objects.get(pk=requirement.pk).status
             == RequirementStatus.DELIVERED, what="the requirement delivered",
             processes=processes)
    branch = IntegrationBranch.objects.get(project=project, name=branch_name)
    assert branch.pull_request_state == PullRequestState.MERGED
    assert branch.status == DeliveryStatus.DELIVERED
    # The project's own tests pass on the delivered code.
    clone = tmp_path / "delivered"
    subprocess.run(["git", "clone", "--quiet", str(forge.git.repo_path("acme/invoice-calc")),
                    str(clone)], check=True)
    assert (clone / "invoice_calc" / "currency.py").is_file()
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                           cwd=clone, capture_output=True, text=True)
    assert tests.returncode == 0, tests.stdout[-2000:]


def test_two_workers_without_a_shared_disk_finish_one_projects_tickets(
        cast: Any, forge: FakeGitHub, coder: OpenAIServer, cloud: AnthropicServer,
        processes: Processes, tmp_path: Path) -> None:
    project = connect(cast, forge)
    Project.objects.filter(pk=project.pk).update(delivery="branch")
    answers = Script(RIGHT_FIX, CURRENCY)
    wiped = threading.Event()

    def answer(request: Any) -> Any:
        reply = answers.next()
        if reply == CURRENCY:  # the second ticket's coder answers once the disks are gone
            wiped.wait(timeout=60)
        return reply

    coder.answer = answer
    cloud.answer = TechLead(tickets=[invoice_ticket(), currency_ticket()])
    add_endpoints(cast, coder, cloud)
    roots = [tmp_path / "machine-a", tmp_path / "machine-b"]
    for name, root in zip(("a", "b"), roots, strict=True):
        processes.start_worker(name, concurrency=1, env={"HAAO_WORKSPACE_ROOT": str(root)})
    processes.start_beat()

    requirement = services.requirement_create(project=project, actor=cast.product_owner,
                                              title="Round totals and name the currency",
                                              text="Round half a cent up; default to EUR.")
    wait_for(lambda: Requirement.objects.get(pk=requirement.pk).status == "proposed",
             what="the proposal", processes=processes)
    requirement.refresh_from_db()
    first, second = services.requirement_approve(requirement=requirement,
                                                 actor=cast.product_owner)
    wait_for(lambda: status_of(first)() == "awaiting_acceptance", what="the first ticket",
             processes=processes)
    services.ticket_accept(ticket=Ticket.objects.get(pk=first.pk), actor=cast.product_owner)
    wait_for(lambda: Ticket.objects.get(pk=first.pk).merged_commit, what="the first merge",
             processes=processes)
    # The machines lose their disks mid-run, while the second ticket's coder writes (a disk
    # gone under a running check is a machine failure, for an admin): nothing of the
    # project's work was only there, neither the first merge nor the upstream clone.
    for root in roots:
        shutil.rmtree(root, ignore_errors=True)
    wiped.set()
    wait_for(lambda: status_of(second)() == "awaiting_acceptance", what="the second ticket",
             processes=processes)
    services.ticket_accept(ticket=Ticket.objects.get(pk=second.pk), actor=cast.product_owner)
    wait_for(lambda: IntegrationBranch.objects.filter(
        project=project, status=DeliveryStatus.DELIVERED,
        head=Ticket.objects.get(pk=second.pk).merged_commit or "-").exists(),
        what="the branch delivered with both tickets", processes=processes)
    delivered = forge.git.branch_sha("acme/invoice-calc", project.integration_branch)
    assert delivered == Ticket.objects.get(pk=second.pk).merged_commit
    log = subprocess.run(["git", "log", "--format=%s", delivered],
                         cwd=forge.git.repo_path("acme/invoice-calc"), capture_output=True,
                         text=True, check=True).stdout
    assert first.key in log and second.key in log
    # Both machines took part (each ran some of the project's steps).
    for name in ("a", "b"):
        assert "succeeded" in (processes.workdir / f"{name}.log").read_text()
