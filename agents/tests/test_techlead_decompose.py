"""Decomposition of the sample project by the Tech Lead over the real SDK: injected code,
the repair loop, refused paths, storing the proposal and the prompt cache."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.models import CallOutcome, InferenceEndpoint, ModelCall
from agents.techlead.client import TechLeadClient
from agents.techlead.decompose import DecompositionFailed, decompose, decompose_requirement
from agents.techlead.repo_map import repo_map
from sample_models import AnthropicServer, Response, SampleTechLead
from sample_models import anthropic as anth
from sample_models.rounding import ROUNDING_TICKET
from tests.factories import RequirementFactory
from tests.fixtures import tech_lead_endpoint
from tests.samples import (
    SAMPLE_PROJECT,
    file_lines,
    git_checkout,
    invoice_proposal,
    invoice_ticket,
)
from tickets.models import RequirementStatus, Ticket, TicketStatus

pytestmark = pytest.mark.django_db
MESSAGES = "/v1/messages"


@pytest.fixture
def checkout(tmp_path) -> Path:
    return git_checkout(SAMPLE_PROJECT, tmp_path / "invoice-calc")


@pytest.fixture
def server() -> Iterator[AnthropicServer]:
    with AnthropicServer(answer=SampleTechLead(propose_tickets=invoice_proposal),
                         prompt_cache=True) as running:
        yield running


@pytest.fixture
def endpoint(cast, settings, server) -> InferenceEndpoint:
    settings.HAAO_ENDPOINT_ALLOWLIST = ["127.0.0.1"]
    return tech_lead_endpoint(cast.org, cast.admin, base_url=server.url)


@pytest.fixture
def requirement(cast):
    return RequirementFactory(project=cast.project, status=RequirementStatus.DECOMPOSING,
                              title="Round totals correctly",
                              text="0.125 must total 0.13 on invoices, as on paper.")


def run(requirement, checkout, endpoint, **kwargs):
    return decompose(requirement=requirement, repo_path=checkout, endpoint=endpoint,
                     client=TechLeadClient(endpoint, backoff_base=0.01), **kwargs)


def test_the_sample_project_decomposes_into_tickets_carrying_the_real_code(
        requirement, checkout, endpoint, server) -> None:
    tickets = run(requirement, checkout, endpoint)
    assert [t["title"] for t in tickets] == ["Round money half-up with Decimal",
                                            "Test rounding of totals at half a cent"]
    excerpt = tickets[0]["code_context"][0]
    asked = ROUNDING_TICKET["code_context"][0]
    assert excerpt["path"] == asked["path"] == "invoice_calc/totals.py"
    assert excerpt["content"] == file_lines(checkout / asked["path"], asked["line_start"],
                                            asked["line_end"])
    assert "def round_money(amount: Decimal) -> Decimal:" in excerpt["content"]
    assert tickets[1]["dependencies"] == ["#1"]
    [request] = server.requests_to(MESSAGES)
    assert request.body["tool_choice"] == {"type": "tool", "name": "propose_tickets"}
    assert request.body["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert "invoice_calc/totals.py" in request.body["system"][-1]["text"]


def test_code_the_model_wrote_itself_is_replaced_by_the_file(
        requirement, checkout, endpoint, server) -> None:
    invented = invoice_ticket(code_context=[{"path": "invoice_calc/totals.py", "line_start": 14,
                                             "line_end": 16, "content": "import os  # evil\n"}])
    server.enqueue(anth.tool_use_reply("propose_tickets", {"tickets": [invented]}))
    [ticket] = run(requirement, checkout, endpoint)
    assert ticket["code_context"][0]["content"] == file_lines(
        checkout / "invoice_calc/totals.py", 14, 16)


def test_an_invalid_proposal_is_repaired_on_the_second_call(
        requirement, checkout, endpoint, server) -> None:
    broken = invoice_ticket(definition_of_done=[], complexity=9)
    server.enqueue(anth.tool_use_reply("propose_tickets", {"tickets": [broken]}))
    tickets = run(requirement, checkout, endpoint)
    assert len(tickets) == 2
    first, second = server.requests_to(MESSAGES)
    assert len(first.body["messages"]) == 1 and len(second.body["messages"]) == 3
    [result] = second.body["messages"][-1]["content"]
    assert result["type"] == "tool_result" and result["is_error"] is True
    assert result["tool_use_id"] == first_tool_id(second)
    assert "$.tickets[0].definition_of_done: must have at least 1 item" in result["content"]
    assert "$.tickets[0].complexity: must be at most 5" in result["content"]
    assert [r.outcome for r in ModelCall.objects.order_by("created_at")] == [CallOutcome.OK] * 2


def first_tool_id(request) -> str:
    assistant = request.body["messages"][-2]
    return next(b["id"] for b in assistant["content"] if b["type"] == "tool_use")


def test_a_proposal_invalid_three_times_fails_and_stores_nothing(
        requirement, checkout, endpoint, server) -> None:
    broken = {"tickets": [invoice_ticket(title="")]}
    server.enqueue(*[anth.tool_use_reply("propose_tickets", broken) for _ in range(3)])
    outcome = decompose_requirement(requirement_id=requirement.pk, repo_path=checkout,
                                    client=TechLeadClient(endpoint))
    assert len(server.requests_to(MESSAGES)) == 3
    assert outcome.status == RequirementStatus.FAILED
    assert "$.tickets[0].title must not be empty" in outcome.failure
    assert not Ticket.objects.exists()


def test_decomposition_failed_lists_every_error(requirement, checkout, endpoint,
                                                server) -> None:
    server.enqueue(*[anth.tool_use_reply("propose_tickets", {"tickets": []}) for _ in range(3)])
    with pytest.raises(DecompositionFailed) as raised:
        run(requirement, checkout, endpoint)
    assert raised.value.details["errors"] == [
        {"path": "$.tickets", "message": "must be a non-empty array of tickets"}]


@pytest.mark.parametrize(("path", "why"), [
    ("../../etc/passwd", "must be a relative path inside the repository"),
    ("/etc/passwd", "must be a relative path inside the repository"),
    ("invoice_calc/missing.py", "names a file that does not exist in the repository"),
    ("escape.py", "must be a file inside the repository"),
    (".git/config", "must be a file inside the repository"),
])
def test_code_context_outside_the_repository_is_refused(
        requirement, checkout, endpoint, server, path, why) -> None:
    (checkout / "escape.py").symlink_to("/etc/hostname")
    bad = {"tickets": [invoice_ticket(code_context=[
        {"path": path, "line_start": 1, "line_end": 1}])]}
    server.enqueue(*[anth.tool_use_reply("propose_tickets", bad) for _ in range(3)])
    with pytest.raises(DecompositionFailed) as raised:
        run(requirement, checkout, endpoint)
    assert {"path": "$.tickets[0].code_context[0].path", "message": why} in (
        raised.value.details["errors"])


def test_a_line_range_past_the_end_of_the_file_is_refused(
        requirement, checkout, endpoint, server) -> None:
    bad = {"tickets": [invoice_ticket(code_context=[
        {"path": "invoice_calc/totals.py", "line_start": 40, "line_end": 400}])]}
    server.enqueue(anth.tool_use_reply("propose_tickets", bad))
    run(requirement, checkout, endpoint)  # repaired by the sample answer
    [result] = server.requests_to(MESSAGES)[1].body["messages"][-1]["content"]
    assert ("$.tickets[0].code_context[0].line_end: is past the end of invoice_calc/totals.py "
            "(43 lines)") in result["content"]


def test_a_decomposed_requirement_is_stored_as_proposed_tickets(
        cast, requirement, checkout, endpoint, server) -> None:
    outcome = decompose_requirement(requirement_id=requirement.pk, repo_path=checkout,
                                    client=TechLeadClient(endpoint))
    assert outcome.status == RequirementStatus.PROPOSED
    first, second = Ticket.objects.filter(requirement=requirement).order_by("order")
    assert first.status == TicketStatus.PROPOSED
    assert "def round_money(" in first.spec["code_context"][0]["content"]
    assert list(second.dependencies.all()) == [first]
    [call] = ModelCall.objects.all()
    assert call.requirement == requirement and call.project == cast.project


def test_a_requirement_of_an_organization_without_a_tech_lead_fails_with_the_reason(
        requirement, checkout) -> None:
    outcome = decompose_requirement(requirement_id=requirement.pk, repo_path=checkout)
    assert outcome.status == RequirementStatus.FAILED
    assert "no enabled Anthropic endpoint" in outcome.failure


def test_decomposing_from_the_projects_own_repository(
        cast, requirement, checkout, endpoint, server, settings, tmp_path) -> None:
    settings.HAAO_WORKSPACE_ROOT = tmp_path / "workspaces"
    cast.project.repository = str(checkout)
    cast.project.save()
    outcome = decompose_requirement(requirement_id=requirement.pk,
                                    client=TechLeadClient(endpoint))
    assert outcome.status == RequirementStatus.PROPOSED, outcome.failure


def test_a_second_decomposition_of_the_same_project_reads_the_cache(
        cast, requirement, checkout, endpoint, server) -> None:
    run(requirement, checkout, endpoint)
    again = RequirementFactory(project=cast.project, status=RequirementStatus.DECOMPOSING,
                               title="Discounts", text="A discount above 100% is refused.")
    run(again, checkout, endpoint)
    first = ModelCall.objects.get(requirement=requirement)
    second = ModelCall.objects.get(requirement=again)
    assert first.cache_read_tokens == 0 and first.cache_write_tokens > 1024
    assert second.cache_read_tokens == first.cache_write_tokens
    assert second.cache_write_tokens == 0


def test_the_repository_map_is_deterministic_and_skips_ignored_files(checkout) -> None:
    (checkout / "invoice_calc" / "__pycache__").mkdir()
    (checkout / "invoice_calc" / "__pycache__" / "totals.cpython-311.pyc").write_bytes(b"x")
    (checkout / "notes.txt").write_text("untracked\n")
    text = repo_map(checkout)
    assert text == repo_map(checkout)
    assert "__pycache__" not in text and "notes.txt" not in text
    assert "  def round_money(amount: Decimal) -> Decimal  [L14-16]" in text
    assert "config/settings.example.ini" in text


def test_a_large_repository_map_is_capped(checkout) -> None:
    text = repo_map(checkout, limit=600)
    assert len(text) <= 600
    assert text.endswith("… (map truncated)\n") or "def " not in text.split("\n", 1)[1]


def test_an_empty_answer_is_asked_again_and_counts_as_a_round(
        requirement, checkout, endpoint, server) -> None:
    server.enqueue(Response(body=anth.message([], usage=anth.usage(40, 1))))
    tickets = run(requirement, checkout, endpoint)
    assert len(tickets) == 2
    first, second = server.requests_to(MESSAGES)
    assert first.body["messages"] == second.body["messages"]
    assert [c.outcome for c in ModelCall.objects.order_by("created_at")] == [
        CallOutcome.INVALID_OUTPUT, CallOutcome.OK]


def test_tickets_carry_the_code_of_the_integration_branch_where_their_work_starts(
        cast, requirement, checkout, endpoint, server, settings, tmp_path) -> None:
    from agents.delivery.packs import pack_save
    from agents.models import IntegrationBranch
    from agents.workspaces import workspace_prepare
    from agents.workspaces.git import git
    from tickets.models import Ticket

    settings.HAAO_WORKSPACE_ROOT = tmp_path / "workspaces"
    cast.project.repository = str(checkout)
    cast.project.save()
    repo = workspace_prepare(project_id=cast.project.pk, repository=str(checkout),
                             default_branch="main", integration_branch="haao/integration",
                             root=settings.HAAO_WORKSPACE_ROOT)
    # Work accepted earlier changed round_money() on the integration branch only.
    tree = tmp_path / "accepted"
    git(["worktree", "add", "--quiet", str(tree), "haao/integration"], cwd=repo)
    path = tree / "invoice_calc" / "totals.py"
    path.write_text(path.read_text().replace("round(float(amount), 2)",
                                             "round(float(amount), 2)  # accepted work"))
    git(["commit", "--quiet", "-am", "PAY-1: accepted work"], cwd=tree)
    git(["worktree", "remove", "--force", str(tree)], cwd=repo)
    # The integration branch's record is HAAO's database: its head, and the commit stored.
    head = git(["rev-parse", "refs/heads/haao/integration"], cwd=repo).stdout.strip()
    base = git(["rev-parse", "refs/heads/main"], cwd=repo).stdout.strip()
    pack_save(project=cast.project, repo=repo, commit=head, prerequisites=[base])
    IntegrationBranch.objects.create(organization=cast.org, project=cast.project,
                                     name="haao/integration", base=base, head=head)
    shutil.rmtree(repo.parent)  # a worker with an empty disk still starts from it

    outcome = decompose_requirement(requirement_id=requirement.pk,
                                    client=TechLeadClient(endpoint))
    assert outcome.status == RequirementStatus.PROPOSED, outcome.failure
    contents = [excerpt["content"] for ticket in Ticket.objects.filter(requirement=requirement)
                for excerpt in ticket.spec["code_context"]
                if excerpt["path"] == "invoice_calc/totals.py"]
    assert contents and all("# accepted work" in content for content in contents)


def test_the_projects_test_command_is_asked_for_and_in_every_tickets_checks(
        requirement, checkout, endpoint, server) -> None:
    project = requirement.project
    project.test_command = ["python", "-m", "pytest", "-q", "tests/"]
    project.save()
    tickets = run(requirement, checkout, endpoint)
    for ticket in tickets:
        commands = [check["command"] for check in ticket["definition_of_done"]]
        assert commands.count(["python", "-m", "pytest", "-q", "tests/"]) == 1
    [request] = server.requests_to(MESSAGES)
    asked = request.body["messages"][0]["content"][0]["text"]
    assert '["python", "-m", "pytest", "-q", "tests/"]' in asked


def test_a_ticket_that_runs_the_test_command_already_gets_no_second_copy(
        requirement, checkout, endpoint, server) -> None:
    project = requirement.project
    # What the sample's tickets run already.
    project.test_command = ROUNDING_TICKET["definition_of_done"][0]["command"]
    project.save()
    tickets = run(requirement, checkout, endpoint)
    assert [len(t["definition_of_done"]) for t in tickets] == [1, 1]


# --- The sample models of the demo decline what they cannot do -------------------------------

@pytest.fixture
def sample_models(cast, settings) -> Iterator[InferenceEndpoint]:
    from sample_models.demo import sample_tech_lead

    settings.HAAO_ENDPOINT_ALLOWLIST = ["127.0.0.1"]
    with AnthropicServer(answer=sample_tech_lead) as running:
        yield tech_lead_endpoint(cast.org, cast.admin, base_url=running.url)


def test_the_sample_tech_lead_declines_a_requirement_it_cannot_do_with_its_reason(
        cast, checkout, sample_models) -> None:
    other = RequirementFactory(project=cast.project, status=RequirementStatus.DECOMPOSING,
                               title="Export invoices as PDF",
                               text="Managers want a PDF of every invoice.")
    done = decompose_requirement(requirement_id=other.pk, repo_path=checkout,
                                 client=TechLeadClient(sample_models, backoff_base=0.01))
    assert done is not None and done.status == RequirementStatus.FAILED
    assert done.failure.startswith("The Tech Lead declined this requirement: The sample "
                                   "models can only do the sample rounding task:")
    assert not Ticket.objects.filter(requirement=other).exists()
    # One answer, no repair rounds: the refusal costs one call.
    assert ModelCall.objects.filter(requirement=other).count() == 1


def test_the_sample_tech_lead_still_proposes_the_rounding_ticket(
        requirement, checkout, sample_models) -> None:
    tickets = decompose(requirement=requirement, repo_path=checkout, endpoint=sample_models,
                        client=TechLeadClient(sample_models, backoff_base=0.01))
    assert [t["title"] for t in tickets] == ["Round money half-up with Decimal"]
